"""The host side of every artifact: the letterbox that makes its input and the decoder that turns its outputs
into detections, in numpy (and OpenCV for resizing) with no other import.

edgeq's evaluator uses exactly this module, and every deploy kit ships it verbatim beside its inference script,
so what runs on the device after the model is what edgeq measured. Keep it free of edgeq imports: it must run
on a Jetson, a Coral board or an i.MX8M Plus where only numpy, OpenCV and the target's runtime are installed.

`head` is anything with the head description's fields (edgeq's HeadSpec, or the kit's `head.json` read by
`load_head`): nc, reg_max, strides, imgsz, names, end2end, max_det. `layout` is the artifact's output layout
as text (edgeq's HeadLayout is a str enum with the same values):
- pixel: `output0` (1, 4 + nc, A), xywh in input pixels and sigmoid scores;
- normalized: the same with xywh in 0..1 of the input size;
- detached: the per-scale head convolutions `box_i` (1, 4 * reg_max, H, W) and `cls_i` (1, nc, H, W), decoded
  here in FP32 (DFL expectation, anchor arithmetic, sigmoid);
- selected: detections already chosen inside the model, (1, max_det, 6) x1 y1 x2 y2 score class.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np

PAD_VALUE = 114  # Ultralytics' letterbox grey
OUTPUT_NAME = "output0"


# --- input ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Letterbox:
    """How an image was fitted into the square input: scale, then padding (left, top)."""

    ratio: float
    pad: tuple[float, float]
    shape: tuple[int, int]  # original (h, w)

    def to_original(self, xyxy: np.ndarray) -> np.ndarray:
        out = xyxy.copy()
        out[:, [0, 2]] = (out[:, [0, 2]] - self.pad[0]) / self.ratio
        out[:, [1, 3]] = (out[:, [1, 3]] - self.pad[1]) / self.ratio
        out[:, [0, 2]] = out[:, [0, 2]].clip(0, self.shape[1])
        out[:, [1, 3]] = out[:, [1, 3]].clip(0, self.shape[0])
        return out


def letterbox(image_bgr: np.ndarray, size: int) -> tuple[np.ndarray, Letterbox]:
    """BGR uint8 HWC (as cv2.imread gives) -> float32 (1, 3, size, size) RGB in [0, 1], letterboxed as
    Ultralytics does (scale to fit, pad centred with grey 114)."""
    import cv2

    h, w = image_bgr.shape[:2]
    ratio = min(size / h, size / w)
    new_w, new_h = round(w * ratio), round(h * ratio)
    if (new_w, new_h) != (w, h):
        image_bgr = cv2.resize(image_bgr, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    pad_w, pad_h = (size - new_w) / 2, (size - new_h) / 2
    top, bottom = round(pad_h - 0.1), round(pad_h + 0.1)
    left, right = round(pad_w - 0.1), round(pad_w + 0.1)
    image_bgr = cv2.copyMakeBorder(image_bgr, top, bottom, left, right, cv2.BORDER_CONSTANT,
                                   value=(PAD_VALUE,) * 3)
    chw = image_bgr[:, :, ::-1].transpose(2, 0, 1)
    batch = np.ascontiguousarray(chw, dtype=np.float32)[None] / 255.0
    return batch, Letterbox(ratio=ratio, pad=(left, top), shape=(h, w))


# --- the head description ------------------------------------------------------------------------------------


def load_head(path: Path) -> SimpleNamespace:
    """The kit's head.json as an object with the fields the decoder reads."""
    data = json.loads(Path(path).read_text())
    return SimpleNamespace(nc=data["nc"], reg_max=data["reg_max"], strides=tuple(data["strides"]),
                           imgsz=data["imgsz"], names=tuple(data["names"]), end2end=data.get("end2end", False),
                           max_det=data.get("max_det", 300))


def box_outputs(head) -> list[str]:
    return [f"box_{i}" for i in range(len(head.strides))]


def cls_outputs(head) -> list[str]:
    return [f"cls_{i}" for i in range(len(head.strides))]


def anchors(strides, imgsz: int) -> tuple[np.ndarray, np.ndarray]:
    """Anchor centres in grid units (A, 2) and the stride of each anchor (A,), as Ultralytics makes them."""
    points, per_anchor = [], []
    for s in strides:
        h = w = imgsz // s
        sy, sx = np.meshgrid(np.arange(h, dtype=np.float32) + 0.5, np.arange(w, dtype=np.float32) + 0.5,
                             indexing="ij")
        points.append(np.stack([sx, sy], -1).reshape(-1, 2))
        per_anchor.append(np.full(h * w, s, dtype=np.float32))
    return np.concatenate(points), np.concatenate(per_anchor)


# --- outputs -> predictions -> detections ----------------------------------------------------------------------


def sigmoid(x: np.ndarray) -> np.ndarray:
    """The logistic function without overflow for large negative logits (INT8 outputs reach -128 * scale)."""
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def decode_detached(outputs: Mapping[str, np.ndarray], head) -> np.ndarray:
    """Per-scale logits -> (4 + nc, A) with xywh in input pixels and sigmoid scores (edgeq's ONNX decode head,
    operation for operation)."""
    r = head.reg_max
    box = np.concatenate([outputs[n].reshape(4 * r, -1) for n in box_outputs(head)], axis=1).astype(np.float32)
    cls = np.concatenate([outputs[n].reshape(head.nc, -1) for n in cls_outputs(head)], axis=1).astype(np.float32)
    if r > 1:
        logits = box.reshape(4, r, -1)
        logits = np.exp(logits - logits.max(axis=1, keepdims=True))
        dist = (logits / logits.sum(axis=1, keepdims=True) * np.arange(r, dtype=np.float32)[None, :, None]).sum(1)
    else:
        dist = box
    points, strides = anchors(head.strides, head.imgsz)
    lt, rb = dist[:2], dist[2:]
    centre = points.T + (rb - lt) * 0.5
    xywh = np.concatenate([centre, lt + rb], axis=0) * strides[None]
    return np.concatenate([xywh, sigmoid(cls)], axis=0)


def to_pixel_predictions(outputs: Mapping[str, np.ndarray], layout: str, head) -> np.ndarray:
    """Any artifact's outputs -> (4 + nc, A) predictions, xywh in input pixels."""
    if layout == "detached":
        return decode_detached(outputs, head)
    pred = np.asarray(outputs[OUTPUT_NAME], dtype=np.float32).reshape(4 + head.nc, -1)
    if layout == "normalized":
        pred = pred.copy()
        pred[:4] *= head.imgsz
    return pred


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float, max_keep: int) -> np.ndarray:
    """Greedy non-maximum suppression on xyxy boxes; returns kept indices, best first."""
    order = np.argsort(-scores, kind="stable")
    x1, y1, x2, y2 = boxes.T
    areas = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    keep = []
    while order.size and len(keep) < max_keep:
        i = order[0]
        keep.append(i)
        rest = order[1:]
        w = np.clip(np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]), 0, None)
        h = np.clip(np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]), 0, None)
        inter = w * h
        iou = inter / (areas[i] + areas[rest] - inter + 1e-9)
        order = rest[iou <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)


def topk_select(pred: np.ndarray, conf: float = 0.001, max_det: int = 300) -> np.ndarray:
    """Ultralytics' end-to-end selection (Detect.get_topk_index), no NMS: the max_det anchors with the best
    class score, then the best max_det (anchor, class) pairs among them; then the confidence threshold."""
    scores = pred[4:]  # (nc, A)
    nc, n_anchors = scores.shape
    k = min(max_det, n_anchors)
    best_anchors = _topk(scores.max(0), k)
    pair_scores = scores[:, best_anchors].T.reshape(-1)  # (k * nc), anchor-major as Ultralytics flattens
    pairs = _topk(pair_scores, k)
    anchor, cls = best_anchors[pairs // nc], pairs % nc
    score = pair_scores[pairs]
    xywh = pred[:4, anchor].T
    xyxy = np.concatenate([xywh[:, :2] - xywh[:, 2:] / 2, xywh[:, :2] + xywh[:, 2:] / 2], axis=1)
    dets = np.concatenate([xyxy, score[:, None], cls[:, None].astype(np.float32)], axis=1).astype(np.float32)
    return dets[score > conf]


def _topk(values: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest values, largest first (ties: lower index first, as torch.topk on CPU)."""
    part = np.argpartition(-values, k - 1)[:k] if k < values.size else np.arange(values.size)
    return part[np.lexsort((part, -values[part]))]


def postprocess(pred: np.ndarray, conf: float = 0.001, iou: float = 0.7, max_det: int = 300,
                max_candidates: int = 30000) -> np.ndarray:
    """(4 + nc, A) pixel predictions -> (N, 6) detections [x1, y1, x2, y2, score, class], class-aware NMS."""
    scores_all = pred[4:]
    cls = scores_all.argmax(0)
    score = scores_all[cls, np.arange(cls.size)]
    mask = score > conf
    if not mask.any():
        return np.zeros((0, 6), np.float32)
    xywh, score, cls = pred[:4, mask].T, score[mask], cls[mask]
    if score.size > max_candidates:
        top = np.argsort(-score)[:max_candidates]
        xywh, score, cls = xywh[top], score[top], cls[top]
    xyxy = np.concatenate([xywh[:, :2] - xywh[:, 2:] / 2, xywh[:, :2] + xywh[:, 2:] / 2], axis=1)
    offset = cls[:, None].astype(np.float32) * 7680.0  # class-aware NMS in one pass (boxes never overlap across classes)
    keep = nms(xyxy + offset, score, iou, max_det)
    return np.concatenate([xyxy[keep], score[keep, None], cls[keep, None].astype(np.float32)], axis=1)


def select_detections(outputs: Mapping[str, np.ndarray], layout: str, head, conf: float = 0.001,
                      iou: float = 0.7, max_det: int = 300) -> np.ndarray:
    """Any artifact's outputs -> (N, 6) detections [x1, y1, x2, y2, score, class] in input pixels, chosen the
    way the head is meant to be deployed (class-aware NMS, or top-k for an NMS-free head)."""
    if layout == "selected":
        dets = np.asarray(next(iter(outputs.values())), np.float32).reshape(-1, 6)
        return dets[dets[:, 4] > conf]
    pred = to_pixel_predictions(outputs, layout, head)
    if head.end2end:
        return topk_select(pred, conf, min(max_det, head.max_det))
    return postprocess(pred, conf, iou, max_det)


def detect(outputs: Mapping[str, np.ndarray], layout: str, head, box: Letterbox, conf: float = 0.25,
           iou: float = 0.7) -> np.ndarray:
    """One image's outputs -> (N, 6) detections in the original image's pixels."""
    dets = select_detections(outputs, layout, head, conf, iou)
    dets[:, :4] = box.to_original(dets[:, :4])
    return dets


def format_detections(dets: np.ndarray, names) -> list[str]:
    """One line per detection: class name, score, box x1 y1 x2 y2 in image pixels."""
    return [f"{names[int(c)] if int(c) < len(names) else int(c)} {s:.3f} {x1:.1f} {y1:.1f} {x2:.1f} {y2:.1f}"
            for x1, y1, x2, y2, s, c in dets.tolist()]


# --- the deploy kit's command line ------------------------------------------------------------------------------


def run_on_image(open_model, description: str, add_arguments=None, argv=None) -> int:
    """`python3 infer.py IMAGE [--model FILE]` in a deploy kit: letterbox the image, run the artifact with
    `open_model(path, args, head)` (the family's runtime; returns images -> {output name: array}), decode as edgeq's
    evaluator does, print one line per detection. Bad input is one line on stderr and exit code 2."""
    import argparse
    import sys

    kit = Path(__file__).resolve().parent
    parser = argparse.ArgumentParser(description=description.strip().splitlines()[0])
    parser.add_argument("image", type=Path, help="an image file (any format OpenCV reads)")
    parser.add_argument("--model", type=Path, help="an artifact listed in deploy.json (default: the deployable INT8)")
    parser.add_argument("--conf", type=float, default=0.25, help="score threshold (default 0.25)")
    parser.add_argument("--iou", type=float, default=0.7, help="NMS IoU threshold (default 0.7)")
    if add_arguments:
        add_arguments(parser)
    args = parser.parse_args(argv)
    import cv2

    deploy = json.loads((kit / "deploy.json").read_text())
    head = load_head(kit / "head.json")
    model = args.model if args.model is not None else Path(deploy["default"])
    model = model if model.is_absolute() or model.exists() else kit / model
    files = {f: a for a in deploy["artifacts"] for f in (a["file"], *a.get("device_files", []))}
    entry = next((a for f, a in files.items() if (kit / f).resolve() == model.resolve()), None)
    if entry is None:
        print(f"infer.py: error: '{model}' is not an artifact of this kit; choose one of: {', '.join(files)}",
              file=sys.stderr)
        return 2
    if not model.exists():
        print(f"infer.py: error: '{model}' does not exist; build it first (DEPLOY.md says how)", file=sys.stderr)
        return 2
    if not args.image.is_file():
        print(f"infer.py: error: image '{args.image}' does not exist", file=sys.stderr)
        return 2
    image = cv2.imread(str(args.image), cv2.IMREAD_COLOR)
    if image is None:
        print(f"infer.py: error: cannot read image '{args.image}'", file=sys.stderr)
        return 2
    batch, box = letterbox(image, head.imgsz)
    infer = open_model(model, args, head)
    dets = detect(infer(batch), entry["layout"], head, box, args.conf, args.iou)
    for line in format_detections(dets, head.names):
        print(line)
    return 0
