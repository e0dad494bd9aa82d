"""Fixtures of the TFLite family tests: small real models (160 px) and a Job builder.

Everything heavy is real: onnx2tf, the TFLite converter and LiteRT. Tests that need them skip cleanly when
the stack is not installed (`pip install 'edgeq[tflite]'`).
"""

from __future__ import annotations

import pytest
from tflite_testlib import ASSETS, IMGSZ


@pytest.fixture(scope="session")
def onnx_pair(tmp_path_factory):
    """(body, full) ONNX of the demo architecture at 160 px, per activation: untrained SiLU / ReLU6 YAMLs
    (graph-level tests) and the trained ReLU6 weights (numbers that mean something)."""
    from edgeq.model import export_onnx, load_detector

    cache = {}

    def get(source: str):
        if source not in cache:
            path = ASSETS / source
            detector = load_detector(path, IMGSZ)
            models = export_onnx(detector, tmp_path_factory.mktemp(path.stem))
            cache[source] = (models, detector)
        return cache[source]

    return get


@pytest.fixture(scope="session")
def calib_160(tmp_path_factory):
    """16 letterboxed synthetic training images at 160 px (the evaluator's own preprocessing)."""
    from edgeq.data import ImageBatches, load_dataset, subsample
    from edgeq.synthetic import generate_dataset

    root = tmp_path_factory.mktemp("shapes160")
    generate_dataset(root, train=16, val=16, imgsz=IMGSZ, seed=0)
    data = load_dataset(root / "data.yaml")
    return ImageBatches(subsample(data.images("train"), 16, 0), IMGSZ), data
