"""The embedded demo dataset must be reproducible byte for byte and well-formed YOLO data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from edgeq.synthetic import CLASS_NAMES, generate_dataset, render_sample

IMGSZ = 160  # small images keep the suite fast; the generator is size-agnostic


def _files(root: Path) -> dict[str, bytes]:
    files = sorted(p for p in root.rglob("*") if p.suffix in {".jpg", ".txt"})
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in files}


@pytest.fixture(scope="module")
def ds(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("syn_a")
    generate_dataset(root, train=24, val=8, imgsz=IMGSZ, seed=0)
    return root


def test_layout_and_yaml(ds: Path) -> None:
    data = yaml.safe_load((ds / "data.yaml").read_text())
    assert Path(data["path"]) == ds.resolve()
    assert data["train"] == "images/train" and data["val"] == "images/val"
    assert data["names"] == dict(enumerate(CLASS_NAMES))
    for split, n in (("train", 24), ("val", 8)):
        imgs = sorted((ds / "images" / split).glob("*.jpg"))
        lbls = sorted((ds / "labels" / split).glob("*.txt"))
        assert len(imgs) == len(lbls) == n
        assert [p.stem for p in imgs] == [p.stem for p in lbls]


def test_same_seed_is_byte_identical(ds: Path, tmp_path: Path) -> None:
    generate_dataset(tmp_path, train=24, val=8, imgsz=IMGSZ, seed=0)
    assert _files(tmp_path) == _files(ds)


def test_regenerating_smaller_prunes_stale_files(tmp_path: Path) -> None:
    generate_dataset(tmp_path, train=6, val=2, imgsz=IMGSZ, seed=0)
    generate_dataset(tmp_path, train=3, val=1, imgsz=IMGSZ, seed=0)
    assert len(list((tmp_path / "images" / "train").glob("*.jpg"))) == 3
    assert len(list((tmp_path / "labels" / "val").glob("*.txt"))) == 1


def test_different_seed_differs(ds: Path, tmp_path: Path) -> None:
    generate_dataset(tmp_path, train=4, val=0, imgsz=IMGSZ, seed=1)
    a, b = _files(ds), _files(tmp_path)
    for i in range(4):
        assert a[f"images/train/train_{i:06d}.jpg"] != b[f"images/train/train_{i:06d}.jpg"]


def test_val_and_train_are_distinct(ds: Path) -> None:
    files = _files(ds)
    train = {v for k, v in files.items() if k.startswith("images/train/")}
    val = {v for k, v in files.items() if k.startswith("images/val/")}
    assert train.isdisjoint(val)
    img_t, _ = render_sample(0, "train", 0, IMGSZ)
    img_v, _ = render_sample(0, "val", 0, IMGSZ)
    assert not np.array_equal(img_t, img_v)


def test_label_format_and_ranges(ds: Path) -> None:
    n_objects = 0
    for p in (ds / "labels").rglob("*.txt"):
        lines = p.read_text().splitlines()
        assert 1 <= len(lines) <= 8, p
        for line in lines:
            fields = line.split()
            assert len(fields) == 5
            assert fields[0].isdigit() and int(fields[0]) < len(CLASS_NAMES)
            assert all(len(f.split(".")[1]) == 6 for f in fields[1:]), line
            cx, cy, w, h = map(float, fields[1:])
            assert 0 < w <= 1 and 0 < h <= 1
            # box lies inside the image (clipped), up to rounding in the 6th decimal
            assert cx - w / 2 >= -1e-6 and cx + w / 2 <= 1 + 1e-6
            assert cy - h / 2 >= -1e-6 and cy + h / 2 <= 1 + 1e-6
            n_objects += 1
    assert n_objects > 32


def test_images_are_jpeg_of_requested_size(ds: Path) -> None:
    import cv2

    p = next((ds / "images" / "val").glob("*.jpg"))
    assert p.read_bytes()[:2] == b"\xff\xd8"
    assert cv2.imread(str(p)).shape == (IMGSZ, IMGSZ, 3)


def test_class_coverage_and_tight_boxes() -> None:
    seen: set[int] = set()
    sizes = []
    for i in range(40):
        img, objects = render_sample(3, "train", i, 192)
        assert img.shape == (192, 192, 3) and img.dtype == np.uint8
        for cls, x0, y0, x1, y1 in objects:
            seen.add(cls)
            assert 0 <= x0 < x1 <= 192 and 0 <= y0 < y1 <= 192
            sizes.append(max(x1 - x0, y1 - y0) / 192)
    assert seen == set(range(len(CLASS_NAMES)))
    assert min(sizes) < 0.16 and max(sizes) > 0.3  # small and large objects both occur


def test_render_is_pure() -> None:
    a = render_sample(7, "val", 11, 128)
    b = render_sample(7, "val", 11, 128)
    assert np.array_equal(a[0], b[0]) and a[1] == b[1]


def _one_box(seed: int, split: str, index: int, imgsz: int) -> tuple[np.ndarray, list]:
    return np.full((imgsz, imgsz, 3), 127, np.uint8), [(1, 2, 2, 10, 12)]


def test_another_renderer_is_written_with_its_class_names(tmp_path: Path) -> None:
    data_yaml = generate_dataset(tmp_path, train=2, val=1, imgsz=32, seed=4, render=_one_box,
                                 class_names=("a", "b"), title="other shapes")
    data = yaml.safe_load(data_yaml.read_text())
    assert data["names"] == {0: "a", 1: "b"} and data["nc"] == 2
    assert data_yaml.read_text().startswith("# other shapes: seed 4")
    assert (tmp_path / "labels" / "val" / "val_000000.txt").read_text() == "1 0.187500 0.218750 0.250000 0.312500\n"
    assert len(list((tmp_path / "images" / "train").glob("*.jpg"))) == 2
