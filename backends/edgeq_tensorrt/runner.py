"""TensorRT engines where TensorRT exists (Jetson, desktop GPU): build from ONNX, run, report `measured`.

`import tensorrt` happens only inside these functions; on machines without it the backend emits the build
scripts instead and the tests that need it skip. Buffers live in CUDA memory through torch (a dependency of
edgeq already): inputs are float32 NCHW [0, 1], outputs come back as float32 by tensor name.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from edgeq.plugin import Runner, StageError


def tensorrt_available() -> bool:
    try:
        import tensorrt  # noqa: F401
    except Exception:  # noqa: BLE001 - a broken install (missing CUDA libs) raises more than ImportError
        return False
    return True


def installed_version() -> str | None:
    """The local TensorRT's version ('10.3.0'), None without it."""
    if not tensorrt_available():
        return None
    import tensorrt as trt

    return str(trt.__version__)


def dla_cores() -> int:
    """DLA cores the local TensorRT sees (0 without TensorRT or off-Jetson)."""
    if not tensorrt_available():
        return 0
    import tensorrt as trt

    return int(trt.Builder(trt.Logger(trt.Logger.ERROR)).num_DLA_cores)


def build_engine(onnx_path: Path, *, calib_cache: Path | None = None, fp16_layers: Iterable[str] = (),
                 dla_core: int | None = None, gpu_fallback: bool = True, workspace_mb: int = 2048) -> bytes:
    """Serialized engine for `onnx_path`: Q/DQ ONNX (explicit INT8) or plain ONNX + calibration cache.

    I/O stays float32 linear here (the evaluation feeds float images); the deployable DLA build with
    int8:dla_hwc4 / fp16:chw16 I/O is build_dla.sh / build_dla.py.
    """
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    major = int(trt.__version__.split(".")[0])
    network = builder.create_network(0 if major >= 10 else 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        raise StageError("tensorrt-parse", "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors)))
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
    if major >= 11:  # strongly typed: the ONNX's Q/DQ nodes and FP16 types are the precision (11.0 removed flags)
        if calib_cache is not None or fp16_layers:
            raise StageError("tensorrt-build", f"TensorRT {trt.__version__} has no calibrator and no layer "
                             "precisions: build the typed Q/DQ ONNX of the tensorrt11 folder")
        return _build(builder, network, config, onnx_path, dla_core, gpu_fallback, trt)
    config.set_flag(trt.BuilderFlag.INT8)
    config.set_flag(trt.BuilderFlag.FP16)
    if calib_cache is not None:
        config.int8_calibrator = _cache_calibrator(trt, Path(calib_cache))
    fp16 = set(fp16_layers)
    if fp16:
        config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
        for i in range(network.num_layers):
            layer = network.get_layer(i)
            if layer.name in fp16:
                layer.precision = trt.float16
    return _build(builder, network, config, onnx_path, dla_core, gpu_fallback, trt)


def _build(builder, network, config, onnx_path: Path, dla_core: int | None, gpu_fallback: bool, trt) -> bytes:
    if dla_core is not None:
        if builder.num_DLA_cores == 0:
            raise StageError("tensorrt-dla", "this machine's TensorRT reports no DLA core")
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = dla_core
        if gpu_fallback:
            config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
    engine = builder.build_serialized_network(network, config)
    if engine is None:
        raise StageError("tensorrt-build", f"TensorRT could not build an engine from {Path(onnx_path).name}")
    return bytes(engine)


def _cache_calibrator(trt, cache: Path):
    class CacheCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            super().__init__()
            self.data = cache.read_bytes()

        def get_batch_size(self) -> int:
            return 1

        def get_batch(self, names):
            return None

        def read_calibration_cache(self):
            return self.data

        def write_calibration_cache(self, data) -> None:
            pass

    return CacheCalibrator()


class TensorRTRunner(Runner):
    """Runs a serialized engine (`.engine`/`.plan`) on the GPU, or on a DLA core when `dla_core` is set."""

    def __init__(self, path: Path, dla_core: int | None = None) -> None:
        super().__init__(path)
        self.dla_core = dla_core

    def load(self) -> None:
        import tensorrt as trt
        import torch

        self.torch = torch
        logger = trt.Logger(trt.Logger.WARNING)
        runtime = trt.Runtime(logger)
        if self.dla_core is not None:
            runtime.DLA_core = self.dla_core
        self.engine = runtime.deserialize_cuda_engine(self.path.read_bytes())
        self.context = self.engine.create_execution_context()
        self.stream = torch.cuda.Stream()
        dtypes = {trt.float32: torch.float32, trt.float16: torch.float16, trt.int8: torch.int8,
                  trt.int32: torch.int32}
        self.buffers, self.inputs, self.outputs = {}, [], []
        for i in range(self.engine.num_io_tensors):
            name = self.engine.get_tensor_name(i)
            shape = tuple(self.engine.get_tensor_shape(name))
            buffer = torch.empty(shape, dtype=dtypes[self.engine.get_tensor_dtype(name)], device="cuda")
            self.buffers[name] = buffer
            self.context.set_tensor_address(name, buffer.data_ptr())
            is_input = self.engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
            (self.inputs if is_input else self.outputs).append(name)
        self.input_shape = tuple(self.buffers[self.inputs[0]].shape)
        self.runtime = f"tensorrt {trt.__version__}" + (f" (DLA core {self.dla_core})" if self.dla_core is not None
                                                         else " (GPU)")

    def infer(self, images: np.ndarray) -> dict[str, np.ndarray]:
        torch = self.torch
        buffer = self.buffers[self.inputs[0]]
        buffer.copy_(torch.from_numpy(np.ascontiguousarray(images)).to(buffer.dtype))
        self.context.execute_async_v3(self.stream.cuda_stream)
        self.stream.synchronize()
        return {name: self.buffers[name].float().cpu().numpy() for name in self.outputs}

    def close(self) -> None:
        self.context = self.engine = self.buffers = None
