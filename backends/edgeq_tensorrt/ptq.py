"""NVIDIA ModelOpt ONNX post-training quantization, run on CPU ONNX Runtime.

`modelopt.onnx.quantization.quantize` places Q/DQ the way TensorRT fuses them (inputs of weighted ops, Conv +
BN + activation kept fusible) and calibrates with ONNX Runtime; with `target_dla=True` it quantizes every tensor
instead, which is what a DLA calibration cache needs. The decode head is excluded by node name so its DFL,
sigmoid and box arithmetic stay in float.
"""

from __future__ import annotations

import contextlib
import io
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from edgeq.plugin import HEAD_PREFIX, INPUT_NAME, EdgeqError, StageError


def calibration_array(images: Sequence[np.ndarray], limit: int | None = None) -> np.ndarray:
    """The calibration images stacked (N, 3, S, S) float32: what ModelOpt's calibration_data takes."""
    count = len(images) if limit is None else min(limit, len(images))
    if count == 0:
        raise EdgeqError("no calibration images", "give the dataset a calibration split with images "
                         "(recipe calibration.split / calibration.images)")
    return np.concatenate([np.asarray(images[i], dtype=np.float32) for i in range(count)], axis=0)


def modelopt_quantize(onnx_path: Path, out_path: Path, images: np.ndarray, work: Path, *, method: str = "max",
                      target_dla: bool = False, exclude: Sequence[str] = (f"{HEAD_PREFIX}.*",),
                      log_path: Path | None = None) -> Path:
    """Quantize `onnx_path` into `out_path` (Q/DQ ONNX). Temporary files stay inside `work`."""
    work.mkdir(parents=True, exist_ok=True)
    source = work / f"{Path(onnx_path).stem}-ptq-input.onnx"
    shutil.copy(onnx_path, source)
    try:
        from modelopt.onnx.quantization import quantize
    except ImportError as exc:
        raise EdgeqError(f"nvidia-modelopt's ONNX quantization does not import ({exc})",
                         "pip install 'edgeq[tensorrt]' (nvidia-modelopt, onnxslim, onnx-graphsurgeon, onnxscript, "
                         "lief, ml_dtypes)") from None
    previous_tmp = tempfile.tempdir
    tempfile.tempdir = str(work)  # ModelOpt and ONNX Runtime's calibrator write temporary models there
    captured = io.StringIO()
    try:
        with contextlib.redirect_stdout(captured), onnxruntime_left_as_found():
            quantize(str(source), quantize_mode="int8", calibration_data={INPUT_NAME: images},
                     calibration_method=method, calibration_eps=["cpu"], nodes_to_exclude=list(exclude),
                     high_precision_dtype="fp32", output_path=str(out_path), target_dla=target_dla,
                     log_level="WARNING", log_file=str(log_path) if log_path else None)
    except EdgeqError:
        raise
    except Exception as exc:  # noqa: BLE001 - ModelOpt/ORT raise anything; the log keeps the details
        if log_path:
            with open(log_path, "a") as log:
                log.write(captured.getvalue())
        raise StageError("modelopt-ptq", f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}",
                         str(log_path) if log_path else None) from None
    finally:
        tempfile.tempdir = previous_tmp
    if not Path(out_path).exists():
        raise StageError("modelopt-ptq", "ModelOpt wrote no model", str(log_path) if log_path else None)
    return Path(out_path)


@contextlib.contextmanager
def onnxruntime_left_as_found():
    """ModelOpt's ONNX quantize patches ONNX Runtime's calibrators and quantizers in place, for the whole process
    (`ort_patching.patch_ort_modules`: MinMaxCalibrater, HistogramCalibrater, QDQQuantizer, create_calibrator...).
    A later export in the same process that quantizes with ONNX Runtime itself (the onnxruntime target after
    tensorrt or dla in one run) would get ModelOpt's versions, which fail on a plain static quantization. Every
    attribute of the onnxruntime.quantization modules and of the classes they define is put back afterwards."""
    import onnxruntime.quantization  # noqa: F401 - loads the modules ModelOpt patches

    saved = []
    for name, module in list(sys.modules.items()):
        if module is None or not (name == "onnxruntime.quantization" or name.startswith("onnxruntime.quantization.")):
            continue
        saved.append((module, dict(vars(module))))
        saved += [(value, dict(vars(value))) for value in vars(module).values()
                  if isinstance(value, type) and value.__module__ == name]
    try:
        yield
    finally:
        for owner, attributes in saved:
            for key in [k for k in vars(owner) if k not in attributes]:
                delattr(owner, key)
            for key, value in attributes.items():
                if vars(owner).get(key) is not value:
                    setattr(owner, key, value)


# calibration.method -> ModelOpt's own calibration_method; the others are supplied by edgeq (supply_ranges)
MODELOPT_METHODS = {"default": "entropy", "minmax": "max", "entropy": "entropy"}


def calibrate_qdq(job, source: Path, out_path: Path, work: Path, *, target_dla: bool, log_path: Path):
    """ModelOpt PTQ of `source` with the job's calibration method and kept-float layers; returns the Q/DQ
    ModelProto and how its ranges were made. Methods ModelOpt lacks (percentile, MSE) run ModelOpt with max for
    the placement, then edgeq's ranges replace its activation scales."""
    import re

    import onnx

    images = calibration_array(job.calibration)
    native = MODELOPT_METHODS.get(job.calibration_method)
    # on the GPU a kept layer simply gets no Q/DQ; on DLA it keeps its scales and runs FP16 by layer precision
    kept = () if target_dla else tuple(re.escape(n) + "$" for n in job.keep_float)
    raw = modelopt_quantize(source, out_path, images, work, method=native or "max", target_dla=target_dla,
                            exclude=(f"{HEAD_PREFIX}.*", *kept), log_path=log_path)
    model = onnx.load(str(raw))
    if native:
        return model, f"modelopt {native}"
    supplied = supply_ranges(model, onnx.load(str(source)), images, job.calibration_method)
    return model, f"{job.calibration_method} (edgeq ranges on {supplied} tensors, ModelOpt placement)"


def supply_ranges(qdq, fp32, images: np.ndarray, method: str) -> int:
    """Overwrite the scales of `qdq`'s activation QuantizeLinear nodes (and their DequantizeLinear partners) with
    symmetric INT8 scales from edgeq's `method` ranges, measured on the FP32 model; returns how many tensors."""
    from onnx import numpy_helper

    from edgeq.plugin import collect_histograms

    inits = {i.name: i for i in qdq.graph.initializer}
    known = {i.name for i in fp32.graph.input} | {o for n in fp32.graph.node for o in n.output}
    quantizers = [n for n in qdq.graph.node if n.op_type == "QuantizeLinear" and n.input[0] not in inits
                  and n.input[1] in inits and n.input[0] in known]
    partners = {n.input[0]: n for n in qdq.graph.node if n.op_type == "DequantizeLinear"}
    hists = collect_histograms(fp32, sorted({q.input[0] for q in quantizers}),
                               (images[i:i + 1] for i in range(len(images))))
    for q in quantizers:
        r = hists[q.input[0]].range(method, symmetric=True)
        amax = max(abs(r.lo), abs(r.hi), 1e-8)
        names = {q.input[1]}
        if q.output[0] in partners:
            names.add(partners[q.output[0]].input[1])
        for name in names:
            old = numpy_helper.to_array(inits[name])
            inits[name].CopyFrom(numpy_helper.from_array(np.full(old.shape, amax / 127.0, old.dtype), name))
    return len({q.input[0] for q in quantizers})
