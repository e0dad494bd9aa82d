"""Images into model inputs: the one letterbox every runtime shares, and lazy calibration batches."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from edgeq.errors import EdgeqError
from edgeq.hostside import letterbox


def subsample(paths: Sequence[Path], n: int | None, seed: int = 0) -> list[Path]:
    """A deterministic subset of n paths (all when n is None or larger), in sorted order."""
    paths = sorted(paths)
    if n is None or n >= len(paths):
        return list(paths)
    picked = np.random.default_rng(seed).choice(len(paths), size=n, replace=False)
    return [paths[i] for i in sorted(picked)]


def read_image(path: Path) -> np.ndarray:
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise EdgeqError(f"image '{path}' cannot be decoded", "remove or replace the corrupt image")
    return image


preprocess = letterbox  # the deploy kits' letterbox (edgeq.hostside), under the name the pipeline uses


class ImageBatches(Sequence):
    """Lazy sequence of preprocessed (1, 3, S, S) float32 arrays. Each image is decoded and letterboxed once and
    kept as uint8 (a quarter of the float size: 300 images at 640 px are 370 MB), so the several passes one
    export makes (calibration, analysis, every target of `--target all`) do not decode it again."""

    def __init__(self, paths: Sequence[Path], size: int, _cache: dict[Path, np.ndarray] | None = None) -> None:
        self.paths = list(paths)
        self.size = size
        self._cache = {} if _cache is None else _cache  # shared with slices

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return ImageBatches(self.paths[index], self.size, self._cache)
        path = self.paths[index]
        pixels = self._cache.get(path)
        if pixels is None:
            batch = preprocess(read_image(path), self.size)[0]
            pixels = self._cache[path] = np.round(batch * 255.0).astype(np.uint8)
            return batch
        return pixels.astype(np.float32) / 255.0
