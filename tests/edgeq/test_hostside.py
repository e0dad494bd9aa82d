"""The deploy kit's own reading of a dataset (`hostside.split_images`, `read_label_file`: no Ultralytics, no PyYAML
on a device) held to edgeq's loader on the layouts Ultralytics accepts, so `infer.py --validate` scores the images
and ground truth the report did."""

import cv2
import numpy as np
import pytest

from edgeq import hostside
from edgeq.data import load_dataset, read_labels

LABELS = {  # box, polygon, a duplicate row, background (empty file), no file at all
    "a": "0 0.5 0.5 0.2 0.3\n1 0.1 0.1 0.4 0.1 0.4 0.5 0.1 0.5\n0 0.5 0.5 0.2 0.3\n",
    "b": "1 0.25 0.75 0.1 0.1\n\n",
    "c": "",
}


def _images(folder, names):
    folder.mkdir(parents=True)
    labels = folder.parent.parent / "labels" / folder.name
    labels.mkdir(parents=True, exist_ok=True)
    for name in names:
        cv2.imwrite(str(folder / f"{name}.jpg"), np.full((32, 48, 3), 90, np.uint8))
        if name in LABELS:
            (labels / f"{name}.txt").write_text(LABELS[name])


@pytest.fixture
def dataset(tmp_path):
    root = tmp_path / "ds"
    _images(root / "images" / "val", ["a", "b", "c", "d"])
    _images(root / "images" / "extra", ["e"])
    (root / "val.txt").write_text("./images/val/a.jpg\n./images/val/c.jpg\n")
    return root


@pytest.mark.parametrize("text", [
    "train: images/extra\nval: images/val  # a comment\nnames:\n  0: x\n  1: y\n",  # no path: the yaml's folder
    "path: {root}\ntrain: images/val\nval: [images/val, 'images/extra']\nnames: [x, y]\n",  # flow list
    "path: {root}\ntrain: images/extra\nval:\n  - images/val\n  - images/extra\nnames: ['x', 'y']\n",  # block list
    "path: '{root}'\ntrain: val.txt\nval: val.txt\nnames: {{0: x, 1: y}}\n",  # a .txt list with ./ lines
    "train: ../images/extra\nval: ../images/val\nnames: [x, y]\n",  # Roboflow's ../ from the yaml's folder
])
def test_kit_lists_the_split_and_reads_the_labels_as_edgeq_does(dataset, text):
    data = dataset / "data.yaml"
    data.write_text(text.format(root=dataset.as_posix()))
    expected = load_dataset(data).images("val")
    assert hostside.split_images(data, "val") == list(expected) and expected
    for image in expected:
        np.testing.assert_array_equal(hostside.read_label_file(image), read_labels(image, nc=2))
        assert hostside.label_file(image).name == f"{image.stem}.txt"


def test_a_missing_split_is_one_line(dataset):
    data = dataset / "data.yaml"
    data.write_text("train: images/val\nnames: [x, y]\n")
    with pytest.raises(hostside.ValidationError, match="has no 'val:' split"):
        hostside.split_images(data, "val")
    data.write_text("val: images/nowhere\nnames: [x, y]\n")
    with pytest.raises(hostside.ValidationError, match="which does not exist"):
        hostside.split_images(data, "val")


def test_the_kit_needs_only_numpy_opencv_and_a_metric_package():
    """hostside.py runs on the device as it is: nothing of edgeq, Ultralytics or PyYAML."""
    import ast
    import sys
    from pathlib import Path

    tree = ast.parse(Path(hostside.__file__).read_text())
    modules = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    modules |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module and n.level == 0}
    outside = {m for m in modules if m.split(".")[0] not in sys.stdlib_module_names}
    assert outside == {"numpy", "cv2", "faster_coco_eval", "pycocotools.coco", "pycocotools.cocoeval"}
