#!/usr/bin/env python3
"""Run this kit's TensorRT engine on one image and print the detections (edgeq deploy kit).

Needs the engine built on this device first (DEPLOY.md: build_engine.sh or build_dla.sh of the tensorrt10/ or
tensorrt11/ folder), and TensorRT 10 or 11's Python bindings (the tensor API: tensor names, set_tensor_address,
execute_async_v3) with cuda-python (JetPack 6 and 7 have both: python3-libnvinfer, pip install cuda-python),
numpy and OpenCV. The engine's input may be FP32 (GPU engine from the Q/DQ ONNX) or INT8 in DLA's HWC4 format
(the DLA build), quantized with the `images` scale of model.cache (TensorRT 10) or model-io.json (TensorRT 11);
FP16/FP32 outputs in linear or CHW16 format are read back into NCHW. edgeq could not run this script where it
exported (no TensorRT there).
"""

import sys
from pathlib import Path

import hostside
import numpy as np


def add_arguments(parser):
    parser.add_argument("--cache", type=Path, help="calibration cache or model-io.json with the INT8 input scale "
                        "(default: model.cache, else model-io.json beside the engine, for INT8 inputs only)")


def open_model(path, args, head):
    import tensorrt as trt

    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        from cuda import cudart

    runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
    engine = runtime.deserialize_cuda_engine(Path(path).read_bytes())
    if engine is None:
        raise SystemExit(f"infer.py: error: TensorRT cannot load '{path}' (built with another TensorRT version "
                         "or for another device? rebuild it here)")
    context = engine.create_execution_context()
    names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
    inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
    outputs = [n for n in names if n not in inputs]
    buffers = {n: _Buffer(engine, context, n, trt, cudart) for n in names}
    scale = _input_scale(args.cache or _scale_file(Path(path)), inputs[0]) \
        if engine.get_tensor_dtype(inputs[0]) == trt.int8 else None

    def infer(images):
        buffers[inputs[0]].write(_pack_input(images, buffers[inputs[0]], scale, trt))
        for name, buffer in buffers.items():
            context.set_tensor_address(name, buffer.device)
        _check(cudart.cudaDeviceSynchronize())
        if not context.execute_async_v3(0):
            raise SystemExit("infer.py: error: TensorRT inference failed")
        _check(cudart.cudaDeviceSynchronize())
        return {name: _unpack_output(buffers[name], trt) for name in outputs}

    return infer


class _Buffer:
    """One I/O tensor: its shape, dtype and format, a host array and the device allocation."""

    def __init__(self, engine, context, name, trt, cudart):
        self.name, self.cudart = name, cudart
        self.shape = tuple(context.get_tensor_shape(name))
        self.dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(name)))
        self.format = engine.get_tensor_format(name)
        self.vector = max(1, engine.get_tensor_components_per_element(name))
        self.vector_dim = engine.get_tensor_vectorized_dim(name)
        strides = tuple(context.get_tensor_strides(name))
        self.elements = max(s * d for s, d in zip(strides, self.shape)) * max(1, self.vector)
        self.nbytes = int(self.elements * self.dtype.itemsize)
        self.device = _check(cudart.cudaMalloc(self.nbytes))
        self.strides = strides

    def write(self, array):
        host = np.zeros(self.elements, self.dtype)
        flat = np.ascontiguousarray(array, self.dtype).reshape(-1)
        host[:flat.size] = flat
        _check(self.cudart.cudaMemcpy(self.device, host.ctypes.data, self.nbytes,
                                      self.cudart.cudaMemcpyKind.cudaMemcpyHostToDevice))

    def read(self):
        host = np.empty(self.elements, self.dtype)
        _check(self.cudart.cudaMemcpy(host.ctypes.data, self.device, self.nbytes,
                                      self.cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost))
        return host


def _pack_input(images, buffer, scale, trt):
    """NCHW float in [0, 1] -> what the engine takes: the same, or INT8 HWC4 (channels padded to 4, rows to the
    engine's stride) for a DLA build."""
    if scale is not None:
        images = np.clip(np.round(images / scale), -128, 127)
    if buffer.format == trt.TensorFormat.DLA_HWC4:
        n, c, h, w = images.shape
        row = buffer.strides[2] if len(buffer.strides) == 4 else w  # pixels per row, alignment included
        packed = np.zeros((n, h, row, 4), buffer.dtype)
        packed[:, :, :w, :c] = np.transpose(images, (0, 2, 3, 1))
        return packed
    return images


def _unpack_output(buffer, trt):
    """Linear or vectorized (CHW16, CHW32) output -> float32 NCHW of the tensor's own shape."""
    host = buffer.read().astype(np.float32)
    if buffer.vector == 1:
        return host[:int(np.prod(buffer.shape))].reshape(buffer.shape)
    n, c, *spatial = buffer.shape
    groups = -(-c // buffer.vector)
    blocks = host[:n * groups * int(np.prod(spatial)) * buffer.vector].reshape(n, groups, *spatial, buffer.vector)
    return np.moveaxis(blocks, -1, 2).reshape(n, groups * buffer.vector, *spatial)[:, :c]


def _scale_file(engine: Path) -> Path:
    """Where the INT8 input scale is beside the engine: model.cache (TensorRT 10), model-io.json (TensorRT 11,
    whose strongly typed graph carries it in the input's DequantizeLinear)."""
    cache = engine.with_name("model.cache")
    return cache if cache.exists() else engine.with_name("model-io.json")


def _input_scale(cache: Path, name: str) -> float:
    """The INT8 scale of `name` in a TensorRT calibration cache (lines `tensor: <float32 as big-endian hex>`) or in
    a TensorRT 11 folder's model-io.json."""
    if not cache.exists():
        raise SystemExit(f"infer.py: error: the engine takes INT8 input and '{cache}' (its scale) is missing; "
                         "pass --cache")
    if cache.suffix == ".json":
        import json

        inputs = json.loads(cache.read_text())["inputs"]
        if name not in inputs:
            raise SystemExit(f"infer.py: error: '{cache}' has no scale for input '{name}'")
        return float(inputs[name]["scale"])
    for line in cache.read_text().splitlines()[1:]:
        key, _, value = line.rpartition(":")
        if key.strip() == name:
            return float(np.frombuffer(bytes.fromhex(value.strip()), ">f4")[0])
    raise SystemExit(f"infer.py: error: '{cache}' has no scale for input '{name}'")


def _check(result):
    error, *values = result if isinstance(result, tuple) else (result,)
    if int(error) != 0:
        raise SystemExit(f"infer.py: error: CUDA call failed ({error})")
    return values[0] if values else None


if __name__ == "__main__":
    sys.exit(hostside.run_on_image(open_model, __doc__, add_arguments))
