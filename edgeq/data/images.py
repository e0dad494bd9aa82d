"""Images into model inputs: the one checked decode every image goes through, the one letterbox every runtime
shares, and lazy calibration batches.

OpenCV is never handed a file name: a name that is not valid UTF-8 (a byte sequence Linux allows) crashes its
Python binding (exit 139, staging left behind), so the bytes are read by Python and decoded from memory. And
libjpeg decodes a truncated JPEG without an error, only printing "Premature end of JPEG file" and filling the rest
grey, which lowers mAP silently; so a JPEG must reach its end-of-image marker after its last scan, a PNG its IEND
chunk. A bad image is refused, naming it, or skipped where the recipe says `bad_images: skip` (counted in the
report).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgeq.errors import EdgeqError
from edgeq.hostside import letterbox

BAD_IMAGE_FIX = ("replace or delete that image, or pass --bad-images skip to leave such images out (counted in the "
                 "report)")


def subsample(paths: Sequence[Path], n: int | None, seed: int = 0) -> list[Path]:
    """A deterministic subset of n paths (all when n is None or larger), in sorted order."""
    paths = sorted(paths)
    if n is None or n >= len(paths):
        return list(paths)
    picked = np.random.default_rng(seed).choice(len(paths), size=n, replace=False)
    return [paths[i] for i in sorted(picked)]


class BadImage(EdgeqError):
    """An image that cannot be used: unreadable, undecodable or truncated."""

    def __init__(self, path: Path, why: str) -> None:
        self.path, self.why = path, why
        super().__init__(f"image '{shown(path)}' {why}", BAD_IMAGE_FIX)


def shown(path: Path) -> str:
    """A path as text that can always be printed and written (undecodable bytes as \\xNN escapes)."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def read_image(path: Path) -> np.ndarray:
    """BGR uint8 HWC, as cv2.imread gives; BadImage when the file cannot be read, decoded or is truncated."""
    import cv2

    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise BadImage(path, f"cannot be read ({exc.strerror or type(exc).__name__})") from None
    cut = _truncation(data)
    if cut:
        raise BadImage(path, cut)
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
    if image is None or image.size == 0:
        raise BadImage(path, "cannot be decoded (not an image OpenCV reads)")
    return image


def _truncation(data: bytes) -> str | None:
    """Why a JPEG or PNG is incomplete, or None (other formats: the decoder decides)."""
    if data[:2] == b"\xff\xd8":
        scan = _last_scan_start(data)
        if scan is None:
            return "is truncated (a JPEG with no image data)"
        if data.find(b"\xff\xd9", scan) < 0:
            return "is truncated (the JPEG ends before its end-of-image marker)"
    elif data[:8] == b"\x89PNG\r\n\x1a\n" and data.rfind(b"IEND") < 0:
        return "is truncated (the PNG ends before its IEND chunk)"
    return None


def _last_scan_start(data: bytes) -> int | None:
    """Offset of the first start-of-scan segment, walking the marker segments (so an EXIF thumbnail's own
    end marker, inside an APP1 segment, is skipped)."""
    at = 2
    while at + 4 <= len(data):
        if data[at] != 0xFF:
            return None
        marker = data[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:  # markers without a length
            at += 2
            continue
        length = int.from_bytes(data[at + 2:at + 4], "big")
        if marker == 0xDA:
            return at + 2 + length
        at += 2 + length
    return None


@dataclass
class UsableImages:
    """The images a job uses after the check, and those it skipped (with why)."""

    paths: list[Path]
    skipped: list[BadImage] = field(default_factory=list)


def usable_images(paths: Sequence[Path], policy: str, log=None) -> UsableImages:
    """Every image decoded once through read_image: the first bad one refused (`policy` "refuse"), or all bad
    ones left out and named (`skip`)."""
    result = UsableImages([])
    for path in paths:
        try:
            read_image(path)
        except BadImage as bad:
            if policy != "skip":
                raise
            result.skipped.append(bad)
            if log:
                log(f"skipped: {bad.problem}")
            continue
        result.paths.append(path)
    if paths and not result.paths:
        raise EdgeqError(f"none of the {len(paths)} images can be used (the first: {result.skipped[0].problem})",
                         "check the dataset's image files")
    return result


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
