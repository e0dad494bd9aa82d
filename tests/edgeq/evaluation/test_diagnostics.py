"""What mAP hides, on matches small enough to score by hand: per-class AP, precision/recall/F1 at a threshold,
FP32's best-F1 threshold, the matched objects' score change and COCO's small/medium/large AP."""

import numpy as np
import pytest

from edgeq.evaluation.diagnostics import at_threshold, best_f1_threshold, class_ap, confidence_shift, describe
from edgeq.evaluation.matches import match_images
from edgeq.evaluation.metrics import CocoAccumulator

SIZE = 200  # square images, pixels
# ground truth per image: (class, x, y, w, h) in pixels. Areas: 100 (small), 1600 (medium), 10000 (large: > 96^2)
OBJECTS = [[(0, 0, 0, 10, 10), (0, 50, 50, 10, 10), (1, 100, 100, 40, 40)],
           [(0, 0, 0, 10, 10), (1, 20, 20, 100, 100)]]
# detections per image: (x, y, w, h, score, class). Every hit is the exact box (a TP at every IoU threshold, so
# AP50-95 is AP50); misses lie where no object is.
DETECTIONS = [[(0, 0, 10, 10, 0.9, 0), (50, 50, 10, 10, 0.3, 0), (150, 150, 10, 10, 0.6, 0),
               (100, 100, 40, 40, 0.8, 1), (150, 150, 10, 10, 0.15, 1)],
              [(0, 0, 10, 10, 0.2, 0), (150, 150, 10, 10, 0.1, 0), (20, 20, 100, 100, 0.4, 1),
               (150, 150, 40, 40, 0.5, 1)]]


def _accumulator(detections=DETECTIONS) -> CocoAccumulator:
    acc = CocoAccumulator(nc=2)
    for objects, dets in zip(OBJECTS, detections):
        labels = np.array([[c, (x + w / 2) / SIZE, (y + h / 2) / SIZE, w / SIZE, h / SIZE] for c, x, y, w, h in objects],
                          np.float64)
        boxes = np.array([[x, y, x + w, y + h, s, c] for x, y, w, h, s, c in dets], np.float64).reshape(-1, 6)
        acc.add((SIZE, SIZE), labels, boxes)
    return acc


def _table(detections=DETECTIONS):
    acc = _accumulator(detections)
    acc.score()
    return acc.matches()


def test_class_ap_is_cocos_101_point_ap_per_class():
    # class 0, in score order: 0.9 TP, 0.6 FP, 0.3 TP, 0.2 TP (0.1 FP after the last TP moves nothing), 3 objects.
    # Precision's envelope is 1 up to recall 1/3 (34 of COCO's 101 recall points), 3/4 after (67 points).
    # class 1: 0.8 TP, 0.5 FP, 0.4 TP, 2 objects: 1 up to recall 0.5 (51 points), 2/3 after (50 points).
    table = _table()
    assert class_ap(table) == [round(100 * (34 + 67 * 0.75) / 101, 2), round(100 * (51 + 50 * 2 / 3) / 101, 2)]
    assert np.mean(class_ap(table)) == pytest.approx(table.map50_95(), abs=0.01)


def test_a_class_without_ground_truth_has_no_ap_and_no_precision_or_recall():
    acc = CocoAccumulator(nc=3)  # class 2 never appears in these images
    for objects, dets in zip(OBJECTS, DETECTIONS):
        labels = np.array([[c, (x + w / 2) / SIZE, (y + h / 2) / SIZE, w / SIZE, h / SIZE] for c, x, y, w, h in objects])
        acc.add((SIZE, SIZE), labels, np.array([[x, y, x + w, y + h, s, c] for x, y, w, h, s, c in dets]))
    table = acc.matches()
    assert class_ap(table)[2] is None
    at = at_threshold(table, 0.25)
    assert at["class_recall"][2] is None and at["class_precision"][2] is None


def test_precision_recall_and_f1_at_the_deployment_threshold():
    # kept at 0.25: 0.9 TP, 0.6 FP, 0.3 TP (class 0); 0.8 TP, 0.5 FP, 0.4 TP (class 1); 0.2 TP is below it
    at = at_threshold(_table(), 0.25)
    assert at["detections"] == 6 and at["conf"] == 0.25
    assert (at["precision"], at["recall"], at["f1"]) == (66.67, 80.0, round(100 * 2 * (4 / 6) * 0.8 / (4 / 6 + 0.8), 2))
    assert at["class_recall"] == [66.67, 100.0] and at["class_precision"] == [66.67, 66.67]


def test_best_f1_threshold_is_where_f1_over_all_classes_peaks():
    # all classes in score order: .9T .8T .6F .5F .4T .3T .2T .15F .1F, 5 objects: F1 = 2 hits / (kept + 5) is
    # highest, 10/12, keeping everything down to 0.2
    table = _table()
    best = best_f1_threshold(table)
    assert best == 0.2
    at = at_threshold(table, best)
    assert (at["detections"], at["precision"], at["recall"], at["f1"]) == (7, 71.43, 100.0, 83.33)
    assert all(at_threshold(table, s)["f1"] <= at["f1"] for s in table.det_score)


def test_best_f1_threshold_keeps_every_detection_of_a_tied_score():
    # two objects; 0.9 TP, then four detections tied at 0.5 of which one is a TP. A threshold keeps all four or
    # none: F1 2/3 at 0.9, 4/7 at 0.5. Counting the tied TP alone (F1 1.0) would pick 0.5, where F1 is lower.
    annotations = [{"image_id": 1, "category_id": 0, "bbox": [0, 0, 10, 10], "area": 100.0},
                   {"image_id": 1, "category_id": 0, "bbox": [50, 50, 10, 10], "area": 100.0}]
    detections = [[1, 0, 0, 10, 10, 0.9, 0], [1, 50, 50, 10, 10, 0.5, 0]] + \
        [[1, 100 + 20 * i, 100, 10, 10, 0.5, 0] for i in range(3)]
    table = match_images(1, 1, annotations, detections)
    best = best_f1_threshold(table)
    assert best == 0.9 and at_threshold(table, best)["f1"] == pytest.approx(100 * 2 / 3, abs=0.01)


def test_best_f1_threshold_without_detections_or_objects_is_the_deployment_default():
    empty = match_images(1, 1, [], [])
    assert best_f1_threshold(empty) == 0.25


def test_confidence_shift_of_the_objects_both_find():
    # the artifact halves every score and misses the object FP32 found at 0.3: the four both find moved
    # -0.45, -0.4, -0.1, -0.2 (median -0.3); their FP32 scores .9 .8 .2 .4 (median 0.6), the artifact's 0.3
    halved = [[(x, y, w, h, s / 2, c) for x, y, w, h, s, c in dets if s != 0.3] for dets in DETECTIONS]
    reference, table = _table(), _table(halved)
    shift = confidence_shift(reference, table)
    assert shift == {"matched": 4, "median_change": -0.3, "fp32_median": 0.6, "median": 0.3}
    assert confidence_shift(reference, reference)["median_change"] == 0.0
    assert confidence_shift(reference, _table([[], []]))["matched"] == 0


def test_size_ap_follows_cocos_area_ranges():
    # small: class 0's three 10x10 objects, AP as class 0's; medium: class 1's 40x40 (found first, 0.8, then a
    # medium FP); large: class 1's 100x100 (0.4; the hit on the medium object is ignored there, not a FP)
    table = _table()
    assert table.size_ap == {"small": class_ap(table)[0], "medium": 100.0, "large": 100.0}
    no_large = _accumulator([DETECTIONS[0], []])
    no_large.score()
    assert no_large.size_ap["large"] == 0.0


def test_describe_holds_every_figure_the_report_reads():
    table = _table()
    d = describe(table, table, 0.25, best_f1_threshold(table))
    assert set(d) == {"class_ap", "fp32_class_ap", "at_deploy_conf", "at_fp32_best_f1", "confidence_shift",
                      "matched_scores", "size_ap"}
    assert d["at_deploy_conf"]["conf"] == 0.25 and d["at_fp32_best_f1"]["conf"] == 0.2
    assert sorted(d["matched_scores"]) == [0.2, 0.3, 0.4, 0.8, 0.9]


def test_a_subset_is_described_against_fp32_on_the_same_images():
    # --fast scores an artifact on the first images only: its per-class drops must be against FP32 on those
    table = _table()
    first = table.subset(1)
    d = describe(first, first, 0.25, 0.2)
    assert d["fp32_class_ap"] == class_ap(first) != class_ap(table)
    assert d["size_ap"] == {}  # COCO's size AP is the whole set's: not claimed for a subset
