"""TensorRT INT8 calibration cache: the text file `trtexec --calib` and IInt8Calibrator.read_calibration_cache read.

Format (what TensorRT itself writes and NVIDIA's qdq-translator emits)::

    TRT-100300-EntropyCalibration2
    images: 3c010204
    /model.0/conv/Conv_output_0: 3d8e2b1f

The header carries the TensorRT version code (8.x: major*1000 + minor*100 + patch, e.g. 8600; 9 and later:
major*10000 + minor*100 + patch, e.g. 100300 for 10.3.0, as in NvInferVersion.h) and the calibrator name. Each
line maps a tensor name to its scale (amax / 127, not amax) as the 8 hex digits of the big-endian IEEE-754
float32: `3c010204` is 1/127, the scale of an input in [0, 1]. Tensor names may contain ': ', so lines are
split at the last ': '.
"""

from __future__ import annotations

import math
import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from edgeq.plugin import EdgeqError

CALIBRATOR = "EntropyCalibration2"
_HEADER = re.compile(r"^TRT-(\d+)-(\w+)$")


def version_code(version: str) -> int:
    """'10.3' / '10.3.0' / '8.6.1' -> TensorRT's integer version (100300 / 100300 / 8601)."""
    parts = str(version).strip().split(".")
    try:
        major, minor, patch = (int(p) for p in (parts + ["0", "0"])[:3])
    except ValueError:
        raise EdgeqError(f"TensorRT version '{version}' is not MAJOR.MINOR[.PATCH]",
                         "write it like 10.3 or 8.6.2") from None
    if not 0 <= minor < 100 or not 0 <= patch < 100 or major <= 0:
        raise EdgeqError(f"TensorRT version '{version}' is out of range", "write it like 10.3 or 8.6.2")
    return major * (1000 if major < 9 else 10000) + minor * 100 + patch


def scale_to_hex(scale: float) -> str:
    """float32 scale -> 8 lowercase hex digits of its big-endian bits."""
    return struct.pack(">f", scale).hex()


def hex_to_scale(text: str) -> float:
    text = text.strip()
    if not re.fullmatch(r"[0-9a-fA-F]{1,8}", text):
        raise ValueError(f"'{text}' is not the hex of a float32")
    return struct.unpack(">f", bytes.fromhex(text.zfill(8)))[0]


@dataclass(frozen=True)
class CalibrationCache:
    version: int  # TensorRT version code from the header
    calibrator: str
    scales: dict[str, float]  # tensor name -> scale (amax / 127), as float32 values


def write_cache(path: Path, scales: Mapping[str, float], trt_version: str = "10.3",
                calibrator: str = CALIBRATOR) -> Path:
    """Write `scales` (tensor -> amax/127) in TensorRT's cache format; values are rounded to float32."""
    lines = [f"TRT-{version_code(trt_version)}-{calibrator}"]
    for name, scale in scales.items():
        if "\n" in name:
            raise EdgeqError(f"tensor name {name!r} contains a newline", "rename the tensor in the ONNX")
        if not (math.isfinite(scale) and scale > 0):
            raise EdgeqError(f"tensor '{name}' has scale {scale}; TensorRT needs a positive finite scale",
                             "recalibrate with images that exercise the model (an all-zero tensor has no range)")
        lines.append(f"{name}: {scale_to_hex(scale)}")
    Path(path).write_text("\n".join(lines) + "\n")
    return Path(path)


def parse_cache(path: Path) -> CalibrationCache:
    text = Path(path).read_text().splitlines()
    if not text or not (match := _HEADER.match(text[0].strip())):
        raise EdgeqError(f"'{path}' does not start with a TRT-<version>-<calibrator> header",
                         "pass a TensorRT calibration cache (first line e.g. TRT-100300-EntropyCalibration2)")
    scales: dict[str, float] = {}
    for number, line in enumerate(text[1:], 2):
        if not line.strip():
            continue
        name, sep, value = line.rpartition(": ")
        try:
            if not sep:
                raise ValueError("no ': '")
            scales[name] = hex_to_scale(value)
        except ValueError:
            raise EdgeqError(f"'{path}' line {number} is not 'tensor: <8 hex digits>': {line[:80]!r}",
                             "regenerate the cache") from None
    return CalibrationCache(version=int(match.group(1)), calibrator=match.group(2), scales=scales)


def float32(value: float) -> float:
    """The float32 value a cache line stores for `value`."""
    return struct.unpack(">f", struct.pack(">f", value))[0]
