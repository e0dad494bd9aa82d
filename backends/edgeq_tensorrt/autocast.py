"""TensorRT 11's GPU precision as types: NVIDIA ModelOpt AutoCast turns the Q/DQ ONNX's float layers into FP16.

TensorRT 11 builds strongly typed networks only: a Q/DQ ONNX that TensorRT 10 builds with `--int8 --fp16` (INT8
where the Q/DQ nodes are, FP16 where TensorRT likes) runs its non-quantized layers in FP32 on 11 unless they are
typed FP16 (TensorRT 10.x-to-11.x migration guide). AutoCast (`modelopt.onnx.autocast`, the tool the guide
names) does that typing with these options, each for a reason:

  low_precision_type="fp16"   what `--fp16` gave on 10.x (BF16 is not what the 10.x build ran)
  nodes_to_exclude=[head]     the decode head (DFL softmax, anchor arithmetic in input pixels, sigmoid) stays
                              FP32 where it is attached: pixel coordinates up to the input size lose whole
                              pixels in FP16, as the head stays out of INT8 for the same reason
  keep_io_types=True          float32 images in, float32 output0 out: the host side is the 10.x engine's
  calibration_data=<images>   AutoCast keeps in FP32 the nodes whose activations exceed `data_max` (FP16 overflow)
                              on these inputs: the calibration images, not its random default
  data_max, init_max          its defaults (512, the FP16 maximum for weights)
The Q/DQ nodes keep their scales (AutoCast only types the float side), so both generations quantize the same.
"""

from __future__ import annotations

import contextlib
import io
import re
from collections import Counter
from pathlib import Path

import numpy as np

from edgeq.plugin import HEAD_PREFIX, INPUT_NAME, EdgeqError, StageError

_CALIBRATION_IMAGES = 8  # AutoCast's reference run: enough to see the activation ranges, seconds on a CPU


def autocast_fp16(qdq_path: Path, out_path: Path, images: np.ndarray, work: Path, log_path: Path) -> dict:
    """Write `qdq_path` with its float layers typed FP16 (decode head FP32) to `out_path`; returns node counts."""
    import logging

    import onnx

    try:
        import polygraphy  # noqa: F401 - AutoCast's reference runner imports it only when it runs
        from modelopt.onnx.autocast import configure_logging, convert_to_mixed_precision
    except ImportError as exc:
        raise EdgeqError(f"ModelOpt AutoCast does not import ({exc})",
                         "pip install 'edgeq[tensorrt]' (nvidia-modelopt, polygraphy)") from None
    data = work / "autocast-inputs"
    data.mkdir(parents=True, exist_ok=True)
    for i in range(min(_CALIBRATION_IMAGES, len(images))):
        np.savez(data / f"batch{i:02d}.npz", **{INPUT_NAME: images[i:i + 1]})
    captured = io.StringIO()
    configure_logging(level=logging.WARNING, log_file=str(log_path))
    try:
        with contextlib.redirect_stdout(captured), contextlib.redirect_stderr(captured):
            model = convert_to_mixed_precision(str(qdq_path), low_precision_type="fp16",
                                               nodes_to_exclude=[f"^{re.escape(HEAD_PREFIX)}"], keep_io_types=True,
                                               calibration_data=str(data), providers=["cpu"])
    except Exception as exc:  # noqa: BLE001 - AutoCast raises anything; the log keeps the details
        first = str(exc).splitlines()[0][:200] if str(exc) else ""
        raise StageError("modelopt-autocast", f"{type(exc).__name__}: {first}", str(log_path)) from None
    finally:
        with open(log_path, "a") as log:
            log.write(captured.getvalue())
    onnx.save(model, str(out_path))
    return node_types(model)


def node_types(model) -> dict[str, int]:
    """How many nodes output FP16 and FP32 (Q/DQ, Cast and Constant nodes not counted)."""
    import onnx

    typed = onnx.shape_inference.infer_shapes(model)
    types = {v.name: v.type.tensor_type.elem_type for v in (*typed.graph.value_info, *typed.graph.output)}
    counted = Counter()
    for node in model.graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear", "Cast", "Constant"):
            continue
        elem = types.get(node.output[0])
        counted["fp16_nodes" if elem == onnx.TensorProto.FLOAT16 else "fp32_nodes"] += 1
    return {"fp16_nodes": counted["fp16_nodes"], "fp32_nodes": counted["fp32_nodes"]}
