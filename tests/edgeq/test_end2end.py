"""End-to-end (NMS-free) heads: YOLO26 and YOLOv10 ship their one-to-one branch, decoded by top-k, not NMS.

edgeq's ONNX (body + its own decode head) followed by the host's top-k must select what Ultralytics' own forward
selects, detection for detection; the checkpoints are the demo-shapes detectors in benchmarks/models.
"""

from pathlib import Path

import numpy as np
import pytest
import torch
import ultralytics

from edgeq.errors import EdgeqError
from edgeq.evaluation.decode import decode_detached, select_detections, topk_select
from edgeq.head import HeadLayout
from edgeq.model import export_onnx, load_detector
from edgeq.runners.onnxruntime import OnnxRuntimeRunner

MODELS = Path(__file__).parents[2] / "benchmarks" / "models"
CFG = Path(ultralytics.__file__).parent / "cfg" / "models"


@pytest.fixture(scope="module", params=["demo-yolo26n-320.pt", "demo-yolov10n-320.pt"])
def end2end(request, tmp_path_factory):
    detector = load_detector(MODELS / request.param)
    return detector, export_onnx(detector, tmp_path_factory.mktemp("onnx"))


def test_end2end_checkpoints_take_the_one2one_branch(end2end):
    detector, _ = end2end
    head = detector.head
    assert head.branch == "one2one" and head.end2end and head.max_det == 300
    assert head.selection == "top-300 without NMS"
    assert (head.head_class, head.reg_max) in {("Detect", 1), ("v10Detect", 16)}  # YOLO26 has no DFL


def test_onnx_plus_host_topk_selects_what_ultralytics_selects(end2end, small_data):
    from edgeq.data import load_dataset, preprocess, read_image

    detector, models = end2end
    images = load_dataset(small_data).images("val")[:3]
    with OnnxRuntimeRunner(models.full) as onnx_runner, OnnxRuntimeRunner(models.body) as body_runner:
        for path in images:
            batch, _ = preprocess(read_image(path), detector.head.imgsz)
            with torch.no_grad():
                expected = detector.module(torch.from_numpy(batch))[0].numpy()[0]  # (300, 6), Ultralytics' top-k
            expected = expected[expected[:, 4] > 0.001]
            got = select_detections(onnx_runner.infer(batch), HeadLayout.PIXEL, detector.head)
            assert got.shape == expected.shape and len(got) > 0
            np.testing.assert_allclose(got, expected, atol=2e-3, rtol=1e-4)
            detached = select_detections(body_runner.infer(batch), HeadLayout.DETACHED, detector.head)
            np.testing.assert_allclose(detached, expected, atol=2e-3, rtol=1e-4)


def test_one2many_branch_on_request_runs_nms(tmp_path):
    detector = load_detector(MODELS / "demo-yolo26n-320.pt", head_branch="one2many")
    assert detector.head.branch == "one2many" and not detector.head.end2end
    assert detector.head.selection == "class-aware NMS"
    models = export_onnx(detector, tmp_path)
    x = np.random.default_rng(0).random((1, 3, 320, 320), dtype=np.float32)
    with OnnxRuntimeRunner(models.full) as runner:
        out = runner.infer(x)["output0"]
    with torch.no_grad():
        expected = detector.module(torch.from_numpy(x))[0].numpy()  # fused one2many: (1, 4 + nc, anchors)
    np.testing.assert_allclose(out, expected, atol=2e-3, rtol=1e-4)


def test_one2one_on_a_model_without_it_is_refused(demo_pt):
    with pytest.raises(EdgeqError, match="has no one2one branch .*one2many") as err:
        load_detector(demo_pt, head_branch="one2one")
    assert "--head-branch one2many" in str(err.value)


def test_a_head_edgeq_cannot_place_names_what_it_supports():
    with pytest.raises(EdgeqError, match="head RTDETRDecoder") as err:
        load_detector(CFG / "rt-detr" / "rtdetr-l.yaml", 320)
    assert "v10Detect (YOLOv10)" in str(err.value) and "Detect (YOLOv8" in str(err.value)


def test_topk_keeps_the_best_anchor_class_pairs_without_suppression():
    """Two overlapping boxes that NMS would merge both survive; the order is by score."""
    pred = np.zeros((4 + 2, 3), np.float32)
    pred[:4] = np.array([[50, 52, 200], [50, 50, 200], [20, 20, 10], [20, 20, 10]], np.float32)
    pred[4:] = np.array([[0.9, 0.8, 0.0], [0.1, 0.7, 0.3]], np.float32)
    dets = topk_select(pred, conf=0.05, max_det=3)
    assert dets[:, 4].tolist() == pytest.approx([0.9, 0.8, 0.7])  # top anchors 0, 1, 2; then the best pairs
    assert dets[:, 5].tolist() == [0, 0, 1]


def test_detached_decoder_handles_dfl_free_boxes(end2end):
    """reg_max 1 (YOLO26): the box convolutions give the four distances directly."""
    detector, models = end2end
    x = np.random.default_rng(2).random((1, 3, 320, 320), dtype=np.float32)
    with OnnxRuntimeRunner(models.body) as body, OnnxRuntimeRunner(models.full) as full:
        np.testing.assert_allclose(decode_detached(body.infer(x), detector.head), full.infer(x)["output0"][0],
                                   atol=1e-3, rtol=1e-4)


def test_exported_graphs_run_at_any_batch(end2end):
    """Reshapes copy the batch instead of spelling 1 (YOLO26's attention), so runtimes can re-plan the graph
    for throughput; with the batch left free, four images give what each gives alone."""
    import onnx
    import onnxruntime as ort

    _, models = end2end
    for path in (models.body, models.full):
        model = onnx.load(str(path))
        for value in (model.graph.input[0], *model.graph.output):
            value.type.tensor_type.shape.dim[0].dim_param = "N"
        del model.graph.value_info[:]
        session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        x = np.random.default_rng(3).random((4, 3, 320, 320), dtype=np.float32)
        four, one = session.run(None, {"images": x}), session.run(None, {"images": x[2:3]})
        for a, b in zip(four, one):
            assert a.shape[0] == 4
            np.testing.assert_allclose(a[2:3], b, atol=1e-4)
