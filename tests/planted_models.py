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
