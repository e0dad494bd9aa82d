"""YOLO label files as Ultralytics reads them for a detector, with every refusal naming its file and line.

Ultralytics' conventions are used, not re-written: the label path is its `img2label_paths` (the last `images`
folder becomes `labels`), a polygon line (`class x1 y1 x2 y2 ...`, as Roboflow exports segmentation masks)
becomes its bounding box through its `segments2boxes`, coordinates may overshoot 0..1 by its 1% tolerance,
duplicate rows are dropped, and an image with no label file or an empty one is a background image.

One deliberate difference: Ultralytics 8.4 drops a whole image as "corrupt" when its file mixes box and polygon
lines; every such line has one meaning, so edgeq converts them all and counts those files (`mixed_files`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from functools import cache
from pathlib import Path

import numpy as np

from edgeq.errors import EdgeqError
from edgeq.untrusted.text import read_text

COORDINATE_TOLERANCE = 0.01  # Ultralytics' verify_image_label accepts -0.01..1.01


@dataclass
class LabelStats:
    """What the loader did to the labels, reported once instead of per line."""

    images: int = 0
    background: int = 0  # no label file, or an empty one
    boxes: int = 0
    polygons: int = 0  # polygon lines turned into their bounding boxes
    mixed_files: int = 0  # files mixing both kinds (Ultralytics skips these images)
    duplicates: int = 0

    def add(self, other: LabelStats) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def summary(self) -> str:
        parts = [f"{self.images} images", f"{self.boxes + self.polygons} objects"]
        if self.polygons:
            parts.append(f"{self.polygons} polygon lines turned into their bounding boxes (as Ultralytics does)")
        if self.mixed_files:
            parts.append(f"{self.mixed_files} label files mix boxes and polygons (Ultralytics 8.4 skips those "
                         "images; edgeq keeps them)")
        if self.background:
            parts.append(f"{self.background} background images")
        if self.duplicates:
            parts.append(f"{self.duplicates} duplicate lines dropped")
        return ", ".join(parts)


@cache
def _ultralytics():
    """Ultralytics' label helpers, imported once with its downloads off."""
    from edgeq.env import offline_ultralytics

    offline_ultralytics()
    from ultralytics.data.utils import img2label_paths
    from ultralytics.utils.ops import segments2boxes

    return img2label_paths, segments2boxes


def label_path(image: Path) -> Path:
    img2label_paths, _ = _ultralytics()
    return Path(img2label_paths([os.fspath(image)])[0])


def read_labels(image: Path, nc: int, stats: LabelStats | None = None) -> np.ndarray:
    """(n, 5) [class, cx, cy, w, h] normalised."""
    stats = stats if stats is not None else LabelStats()
    stats.images += 1
    path = label_path(image)
    lines = read_text(path, "label file", "save it as UTF-8 'class cx cy w h' lines", limit=1 << 24).splitlines() \
        if path.is_file() else []
    rows, kinds = [], set()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        row, kind = _parse_line(line, path, number, nc)
        rows.append(row)
        kinds.add(kind)
        stats.boxes += kind == "box"
        stats.polygons += kind == "polygon"
    if not rows:
        stats.background += 1
        return np.zeros((0, 5), np.float32)
    stats.mixed_files += len(kinds) > 1
    labels = np.asarray(rows, np.float32)
    _, first = np.unique(labels, axis=0, return_index=True)
    stats.duplicates += len(labels) - len(first)
    return labels[np.sort(first)]


def _parse_line(line: str, path: Path, number: int, nc: int) -> tuple[list[float], str]:
    tokens = line.split()
    try:
        values = [float(v) for v in tokens]
    except ValueError:
        values = []
    is_box = len(values) == 5
    is_polygon = len(values) >= 7 and len(values) % 2 == 1
    if not (is_box or is_polygon):
        _refuse(path, number, line, "want 'class cx cy w h' or a polygon 'class x1 y1 x2 y2 x3 y3 ...'")
    if not values[0].is_integer() or not 0 <= values[0] < nc:
        _refuse(path, number, line, f"class id {tokens[0]} is not one of the dataset's classes 0..{nc - 1}")
    coords = np.asarray(values[1:], np.float32)
    if not np.isfinite(coords).all():
        _refuse(path, number, line, "coordinates must be numbers, not nan or inf")
    low, high = -COORDINATE_TOLERANCE, 1 + COORDINATE_TOLERANCE
    if coords.min() < low or coords.max() > high or (is_box and coords[2:].min() < 0):
        _refuse(path, number, line, "coordinates must be normalised to 0..1 of the image size")
    if is_box:
        return values, "box"
    _, segments2boxes = _ultralytics()
    box = segments2boxes([coords.reshape(-1, 2)])[0]
    return [values[0], *box.tolist()], "polygon"


def _refuse(path: Path, number: int, line: str, why: str) -> None:
    raise EdgeqError(f"bad label {path}:{number}: '{line.strip()[:60]}' ({why})", "fix or delete that line")
