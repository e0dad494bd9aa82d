import numpy as np
import pytest

from edgeq.evaluation.metrics import CocoAccumulator


def _labels():
    return np.array([[0, 0.25, 0.25, 0.2, 0.2], [1, 0.7, 0.7, 0.3, 0.2]], np.float32)


def _perfect(labels, w=200, h=100):
    rows = []
    for cls, cx, cy, bw, bh in labels:
        rows.append([(cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w, (cy + bh / 2) * h, 0.9, cls])
    return np.array(rows, np.float32)


def test_perfect_detections_score_100():
    acc = CocoAccumulator(nc=2)
    acc.add((100, 200), _labels(), _perfect(_labels()))
    assert acc.score() == pytest.approx((100.0, 100.0))


def test_shifted_detections_score_lower_and_wrong_class_scores_zero():
    shifted = _perfect(_labels())
    shifted[:, [0, 2]] += 6  # IoU ~0.7 for the first box: counts at 0.5, not at 0.75
    acc = CocoAccumulator(nc=2)
    acc.add((100, 200), _labels(), shifted)
    map50_95, map50 = acc.score()
    assert map50 == pytest.approx(100.0) and 20 < map50_95 < 90
    wrong = _perfect(_labels())
    wrong[:, 5] = 1 - wrong[:, 5]
    acc = CocoAccumulator(nc=2)
    acc.add((100, 200), _labels(), wrong)
    assert acc.score() == (0.0, 0.0)


def test_no_detections_scores_zero():
    acc = CocoAccumulator(nc=2)
    acc.add((100, 200), _labels(), np.zeros((0, 6), np.float32))
    assert acc.score() == (0.0, 0.0)
