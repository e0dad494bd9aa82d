"""Parent side of the conversion: calibration data on disk, the worker (edgeq's worker protocol) it feeds, and the
cache of what it made.

Everything is written under the work folder the backend gives (inside `job.staging`); TensorFlow's own
caches and temporary files are pointed into `edgeq.env.cache_dir()` / the work folder through the worker's
environment, so an export writes nowhere else.

The cache (`<cache>/tflite-conversions/`) is keyed by content: the ONNX bytes, the calibration images' bytes, the
I/O type, granularity and activation type (INT8 or 16x8), the conversion code (worker.py) and the versions of every
tool in the path. One file made for `tflite` (detached, per-channel) is the file `edgetpu` ships, so a run of both converts it once, and a
second export that changes only an evaluation setting converts nothing. The worker also keeps its calibration
statistics there, keyed by the float model and the images, so another granularity of the same model does not
calibrate again. A cached file is said so in the log and in the artifact's figures (`conversion_cached`).

Targets of one run side by side (`--jobs`) may ask for the same conversion at once: a lock per ONNX and image set
makes the second wait for the first and take its files from the cache instead of converting them twice.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import json
import os
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

from edgeq.plugin import WorkerCall, cache_dir, log, run_worker

TOOLS = ("tensorflow", "tf_keras", "onnx2tf", "ai-edge-litert", "onnx", "onnxruntime", "numpy")


class Wanted(NamedTuple):
    """One file a conversion writes: where, and how it is quantized."""

    path: Path
    granularity: str  # per-channel | per-tensor
    activations: str = "int8"  # int8 | int16 (16x8)
    io_dtype: str = "int8"  # int8 | uint8 for INT8 files; int16 for 16x8 ones


@dataclass(frozen=True)
class Conversion:
    outputs: list[str]  # canonical output names in TF output order
    fp32_rel_error: dict[str, float]
    seconds: dict[str, float]  # onnx2tf wall time, and per quantized file
    calibration_images: int
    cached: dict[str, str] = field(default_factory=dict)  # file name -> cache key, for files taken from the cache


def write_calibration(images: Sequence[np.ndarray], path: Path, exact: bool | None = None) -> int:
    """The calibration batches (float32 NCHW in [0, 1]) as one NHWC .npy for the worker.

    Letterboxed 8-bit images divided by 255 round-trip exactly through uint8, which keeps 300 images at
    320 px under 100 MB; anything else is stored as float32."""
    first = np.asarray(images[0], dtype=np.float32)
    n, size = len(images), first.shape[-1]
    if exact is None:
        exact = _is_8bit(first)
    store = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8 if exact else np.float32,
                                      shape=(n, size, size, 3))
    for i in range(n):
        x = np.transpose(np.asarray(images[i], dtype=np.float32)[0], (1, 2, 0))
        if exact and not _is_8bit(x):  # not 8-bit after all: store floats instead
            del store
            return write_calibration(images, path, exact=False)
        store[i] = np.round(x * 255.0) if exact else x
    store.flush()
    del store
    return n


def _is_8bit(x: np.ndarray) -> bool:
    return bool(np.allclose(np.round(x * 255.0) / 255.0, x, atol=1e-6))


def worker_env(workdir: Path) -> dict[str, str]:
    """What the worker's environment adds: TensorFlow's caches and temporary files inside edgeq's cache and the
    work folder, no GPU, and the FP32 check's numerics."""
    cache = cache_dir()
    tmp = workdir / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    return {
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "TF_ENABLE_ONEDNN_OPTS": "0",  # the FP32 check compares with ONNX Runtime bit-closely
        "KERAS_HOME": str(cache / "keras"),
        "TFHUB_CACHE_DIR": str(cache / "tfhub"),
        "MPLCONFIGDIR": str(cache / "matplotlib"),
        # onnxruntime keeps a device id under $XDG_CACHE_HOME/Microsoft; nothing else in the worker needs HOME
        "XDG_CACHE_HOME": str(cache / "xdg-cache"),
        "XDG_CONFIG_HOME": str(cache / "xdg-config"),
        "CUDA_VISIBLE_DEVICES": "",
        "TMPDIR": str(tmp), "TEMP": str(tmp), "TMP": str(tmp),
    }


def conversion_cache() -> Path:
    return cache_dir() / "tflite-conversions"


def _file_hash(path: Path) -> str:
    stat = Path(path).stat()
    return _hash_of(str(Path(path).resolve()), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=32)
def _hash_of(path: str, mtime_ns: int, size: int) -> str:  # the file's stat is part of the memo's key
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


def key_parts(onnx_path: Path, calib_path: Path, wanted: Wanted) -> dict:
    """What the converted file depends on: the model, the images, the options, the conversion code and the tools."""
    from importlib.metadata import PackageNotFoundError, version

    def tool(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "absent"

    return {"onnx": _file_hash(onnx_path), "calibration": _file_hash(calib_path), "io_dtype": wanted.io_dtype,
            "granularity": wanted.granularity, "activations": wanted.activations,
            "worker": _file_hash(Path(__file__).with_name("worker.py")),
            "tools": {name: tool(name) for name in TOOLS}}


def conversion_key(parts: dict) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:32]


def _cached(key: str) -> dict | None:
    entry = conversion_cache() / key
    try:
        record = json.loads((entry / "conversion.json").read_text())
    except (OSError, ValueError):
        return None
    return record if (entry / "model.tflite").is_file() else None


def _store(key: str, path: Path, record: dict) -> None:
    """Into the cache, whole or not at all: written beside its place, then renamed."""
    root = conversion_cache()
    root.mkdir(parents=True, exist_ok=True)
    scratch = root / f".{key}.{os.getpid()}"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir()
    shutil.copyfile(path, scratch / "model.tflite")
    (scratch / "conversion.json").write_text(json.dumps(record, indent=1))
    try:
        scratch.rename(root / key)
    except OSError:  # another run stored the same conversion first
        shutil.rmtree(scratch, ignore_errors=True)


def convert_onnx(onnx_path: Path, calib_path: Path, outputs: list[Wanted], workdir: Path, log_name: str,
                 log_dir: Path, timeout_s: float = 3600) -> Conversion:
    """Convert one ONNX graph into one .tflite per `Wanted` file: from the cache where the same conversion was made
    before, else through the worker protocol in edgeq's own interpreter. On failure: StageError naming
    `log_dir/<log_name>.log` (the job's log folder, kept)."""
    parts = {w.path: key_parts(onnx_path, calib_path, w) for w in outputs}
    with _converting(parts[outputs[0].path]):
        return _convert_or_reuse(onnx_path, calib_path, outputs, workdir, log_name, log_dir, timeout_s, parts)


@contextlib.contextmanager
def _converting(parts: dict):
    """Held while one process converts (or reuses) a given ONNX on given images: the same model and images in two
    --jobs workers convert once, the second reading the first's files from the cache."""
    root = conversion_cache()
    root.mkdir(parents=True, exist_ok=True)
    same_model = {k: parts[k] for k in ("onnx", "calibration", "worker", "tools")}  # I/O type is per file
    with open(root / f".{conversion_key(same_model)}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _convert_or_reuse(onnx_path: Path, calib_path: Path, outputs: list[Wanted], workdir: Path, log_name: str,
                      log_dir: Path, timeout_s: float, parts: dict) -> Conversion:
    keys = {path: conversion_key(parts[path]) for path in parts}
    hits = {path: record for path in keys if (record := _cached(keys[path])) is not None}
    for path, record in hits.items():
        shutil.copyfile(conversion_cache() / keys[path] / "model.tflite", path)
        log(f"{path.stem}: conversion taken from the cache ({keys[path][:12]}, made in "
            f"{sum(v for v in record['seconds'].values() if v):.0f} s: same ONNX, images, options and tools)")
    todo = [w for w in outputs if w.path not in hits]
    if not todo:
        first = hits[outputs[0].path]
        return Conversion(outputs=first["outputs"], fp32_rel_error=first["fp32_rel_error"],
                          seconds={p.name: None for p in hits} | {"onnx2tf_s": None, "calibrate_s": None},
                          calibration_images=first["calibration_images"],
                          cached={p.name: keys[p][:12] for p in hits})
    made = _convert(onnx_path, calib_path, todo, workdir, log_name, log_dir, timeout_s)
    for path, *_ in todo:
        _store(keys[path], path, {"key": parts[path], "outputs": made.outputs, "fp32_rel_error": made.fp32_rel_error,
                                  "calibration_images": made.calibration_images,
                                  "seconds": {"onnx2tf_s": made.seconds.get("onnx2tf_s"),
                                              "calibrate_s": made.seconds.get("calibrate_s"),
                                              "quantize_s": made.seconds.get(path.name)}})
    return Conversion(outputs=made.outputs, fp32_rel_error=made.fp32_rel_error,
                      seconds={**made.seconds, **{p.name: None for p in hits}},
                      calibration_images=made.calibration_images, cached={p.name: keys[p][:12] for p in hits})


def _convert(onnx_path: Path, calib_path: Path, outputs: list[Wanted], workdir: Path, log_name: str, log_dir: Path,
             timeout_s: float) -> Conversion:
    result = run_worker(sys.executable, WorkerCall(
        script=Path(__file__).with_name("worker.py"), workdir=workdir, log=log_dir / f"{log_name}.log",
        stage="convert", timeout_s=timeout_s, env=worker_env(workdir), job={
            "onnx": str(onnx_path), "workdir": str(workdir / "tf"), "calib": str(calib_path),
            "outputs": [{"path": str(w.path), "granularity": w.granularity, "activations": w.activations,
                         "io_dtype": w.io_dtype} for w in outputs],
            "statistics": str(conversion_cache() / "calibration"), "calib_hash": _file_hash(calib_path)}))
    return Conversion(outputs=result["outputs"], fp32_rel_error=result["fp32_rel_error"],
                      seconds={**result["timings"], **{Path(b["path"]).name: b["seconds"] for b in result["built"]}},
                      calibration_images=result["calibration_images"])
