"""Images into model inputs: the one letterbox every runtime shares, and lazy calibration batches."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeq.errors import EdgeqError

PAD_VALUE = 114  # Ultralytics' letterbox grey


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
