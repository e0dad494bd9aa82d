"""Detectors built so that one layer ruins INT8, for tests that must see a search or a ranking find it."""

from pathlib import Path

OUTLIER_LAYER = "/cv2.0/cv2.0.1/conv/Conv"  # the conv that reads the planted outlier channel


def plant_outlier(source: Path, path: Path) -> Path:
    """Channel 0 of the demo's stride-8 box branch's first conv becomes a constant 5000 (BatchNorm scale 0,
    shift 5000) and the next conv ignores it (weights 0), so FP32 barely changes; but that next conv's input
    needs a per-tensor range of about 0..5000, and every other channel of it rounds to zero. Only
    OUTLIER_LAYER kept in float repairs it."""
    import torch

    checkpoint = torch.load(source, weights_only=False)
    model = checkpoint["ema"] or checkpoint["model"]
    first, second = model.model[-1].cv2[0][0], model.model[-1].cv2[0][1]
    with torch.no_grad():
        first.bn.weight[0], first.bn.bias[0] = 0.0, 5000.0
        second.conv.weight[:, 0] = 0.0
    checkpoint.update(model=model, ema=None)
    torch.save(checkpoint, path)
    return path


COLLAPSED_CLASS = 2  # the demo's class whose scores plant_class_collapse squeezes
CLASS_LOGIT_SHIFT = 7.0  # how far its logits are lowered: a confident 0.99 becomes 0.12, 0.9 becomes 0.002


def plant_class_collapse(source: Path, path: Path, cls: int = COLLAPSED_CLASS, shift: float = CLASS_LOGIT_SHIFT) -> Path:
    """The full FP32 ONNX (images -> output0) with one class's score logits lowered before the decode head's
    Sigmoid, every other node untouched: that class's detections fall under a deployment's threshold and its
    weaker ones under the evaluation's, while the other classes score as before. mAP, a mean over classes
    that only ranks, moves a little; that class's AP and recall collapse."""
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(source))
    graph = model.graph
    logits = "edgeq_head/cls_cat"  # edgeq.head.build_decode_head: the per-anchor class logits, Sigmoid's input
    nc = next(d.dim_value for d in graph.output[0].type.tensor_type.shape.dim[1:2]) - 4
    offset = np.zeros((1, nc, 1), np.float32)
    offset[0, cls, 0] = -shift
    graph.initializer.append(numpy_helper.from_array(offset, "planted/class_shift"))
    for node in graph.node:
        node.input[:] = ["planted/logits" if name == logits else name for name in node.input]
    at = next(i for i, node in enumerate(graph.node) if logits in node.output)
    graph.node.insert(at + 1, helper.make_node("Add", [logits, "planted/class_shift"], ["planted/logits"],
                                               name="planted/class_shift"))
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path
