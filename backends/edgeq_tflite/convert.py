"""Parent side of the conversion: calibration data on disk, and the worker (edgeq's worker protocol) it feeds.

Everything is written under the work folder the backend gives (inside `job.staging`); TensorFlow's own
caches and temporary files are pointed into `edgeq.env.cache_dir()` / the work folder through the worker's
environment, so an export writes nowhere else.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeq.plugin import WorkerCall, cache_dir, run_worker


@dataclass(frozen=True)
class Conversion:
    outputs: list[str]  # canonical output names in TF output order
    fp32_rel_error: dict[str, float]
    seconds: dict[str, float]  # onnx2tf wall time, and per quantized file
    calibration_images: int


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


def convert_onnx(onnx_path: Path, calib_path: Path, outputs: list[tuple[Path, str]], io_dtype: str, workdir: Path,
                 log_name: str, log_dir: Path, timeout_s: float = 3600) -> Conversion:
    """Convert one ONNX graph into one .tflite per (path, granularity), through the worker protocol in edgeq's own
    interpreter. On failure: StageError naming `log_dir/<log_name>.log` (the job's log folder, kept)."""
    result = run_worker(sys.executable, WorkerCall(
        script=Path(__file__).with_name("worker.py"), workdir=workdir, log=log_dir / f"{log_name}.log",
        stage="convert", timeout_s=timeout_s, env=worker_env(workdir), job={
            "onnx": str(onnx_path), "workdir": str(workdir / "tf"), "calib": str(calib_path),
            "outputs": [{"path": str(p), "granularity": g} for p, g in outputs], "io_dtype": io_dtype}))
    return Conversion(outputs=result["outputs"], fp32_rel_error=result["fp32_rel_error"],
                      seconds={**result["timings"], **{Path(b["path"]).name: b["seconds"] for b in result["built"]}},
                      calibration_images=result["calibration_images"])
