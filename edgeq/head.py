"""The YOLO decode head, described once (`HeadSpec`) and rebuilt as a named ONNX subgraph so targets can
quantize, normalize or detach it.

The model body ends at the per-scale head convolutions of one branch (`box_i`: 4*reg_max DFL logits, or 4
distances when reg_max is 1 as in YOLO26; `cls_i`: class logits). The decode head turns those into one
`output0` of shape (1, 4 + nc, anchors): DFL softmax expectation, box arithmetic from anchor points and
strides, sigmoid scores. Every node it adds is named `edgeq_head/...`, which is how quantizers are told to
leave it in float. What follows the decode, per the spec, is either class-aware NMS (one-to-many branch:
YOLOv8, YOLO11, YOLO12) or Ultralytics' top-k selection without NMS (one-to-one branch: YOLOv10, YOLO26);
both run on the host (`edgeq.evaluation.decode.select_detections`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from enum import Enum
from pathlib import Path

import numpy as np

from edgeq.hostside import OUTPUT_NAME, anchors

HEAD_PREFIX = "edgeq_head/"
INPUT_NAME = "images"


class HeadLayout(str, Enum):
    """What an artifact's outputs hold, i.e. how the host turns them into boxes."""

    PIXEL = "pixel"  # output0: xywh in input pixels + sigmoid scores (what a plain export gives)
    NORMALIZED = "normalized"  # output0: xywh in 0..1 of the input size, computed with normalized factors
    DETACHED = "detached"  # box_i / cls_i logits per scale; DFL, sigmoid and box maths run on the host in FP32
    SELECTED = "selected"  # detections already chosen in the model: (1, max_det, 6) x1 y1 x2 y2 score class,
    # in input pixels (Ultralytics' end-to-end output: the PyTorch reference of a one-to-one head, `yolo export
    # nms=False` files)


BRANCHES = ("one2many", "one2one")


@dataclass(frozen=True)
class HeadSpec:
    """Everything the host decoder needs; shipped as JSON beside detached artifacts."""

    nc: int
    reg_max: int  # DFL bins per box side; 1: the convs give the 4 distances directly (YOLO26)
    strides: tuple[int, ...]
    imgsz: int
    names: tuple[str, ...]
    branch: str = "one2many"  # which head convolutions the body ends at (see BRANCHES)
    end2end: bool = False  # NMS-free: the host keeps Ultralytics' top max_det (anchor, class) pairs, no NMS
    max_det: int = 300
    head_class: str = "Detect"  # the Ultralytics head the spec was read from (for the report)

    @property
    def selection(self) -> str:
        """How detections are chosen from the decoded predictions, as the report words it."""
        return f"top-{self.max_det} without NMS" if self.end2end else "class-aware NMS"

    @property
    def grids(self) -> list[tuple[int, int]]:
        return [(self.imgsz // s, self.imgsz // s) for s in self.strides]

    @property
    def box_outputs(self) -> list[str]:
        return [f"box_{i}" for i in range(len(self.strides))]

    @property
    def cls_outputs(self) -> list[str]:
        return [f"cls_{i}" for i in range(len(self.strides))]

    @property
    def body_outputs(self) -> list[str]:
        return [name for pair in zip(self.box_outputs, self.cls_outputs) for name in pair]

    def anchors(self) -> tuple[np.ndarray, np.ndarray]:
        """Anchor centres in grid units (A, 2) and the stride of each anchor (A,), as Ultralytics makes them."""
        return anchors(self.strides, self.imgsz)

    def to_json(self, path: Path) -> None:
        Path(path).write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def from_json(cls, path: Path) -> HeadSpec:
        data = json.loads(Path(path).read_text())
        optional = {k: data[k] for k in ("branch", "end2end", "max_det", "head_class") if k in data}
        return cls(nc=data["nc"], reg_max=data["reg_max"], strides=tuple(data["strides"]), imgsz=data["imgsz"],
                   names=tuple(data["names"]), **optional)


def build_decode_head(spec: HeadSpec, layout: HeadLayout, opset: int, ir_version: int):
    """An ONNX model from the per-scale logits (`box_i`, `cls_i`) to `output0`.

    `layout=NORMALIZED` multiplies distances and anchor points by stride/imgsz *before* the box arithmetic
    (the "normalized scaling factors" fix), so every intermediate tensor and the output stay in 0..1 and a
    single per-tensor INT8 scale can hold boxes and scores together. Reshapes copy the batch (0) rather than
    spell it, so runtimes can re-plan the graph for throughput at other batch sizes.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    if layout in (HeadLayout.DETACHED, HeadLayout.SELECTED):
        raise ValueError(f"a {layout.value} head has no decode graph of ours")
    nodes, inits = [], []

    def const(name: str, value: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(np.asarray(value), HEAD_PREFIX + name))
        return HEAD_PREFIX + name

    def node(op: str, inputs: list[str], name: str, **attrs) -> str:
        out = HEAD_PREFIX + name
        nodes.append(helper.make_node(op, inputs, [out], name=HEAD_PREFIX + name, **attrs))
        return out

    r, nc = spec.reg_max, spec.nc
    anchors, strides = spec.anchors()
    n_anchor = anchors.shape[0]
    inputs = []
    box_flat, cls_flat = [], []
    for i, (h, w) in enumerate(spec.grids):
        inputs.append(helper.make_tensor_value_info(f"box_{i}", TensorProto.FLOAT, [1, 4 * r, h, w]))
        inputs.append(helper.make_tensor_value_info(f"cls_{i}", TensorProto.FLOAT, [1, nc, h, w]))
        box_flat.append(node("Reshape", [f"box_{i}", const(f"shape_box_{i}", np.array([0, 4 * r, h * w]))],
                             f"box_flat_{i}"))
        cls_flat.append(node("Reshape", [f"cls_{i}", const(f"shape_cls_{i}", np.array([0, nc, h * w]))],
                             f"cls_flat_{i}"))
    box = node("Concat", box_flat, "box_cat", axis=2)
    scores = node("Sigmoid", [node("Concat", cls_flat, "cls_cat", axis=2)], "scores")
    if r > 1:  # DFL: softmax over the reg_max bins of each side, then the expected bin index
        dist = node("Reshape", [box, const("shape_dfl", np.array([0, 4, r, n_anchor]))], "dfl_reshape")
        dist = node("Transpose", [dist], "dfl_transpose", perm=[0, 2, 1, 3])
        dist = node("Softmax", [dist], "dfl_softmax", axis=1)
        bins = const("dfl_bins", np.arange(r, dtype=np.float32).reshape(1, r, 1, 1))
        dist = node("Conv", [dist, bins], "dfl_conv")
        dist = node("Reshape", [dist, const("shape_dist", np.array([0, 4, n_anchor]))], "dfl_out")
    else:
        dist = box
    points = anchors.T[None]  # (1, 2, A) grid units
    if layout is HeadLayout.NORMALIZED:
        factor = (strides / spec.imgsz)[None, None]  # normalized scaling factors, precomputed (static shape)
        dist = node("Mul", [dist, const("norm_factor", factor.astype(np.float32))], "dist_norm")
        points = points * factor
    lt = node("Slice", [dist, const("s0", np.array([0])), const("s2", np.array([2])), const("ax1", np.array([1]))],
              "lt")
    rb = node("Slice", [dist, const("s2b", np.array([2])), const("s4", np.array([4])), const("ax1b", np.array([1]))],
              "rb")
    half_diff = node("Mul", [node("Sub", [rb, lt], "rb_minus_lt"), const("half", np.array(0.5, np.float32))],
                     "half_diff")
    centre = node("Add", [half_diff, const("anchor_points", points.astype(np.float32))], "centre")
    size = node("Add", [lt, rb], "size")
    xywh = node("Concat", [centre, size], "xywh", axis=1)
    if layout is HeadLayout.PIXEL:
        xywh = node("Mul", [xywh, const("strides", strides[None, None].astype(np.float32))], "xywh_pixels")
    nodes.append(helper.make_node("Concat", [xywh, scores], [OUTPUT_NAME], name=HEAD_PREFIX + "output", axis=1))
    graph = helper.make_graph(nodes, "edgeq_decode_head", inputs,
                              [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT,
                                                             [1, 4 + nc, n_anchor])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = ir_version
    onnx.checker.check_model(model)
    return model


def attach_head(body, spec: HeadSpec, layout: HeadLayout):
    """The body ONNX with the decode head appended, ending in `output0`."""
    import onnx
    from onnx import compose

    opset = next(o.version for o in body.opset_import if o.domain in ("", "ai.onnx"))
    head = build_decode_head(spec, layout, opset, body.ir_version)
    merged = compose.merge_models(body, head, io_map=[(n, n) for n in spec.body_outputs], outputs=[OUTPUT_NAME],
                                  producer_name="edgeq")
    # merge_models lists the default domain twice ("" from the body's exporter, "" from ours): keep one,
    # or ONNX Runtime's quantizer refuses the model
    others = [o for o in merged.opset_import if o.domain not in ("", "ai.onnx")]
    del merged.opset_import[:]
    merged.opset_import.extend([onnx.helper.make_opsetid("", opset), *others])
    return merged
