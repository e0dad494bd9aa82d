"""Fixtures for the TensorRT family: small ONNX graphs built by hand, and the demo-shaped YOLO exported once."""

from __future__ import annotations

from pathlib import Path

import pytest

ASSETS = Path(__file__).parents[3] / "edgeq" / "assets"


@pytest.fixture(scope="session")
def yolo_onnx(tmp_path_factory):
    """The untrained demo-shaped YOLOv8n (SiLU and ReLU6) exported at 320: (body, full, head) per activation."""
    from edgeq.model import export_onnx, load_detector

    found = {}
    for act in ("silu", "relu6"):
        detector = load_detector(ASSETS / f"demo-yolov8n-{act}.yaml", 320)
        models = export_onnx(detector, tmp_path_factory.mktemp(f"yolo-{act}"))
        found[act] = (models.body, models.full, detector.head)
    return found


@pytest.fixture(scope="session")
def calib_images(small_data):
    from edgeq.data import ImageBatches, load_dataset

    return ImageBatches(load_dataset(small_data).images("train")[:8], 320)
