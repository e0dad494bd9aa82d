"""The ONNX decode head, the numpy host decoder and Ultralytics' own forward must agree."""

import numpy as np
import onnxruntime as ort
import pytest
import torch

from edgeq.evaluation.decode import decode_detached
from edgeq.head import HeadLayout, HeadSpec, attach_head
from edgeq.model import export_onnx, load_detector


@pytest.fixture(scope="module")
def exported(yolo_yaml, tmp_path_factory):
    detector = load_detector(yolo_yaml, 320)
    return detector, export_onnx(detector, tmp_path_factory.mktemp("onnx"))


def _run(path_or_model, x):
    model = path_or_model if isinstance(path_or_model, (str, bytes)) else path_or_model.SerializeToString()
    session = ort.InferenceSession(model)
    return dict(zip([o.name for o in session.get_outputs()], session.run(None, {"images": x})))


def test_full_onnx_matches_ultralytics_forward(exported):
    detector, models = exported
    x = np.random.default_rng(0).random((1, 3, 320, 320), dtype=np.float32)
    with torch.no_grad():
        expected = detector.module(torch.from_numpy(x))[0].numpy()
    got = _run(str(models.full), x)["output0"]
    assert got.shape == expected.shape == (1, 4 + 6, 2100)
    np.testing.assert_allclose(got, expected, atol=1e-3, rtol=1e-4)


def test_host_decoder_matches_onnx_head(exported):
    detector, models = exported
    x = np.random.default_rng(1).random((1, 3, 320, 320), dtype=np.float32)
    body = _run(str(models.body), x)
    full = _run(str(models.full), x)["output0"][0]
    np.testing.assert_allclose(decode_detached(body, detector.head), full, atol=1e-3, rtol=1e-4)


def test_normalized_head_is_pixel_head_over_imgsz(exported):
    import onnx

    detector, models = exported
    x = np.random.default_rng(2).random((1, 3, 320, 320), dtype=np.float32)
    normalized = attach_head(onnx.load(str(models.body)), detector.head, HeadLayout.NORMALIZED)
    norm = _run(normalized, x)["output0"][0]
    pixel = _run(str(models.full), x)["output0"][0]
    assert np.abs(norm[:4]).max() < 2.0  # boxes live in 0..1 (a little outside for boxes past the border)
    np.testing.assert_allclose(norm[:4] * 320, pixel[:4], atol=1e-2, rtol=1e-4)
    np.testing.assert_allclose(norm[4:], pixel[4:], atol=1e-6)


def test_head_nodes_are_named_for_exclusion(exported):
    import onnx

    _, models = exported
    names = [n.name for n in onnx.load(str(models.full)).graph.node]
    head = [n for n in names if n.startswith("edgeq_head/")]
    assert {"edgeq_head/scores", "edgeq_head/dfl_softmax", "edgeq_head/output"} <= set(head)
    assert len(head) < len(names) / 3


def test_head_spec_json_round_trip(tmp_path):
    spec = HeadSpec(nc=3, reg_max=16, strides=(8, 16, 32), imgsz=256, names=("a", "b", "c"))
    spec.to_json(tmp_path / "head.json")
    assert HeadSpec.from_json(tmp_path / "head.json") == spec
    points, strides = spec.anchors()
    assert points.shape == (32 * 32 + 16 * 16 + 8 * 8, 2) and strides[0] == 8 and strides[-1] == 32
    assert points[0].tolist() == [0.5, 0.5]
