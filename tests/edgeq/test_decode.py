import numpy as np

from edgeq.evaluation.decode import nms, postprocess


def test_nms_suppresses_overlaps_and_keeps_best():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], np.float32)
    keep = nms(boxes, np.array([0.5, 0.9, 0.8], np.float32), iou_threshold=0.5, max_keep=10)
    assert keep.tolist() == [1, 2]


def test_postprocess_is_class_aware_and_filters_by_conf():
    # two identical boxes of different classes survive; a low-score anchor is dropped
    pred = np.zeros((4 + 2, 3), np.float32)
    pred[:4, 0] = pred[:4, 1] = [20, 20, 10, 10]
    pred[:4, 2] = [80, 80, 10, 10]
    pred[4, 0], pred[5, 1], pred[4, 2] = 0.9, 0.8, 0.0005
    dets = postprocess(pred, conf=0.001, iou=0.5)
    assert dets.shape == (2, 6)
    assert sorted(dets[:, 5].tolist()) == [0.0, 1.0]
    np.testing.assert_allclose(dets[0, :4], [15, 15, 25, 25])


def test_postprocess_respects_max_det():
    rng = np.random.default_rng(0)
    pred = np.concatenate([rng.uniform(0, 300, (2, 500)), np.full((2, 500), 2.0),
                           rng.uniform(0.1, 1, (1, 500))]).astype(np.float32)
    assert len(postprocess(pred, conf=0.001, iou=0.99, max_det=7)) == 7
