"""Conversion worker, run in its own process through edgeq's worker protocol (edgeq.toolchains): ONNX ->
TensorFlow (onnx2tf) -> full-integer TFLite. `run(job)` is called by the protocol's child in edgeq's own
interpreter (the family's toolchain is edgeq's environment; the protocol is the same as for a vendor toolchain in
an interpreter of its own).

A subprocess keeps TensorFlow's memory, threads and global state out of the exporter, gives one log file per
conversion (stdout and stderr of onnx2tf and the converter), and lets the parent kill a hung conversion.

Path chosen: onnx2tf builds the TF graph (NCHW -> NHWC) in memory and nothing else; quantization is ours,
with `tf.lite.TFLiteConverter` and `supported_ops = [TFLITE_BUILTINS_INT8]` only. onnx2tf's own `-oiqt` path
adds `SELECT_TF_OPS` (an op that cannot be quantized would silently stay float as a Flex op), normalizes the
calibration data with ImageNet mean/std unless told otherwise, writes eight other model variants, and logs a
failed full-integer conversion as a warning. Ours fails loudly instead, names the outputs through the
signature (`box_0`, `cls_0`, ... or `output0`), and calibrates on the job's images only.

16x8 (a file with `activations: int16`): the same converter with the
`EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8` ops set alone, int16 I/O. TensorFlow 2.21 quantizes
it with its older calibrate-and-quantize pass (the MLIR quantizer, which writes the INT8 files, skips int16), for
every op of the file: an op without a 16x8 kernel fails the conversion rather than staying float, and neither pass
offers a per-op choice between int8 and int16 activations. onnx2tf's `-oiqt` writes the same 16x8 files
(`*_full_integer_quant_with_int16_act.tflite`) with `SELECT_TF_OPS` added; its `-qt` is the weight granularity.
The calibration statistics memo below does not reach that pass: a 16x8 file calibrates on its own.

No network: onnx2tf fetches a sample image file for its shape-estimation dummy inference (and for
calibration when none is given). Here that function returns the job's own calibration images, and the
protocol's child refuses socket connections, so a future onnx2tf that tries anything else fails instead of
reaching out.

The job holds: onnx, workdir, calib (an .npy of NHWC images, uint8 0..255 or float32 0..1), outputs (list of
{path, granularity, activations (int8, or int16 for 16x8), io_dtype}), and optionally statistics (a folder for
calibration statistics) with calib_hash (the images' hash, part of their key).
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import numpy as np
from edgeq_worker import Failure  # provided by the worker protocol's child (edgeq/toolchains/child.py)


SAMPLE_FILE = "calibration_image_sample_data_20x128x128x3_float32.npy"  # the file onnx2tf looks for in cwd


CALIBRATION_SECONDS: list[float] = []  # time spent running the float model over the calibration images


def _images(calib: np.ndarray):
    """Calibration images as float32 NHWC in [0, 1], one (1, S, S, 3) batch at a time."""
    for image in calib:
        x = image.astype(np.float32)
        if calib.dtype == np.uint8:
            x /= 255.0
        yield x[None]


def _to_onnx_layout(tf_out: np.ndarray, onnx_shape: tuple[int, ...]) -> np.ndarray | None:
    """A TF output in the ONNX output's layout (NHWC -> NCHW, NWC -> NCW), or None if it cannot be."""
    if tf_out.shape == onnx_shape:
        return tf_out
    if tf_out.ndim >= 3:
        perm = (0, tf_out.ndim - 1, *range(1, tf_out.ndim - 1))
        moved = np.transpose(tf_out, perm)
        if moved.shape == onnx_shape:
            return moved
    return None


def _calibrate_once(statistics: Path | None = None, images_hash: str = "") -> None:
    """Activation ranges do not depend on the weight granularity: calibrate the float model once and let every
    later conversion of the same model reuse the statistics (the converter's own path, minus the repeat). With
    `statistics` (a folder of edgeq's cache), they are kept on disk too, keyed by the float model's bytes, the
    images and TensorFlow's version, so another process converting the same model reuses them."""
    import hashlib

    import tensorflow as tf
    from tensorflow.lite.python.optimize import calibrator

    if getattr(calibrator.Calibrator, "_edgeq_memo", None) is not None:
        return
    memo: dict[str, bytes] = {}
    CALIBRATION_SECONDS.clear()
    init, calibrate = calibrator.Calibrator.__init__, calibrator.Calibrator.calibrate

    def init_keyed(self, model_content, *args, **kwargs):
        self._edgeq_key = hashlib.sha256(model_content + images_hash.encode() + tf.__version__.encode()).hexdigest()
        init(self, model_content, *args, **kwargs)

    def calibrate_memo(self, dataset_gen):
        kept = statistics / f"{self._edgeq_key[:32]}.tflite" if statistics else None
        if self._edgeq_key not in memo and kept is not None and kept.is_file():
            memo[self._edgeq_key] = kept.read_bytes()
            print(f"edgeq: calibration statistics taken from the cache ({kept.name})", flush=True)
        elif self._edgeq_key in memo:
            print("edgeq: reusing the calibration statistics of the same float model", flush=True)
        if self._edgeq_key not in memo:
            start = time.perf_counter()
            memo[self._edgeq_key] = calibrate(self, dataset_gen)
            CALIBRATION_SECONDS.append(time.perf_counter() - start)
            if kept is not None:
                kept.parent.mkdir(parents=True, exist_ok=True)
                scratch = kept.with_name(f".{kept.name}.{os.getpid()}")
                scratch.write_bytes(memo[self._edgeq_key])
                scratch.replace(kept)
        return memo[self._edgeq_key]

    calibrator.Calibrator.__init__ = init_keyed
    calibrator.Calibrator.calibrate = calibrate_memo
    calibrator.Calibrator._edgeq_memo = memo


def run(job: dict) -> dict:
    workdir = Path(job["workdir"])
    workdir.mkdir(parents=True, exist_ok=True)
    os.chdir(workdir)
    calib = np.load(job["calib"], mmap_mode="r")
    sample = np.concatenate(list(_images(calib[:20])), axis=0)
    np.save(workdir / SAMPLE_FILE, sample)
    timings = {}

    # --- ONNX -> TF (onnx2tf) -----------------------------------------------------------------------------
    t = time.perf_counter()
    try:
        import onnx2tf
        import onnx2tf.onnx2tf as o2t_main
        import onnx2tf.utils.common_functions as o2t_common

        def local_sample() -> np.ndarray:
            return np.load(workdir / SAMPLE_FILE)

        o2t_main.download_test_image_data = local_sample
        o2t_common.download_test_image_data = local_sample
        import tensorflow as tf

        # a private copy: onnx2tf saves its shape-inferred graph over the file it is given, which is the run's
        # FP32 ONNX (shipped, converted for other targets, and part of the conversion cache's key)
        private = workdir / "input.onnx"
        shutil.copyfile(job["onnx"], private)
        model = onnx2tf.convert(input_onnx_file_path=str(private), output_folder_path=str(workdir / "onnx2tf"),
                                disable_model_save=True, not_use_onnxsim=True, verbosity="warn",
                                non_verbose=False)
    except SystemExit as exc:  # onnx2tf calls sys.exit(1) on conversion errors
        raise Failure("onnx2tf", f"onnx2tf exited with status {exc.code}") from None
    except Exception as exc:
        raise Failure("onnx2tf", f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}") \
            from exc
    timings["onnx2tf_s"] = round(time.perf_counter() - t, 2)

    # --- verify the FP32 TF graph against ONNX Runtime, and name its outputs ---------------------------------
    import onnxruntime as ort

    sess = ort.InferenceSession(job["onnx"], providers=["CPUExecutionProvider"])
    onnx_outputs = [o.name for o in sess.get_outputs()]
    x = next(_images(calib[:1]))
    ref = dict(zip(onnx_outputs, sess.run(None, {sess.get_inputs()[0].name: np.transpose(x, (0, 3, 1, 2))})))
    tf_outs = model(tf.constant(x))
    tf_outs = [o.numpy() for o in (tf_outs if isinstance(tf_outs, (list, tuple)) else [tf_outs])]
    if len(tf_outs) != len(onnx_outputs):
        raise Failure("onnx2tf", f"TF model has {len(tf_outs)} outputs, the ONNX model {len(onnx_outputs)}")
    names, errors, free = [], {}, set(onnx_outputs)
    for j, out in enumerate(tf_outs):
        best = None
        for name in sorted(free, key=lambda n: n != onnx_outputs[j]):  # same position first
            moved = _to_onnx_layout(out, ref[name].shape)
            if moved is None:
                continue
            err = float(np.abs(moved - ref[name]).max() / (np.abs(ref[name]).max() + 1e-6))
            if best is None or err < best[1]:
                best = (name, err)
        if best is None:
            raise Failure("onnx2tf", f"TF output {j} of shape {out.shape} matches no ONNX output")
        names.append(best[0])
        errors[best[0]] = best[1]
        free.discard(best[0])
    worst = max(errors, key=errors.get)
    if errors[worst] > job.get("max_fp32_error", 1e-3):
        raise Failure("verify", f"FP32 TF output '{worst}' differs from ONNX Runtime by {errors[worst]:.2e} "
                                f"(relative to its range): onnx2tf converted the graph wrongly")

    # --- full-integer quantization (TFLiteConverter, INT8 builtins only) --------------------------------------
    size = int(calib.shape[1])

    @tf.function(input_signature=[tf.TensorSpec([1, size, size, 3], tf.float32, name="images")])
    def serve(images):
        outs = model(images)
        outs = outs if isinstance(outs, (list, tuple)) else [outs]
        return {name: out for name, out in zip(names, outs)}

    # A plain tf.Module holding the variables, not the Keras model: the converter saves its trackable object as a
    # SavedModel, and walking Keras' serialization metadata of an onnx2tf model takes over a minute per file.
    holder = tf.Module()
    holder.variables_ = list(model.variables)
    holder.serve = serve
    concrete = serve.get_concrete_function()
    _calibrate_once(Path(job["statistics"]) if job.get("statistics") else None, job.get("calib_hash", ""))
    built = []
    for spec in job["outputs"]:
        t = time.perf_counter()
        try:
            converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], holder)
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.representative_dataset = lambda: ([b] for b in _images(calib))
            int16 = spec["activations"] == "int16"
            # 16x8: int16 activations, int8 weights, int64 biases, every op or none (the converter has no per-op
            # choice of 16x8 and refuses int8/uint8 I/O for it: int16 I/O)
            converter.target_spec.supported_ops = [
                tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8 if int16
                else tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            io_type = {"int8": tf.int8, "uint8": tf.uint8, "int16": tf.int16}[spec["io_dtype"]]
            converter.inference_input_type = io_type
            converter.inference_output_type = io_type
            converter._experimental_disable_per_channel = spec["granularity"] == "per-tensor"
            data = converter.convert()
        except Exception as exc:
            raise Failure("quantize", f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1][:300]}") from exc
        Path(spec["path"]).write_bytes(data)
        calibrated = sum(CALIBRATION_SECONDS)
        CALIBRATION_SECONDS.clear()
        built.append({"path": spec["path"], "granularity": spec["granularity"],
                      "seconds": round(time.perf_counter() - t - calibrated, 2)})
        timings["calibrate_s"] = round(timings.get("calibrate_s", 0.0) + calibrated, 2)
    return {"outputs": names, "fp32_rel_error": errors, "timings": timings, "built": built,
            "calibration_images": int(calib.shape[0])}
