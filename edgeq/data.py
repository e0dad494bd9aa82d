"""YOLO-format datasets for calibration and evaluation, and the one letterbox every runtime shares.

Accepted: an Ultralytics `data.yaml` (`path`, `train`, `val`, optional `test`, `names`), or a folder with
`images/` and `labels/` (either flat, used for both calibration and evaluation, or with split sub-folders).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from edgeq.errors import EdgeqError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
PAD_VALUE = 114  # Ultralytics' letterbox grey
_DATA_FIX = "pass --data with an Ultralytics data.yaml or a folder holding images/ and labels/ (omit --data for the demo)"


@dataclass(frozen=True)
class Dataset:
    source: Path
    names: tuple[str, ...]
    splits: dict[str, tuple[Path, ...]]  # split -> image paths, sorted

    def images(self, split: str) -> tuple[Path, ...]:
        if split not in self.splits:
            raise EdgeqError(f"dataset '{self.source}' has no '{split}' split (it has: {', '.join(self.splits)})",
                             f"add '{split}:' to the data.yaml or choose another split in the recipe")
        images = self.splits[split]
        if not images:
            raise EdgeqError(f"split '{split}' of dataset '{self.source}' holds no images", _DATA_FIX)
        return images


def load_dataset(path: Path) -> Dataset:
    path = Path(path)
    if not path.exists():
        raise EdgeqError(f"dataset '{path}' does not exist", _DATA_FIX)
    if path.is_dir():
        return _from_folder(path)
    if path.suffix.lower() not in (".yaml", ".yml"):
        raise EdgeqError(f"dataset '{path}' is neither a data.yaml nor a folder", _DATA_FIX)
    try:
        cfg = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise EdgeqError(f"dataset file '{path}' is not valid YAML ({str(exc).splitlines()[0]})", _DATA_FIX) from None
    if not isinstance(cfg, dict) or "names" not in cfg:
        raise EdgeqError(f"dataset file '{path}' has no 'names:' key", "list the class names under 'names:'")
    names = cfg["names"]
    names = tuple(names[k] for k in sorted(names)) if isinstance(names, dict) else tuple(names)
    root = Path(cfg.get("path") or ".")
    if not root.is_absolute():
        root = (path.parent / root).resolve()
    splits = {}
    for split in ("train", "val", "test"):
        if cfg.get(split) is None:
            continue
        entries = cfg[split] if isinstance(cfg[split], list) else [cfg[split]]
        images: list[Path] = []
        for entry in entries:
            location = root / entry
            if not location.exists():
                raise EdgeqError(f"split '{split}' of '{path}' points at '{location}', which does not exist", _DATA_FIX)
            images += _list_images(location)
        splits[split] = tuple(sorted(images))
    if not splits:
        raise EdgeqError(f"dataset file '{path}' names no train/val split", "add 'train:' and 'val:' entries")
    return Dataset(source=path, names=names, splits=splits)


def _from_folder(path: Path) -> Dataset:
    images_dir = path / "images"
    if not images_dir.is_dir() or not (path / "labels").is_dir():
        raise EdgeqError(f"folder '{path}' has no images/ and labels/ sub-folders", _DATA_FIX)
    subdirs = sorted(d for d in images_dir.iterdir() if d.is_dir())
    if subdirs:
        splits = {d.name: tuple(sorted(_list_images(d))) for d in subdirs}
    else:  # one flat folder: it serves every split
        flat = tuple(sorted(_list_images(images_dir)))
        splits = {"train": flat, "val": flat}
    names_file = path / "classes.txt"
    names = tuple(names_file.read_text().split()) if names_file.exists() else ()
    return Dataset(source=path, names=names, splits=splits)


def _list_images(location: Path) -> list[Path]:
    if location.is_file() and location.suffix == ".txt":  # Ultralytics image-list file
        return [(location.parent / line.strip()).resolve() for line in location.read_text().splitlines()
                if line.strip()]
    return [p for p in location.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES]


def label_path(image: Path) -> Path:
    """Ultralytics' convention: the last `images` folder in the path becomes `labels`, suffix .txt."""
    parts = list(image.parts)
    idx = len(parts) - 1 - parts[::-1].index("images") if "images" in parts else None
    if idx is None:
        return image.with_suffix(".txt")
    parts[idx] = "labels"
    return Path(*parts).with_suffix(".txt")


def read_labels(image: Path, nc: int) -> np.ndarray:
    """(n, 5) [class, cx, cy, w, h] normalised; a missing file means no objects."""
    path = label_path(image)
    if not path.exists():
        return np.zeros((0, 5), np.float32)
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split()
        try:
            values = [float(v) for v in fields]
        except ValueError:
            values = []
        ok = len(values) == 5 and values[0].is_integer() and 0 <= values[0] < nc and all(
            0.0 <= v <= 1.0 for v in values[1:])
        if not ok:
            raise EdgeqError(f"malformed label {path}:{number}: '{line.strip()[:60]}' (want 'class cx cy w h', "
                             f"class 0..{nc - 1}, coordinates normalised 0..1)",
                             "fix or delete that line (segmentation polygons are not detection labels)")
        rows.append(values)
    return np.asarray(rows, np.float32).reshape(-1, 5)


def subsample(paths: Sequence[Path], n: int | None, seed: int = 0) -> list[Path]:
    """A deterministic subset of n paths (all when n is None or larger), in sorted order."""
    paths = sorted(paths)
    if n is None or n >= len(paths):
        return list(paths)
    picked = np.random.default_rng(seed).choice(len(paths), size=n, replace=False)
    return [paths[i] for i in sorted(picked)]


@dataclass(frozen=True)
class Letterbox:
    """How an image was fitted into the square input: scale, then padding (left, top)."""

    ratio: float
    pad: tuple[float, float]
    shape: tuple[int, int]  # original (h, w)

    def to_original(self, xyxy: np.ndarray) -> np.ndarray:
        out = xyxy.copy()
        out[:, [0, 2]] = (out[:, [0, 2]] - self.pad[0]) / self.ratio
        out[:, [1, 3]] = (out[:, [1, 3]] - self.pad[1]) / self.ratio
        out[:, [0, 2]] = out[:, [0, 2]].clip(0, self.shape[1])
        out[:, [1, 3]] = out[:, [1, 3]].clip(0, self.shape[0])
        return out


def read_image(path: Path) -> np.ndarray:
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise EdgeqError(f"image '{path}' cannot be decoded", "remove or replace the corrupt image")
    return image


def preprocess(image_bgr: np.ndarray, size: int) -> tuple[np.ndarray, Letterbox]:
    """BGR uint8 HWC -> float32 (1, 3, size, size) RGB in [0, 1], letterboxed as Ultralytics does."""
    import cv2

    h, w = image_bgr.shape[:2]
    ratio = min(size / h, size / w)
    new_w, new_h = round(w * ratio), round(h * ratio)
    if (new_w, new_h) != (w, h):
        image_bgr = cv2.resize(image_bgr, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    pad_w, pad_h = (size - new_w) / 2, (size - new_h) / 2
    top, bottom = round(pad_h - 0.1), round(pad_h + 0.1)
    left, right = round(pad_w - 0.1), round(pad_w + 0.1)
    image_bgr = cv2.copyMakeBorder(image_bgr, top, bottom, left, right, cv2.BORDER_CONSTANT,
                                   value=(PAD_VALUE,) * 3)
    chw = image_bgr[:, :, ::-1].transpose(2, 0, 1)
    batch = np.ascontiguousarray(chw, dtype=np.float32)[None] / 255.0
    return batch, Letterbox(ratio=ratio, pad=(left, top), shape=(h, w))


class ImageBatches(Sequence):
    """Lazy sequence of preprocessed (1, 3, S, S) arrays: calibration sets never sit in memory whole."""

    def __init__(self, paths: Sequence[Path], size: int) -> None:
        self.paths = list(paths)
        self.size = size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return ImageBatches(self.paths[index], self.size)
        return preprocess(read_image(self.paths[index]), self.size)[0]
