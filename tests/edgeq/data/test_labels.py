"""Label files as Ultralytics reads them for detection: polygons to boxes, background images, refusals."""

import shutil

import numpy as np
import pytest

from edgeq.data import LabelStats, load_dataset, read_labels
from edgeq.errors import EdgeqError


def _labelled(tmp_path, text: str | None):
    (tmp_path / "images").mkdir(exist_ok=True)
    (tmp_path / "labels").mkdir(exist_ok=True)
    image = tmp_path / "images" / "a.jpg"
    if text is not None:
        (tmp_path / "labels" / "a.txt").write_text(text)
    return image


def test_polygon_line_becomes_its_bounding_box(tmp_path):
    stats = LabelStats()
    labels = read_labels(_labelled(tmp_path, "2 0.1 0.2 0.5 0.25 0.3 0.6\n1 0.5 0.5 0.2 0.2\n"), nc=3, stats=stats)
    np.testing.assert_allclose(labels, [[2, 0.3, 0.4, 0.4, 0.4], [1, 0.5, 0.5, 0.2, 0.2]], atol=1e-6)
    assert (stats.polygons, stats.boxes, stats.mixed_files) == (1, 1, 1)
    assert "1 polygon lines turned into their bounding boxes" in stats.summary()


@pytest.mark.parametrize("text", [None, "", "\n\n"])
def test_missing_or_empty_label_file_is_a_background_image(tmp_path, text):
    stats = LabelStats()
    assert read_labels(_labelled(tmp_path, text), nc=3, stats=stats).shape == (0, 5)
    assert stats.background == 1 and "1 background images" in stats.summary()


def test_duplicate_lines_are_dropped_as_ultralytics_does(tmp_path):
    stats = LabelStats()
    assert len(read_labels(_labelled(tmp_path, "0 0.5 0.5 0.2 0.2\n0 0.5 0.5 0.2 0.2\n"), 1, stats)) == 1
    assert stats.duplicates == 1


def test_ultralytics_one_percent_coordinate_tolerance(tmp_path):
    assert len(read_labels(_labelled(tmp_path, "0 0.5 0.5 1.005 0.2\n0 -0.005 0.1 0.2 0.3 0.4 0.5\n"), 1)) == 2


@pytest.mark.parametrize("line, why", [
    ("0 0.5 0.5 0.2", "want 'class cx cy w h'"),
    ("0 0.1 0.1 0.2 0.3 0.4 0.5 0.6", "want 'class cx cy w h'"),  # odd coordinate count
    ("x 0.5 0.5 0.2 0.2", "want 'class cx cy w h'"),
    ("9 0.5 0.5 0.2 0.2", "class id 9 is not one of the dataset's classes 0..5"),
    ("1.5 0.5 0.5 0.2 0.2", "class id 1.5"),
    ("0 1.5 0.5 0.2 0.2", "normalised to 0..1"),
    ("0 0.1 0.1 0.2 0.3 1.4 0.5", "normalised to 0..1"),  # a polygon point outside the image
    ("0 0.5 0.5 -0.1 0.2", "normalised to 0..1"),
])
def test_bad_label_lines_name_file_and_line(tmp_path, line, why):
    with pytest.raises(EdgeqError, match=r"a\.txt:2") as err:
        read_labels(_labelled(tmp_path, f"1 0.5 0.5 0.1 0.1\n{line}\n"), nc=6)
    assert why in str(err.value) and "\n" not in str(err.value)


def test_polygon_labels_score_like_their_box_only_copy(tmp_path, small_data, demo_pt):
    """The same objects written as polygons (Roboflow's export) and as boxes give the same mAP."""
    from edgeq.evaluation.evaluator import EvalSet, evaluate
    from edgeq.head import HeadLayout
    from edgeq.model import load_detector
    from edgeq.runners.torch import TorchRunner

    images = load_dataset(small_data).images("val")[:12]
    polygon_copy = tmp_path / "poly"
    for image in images:
        target = polygon_copy / "images" / image.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(image, target)
        lines = []
        for cls, cx, cy, w, h in read_labels(image, 6):  # each box as an 8-point polygon on its outline
            x0, y0, x1, y1 = cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2
            points = [x0, y0, cx, y0, x1, y0, x1, cy, x1, y1, cx, y1, x0, y1, x0, cy]
            lines.append(" ".join([str(int(cls))] + [f"{p:.6f}" for p in points]))
        label = polygon_copy / "labels" / f"{image.stem}.txt"
        label.parent.mkdir(parents=True, exist_ok=True)
        label.write_text("\n".join(lines) + "\n")
    detector = load_detector(demo_pt)
    boxes, polygons = EvalSet(images, 6), EvalSet(sorted((polygon_copy / "images").iterdir()), 6)
    assert polygons.label_stats.polygons == boxes.label_stats.boxes > 12 and boxes.label_stats.polygons == 0
    with TorchRunner(detector.module) as runner:
        a = evaluate(runner, HeadLayout.PIXEL, detector.head, boxes, progress=False)
        b = evaluate(runner, HeadLayout.PIXEL, detector.head, polygons, progress=False)
    assert a.map50_95 > 50 and abs(a.map50_95 - b.map50_95) < 0.05 and abs(a.map50 - b.map50) < 0.05


@pytest.mark.parametrize("line", ["0 nan 0.5 0.2 0.2", "0 0.5 0.5 0.2 NaN", "1 0.1 0.2 nan 0.25 0.3 0.6"])
def test_nan_coordinates_are_refused_naming_the_line(tmp_path, line):
    """NaN compares false with both bounds, so it used to pass the range check and count as an object."""
    with pytest.raises(EdgeqError, match=r"bad label .*a.txt:1: .*not nan or inf"):
        read_labels(_labelled(tmp_path, line + "\n"), nc=3)


def test_a_label_file_that_is_not_utf8_is_one_line(tmp_path):
    image = _labelled(tmp_path, None)
    (tmp_path / "labels" / "a.txt").write_bytes(b"0 0.5 0.5 0.2 0.2 \xff\xfe\n")
    with pytest.raises(EdgeqError, match=r"label file '.*a.txt' is not UTF-8 text \(byte 18 is 0xff\)"):
        read_labels(image, nc=3)
