"""Build scripts for the Jetson: `build_dla.sh` (trtexec) and `build_dla.py` (TensorRT Python API).

Both build the same engine from `model.onnx` + `model.cache`: DLA core N, INT8 with FP16 allowed, the listed
layers pinned to FP16 (`--precisionConstraints=obey`), INT8 input in the dla_hwc4 format and FP16 outputs in
chw16, and either GPU fallback (a TensorRT engine) or a standalone DLA loadable (cuDLA). They cannot run where
edgeq runs (no TensorRT), so the DLA engine artifact is reported `not-built` and names them.
"""

from __future__ import annotations

import pprint
import shlex
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class DlaBuild:
    onnx: str  # file names, relative to the script's folder
    cache: str
    outputs: tuple[str, ...]
    fp16_layers: tuple[str, ...]
    dla_core: int = 0
    input_format: str = "dla_hwc4"
    standalone_default: bool = False  # default mode: standalone loadable (no GPU fallback) or engine with fallback

    def trtexec(self, standalone: bool) -> list[str]:
        args = ["trtexec", f"--onnx={self.onnx}", f"--useDLACore={self.dla_core}", "--int8", "--fp16",
                f"--calib={self.cache}", f"--inputIOFormats=int8:{self.input_format}",
                "--outputIOFormats=" + ",".join(["fp16:chw16"] * len(self.outputs))]
        if self.fp16_layers:
            args.append("--layerPrecisions=" + ",".join(f"{name}:fp16" for name in self.fp16_layers))
        args.append("--precisionConstraints=obey")
        stem = Path(self.onnx).stem
        if standalone:
            args += ["--buildDLAStandalone", f"--saveEngine={stem}.loadable"]
        else:
            args += ["--allowGPUFallback", f"--saveEngine={stem}.engine"]
        return args


def write_shell(build: DlaBuild, path: Path) -> Path:
    standalone = " ".join(shlex.quote(a) for a in build.trtexec(True))
    fallback = " ".join(shlex.quote(a) for a in build.trtexec(False))
    default = "standalone" if build.standalone_default else "fallback"
    path.write_text(f"""#!/usr/bin/env bash
# Build the DLA engine on the Jetson (JetPack 6, TensorRT 10.x; TensorRT 11.0-11.3 have no DLA).
#   ./build_dla.sh             {default} (default)
#   ./build_dla.sh standalone  DLA loadable for cuDLA: every layer must run on DLA
#   ./build_dla.sh fallback    TensorRT engine; layers DLA cannot run go to the GPU
# Input: INT8 images in dla_hwc4, quantized with the 'images' scale of {build.cache} (1/127 for [0, 1] pixels).
# Outputs: {', '.join(build.outputs)} in FP16 chw16.
set -euo pipefail
cd "$(dirname "$0")"
TRTEXEC="${{TRTEXEC:-$(command -v trtexec || echo /usr/src/tensorrt/bin/trtexec)}}"
mode="${{1:-{default}}}"
case "$mode" in
  standalone) "$TRTEXEC" {standalone.removeprefix("trtexec ")} ;;
  fallback)   "$TRTEXEC" {fallback.removeprefix("trtexec ")} ;;
  *) echo "usage: $0 [standalone|fallback]" >&2; exit 2 ;;
esac
""")
    path.chmod(0o755)
    return path


_PY_TEMPLATE = '''#!/usr/bin/env python3
"""Build the DLA engine with the TensorRT Python API (equivalent to build_dla.sh). JetPack 6 / TensorRT 10.x.

    python3 build_dla.py [--standalone | --fallback] [--dla-core N]
"""
import argparse
import sys
from pathlib import Path

import tensorrt as trt

CONFIG = {config}
HERE = Path(__file__).resolve().parent


class CacheCalibrator(trt.IInt8EntropyCalibrator2):
    """Hands TensorRT the calibration cache; never asked for images because the cache covers the network."""

    def __init__(self, cache: Path):
        super().__init__()
        self.cache = cache.read_bytes()

    def get_batch_size(self):
        return 1

    def get_batch(self, names):
        return None

    def read_calibration_cache(self):
        return self.cache

    def write_calibration_cache(self, cache):
        pass


def main():
    parser = argparse.ArgumentParser()
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--standalone", action="store_true", help="DLA loadable for cuDLA (no GPU fallback)")
    mode.add_argument("--fallback", action="store_true", help="TensorRT engine with GPU fallback")
    parser.add_argument("--dla-core", type=int, default=CONFIG["dla_core"])
    args = parser.parse_args()
    standalone = args.standalone or (CONFIG["standalone_default"] and not args.fallback)
    major, minor = (int(p) for p in trt.__version__.split(".")[:2])
    if (11, 0) <= (major, minor) <= (11, 3):
        sys.exit(f"TensorRT {{trt.__version__}} has no DLA support: use JetPack's TensorRT 10.x")

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    if builder.num_DLA_cores == 0:
        sys.exit("this device has no DLA core")
    flags = 0 if major >= 10 else 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser_onnx = trt.OnnxParser(network, logger)
    if not parser_onnx.parse_from_file(str(HERE / CONFIG["onnx"])):
        sys.exit("\\n".join(str(parser_onnx.get_error(i)) for i in range(parser_onnx.num_errors)))

    config = builder.create_builder_config()
    config.set_flag(trt.BuilderFlag.INT8)
    config.set_flag(trt.BuilderFlag.FP16)
    config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
    config.int8_calibrator = CacheCalibrator(HERE / CONFIG["cache"])
    config.default_device_type = trt.DeviceType.DLA
    config.DLA_core = args.dla_core
    if standalone:
        config.engine_capability = trt.EngineCapability.DLA_STANDALONE
    else:
        config.set_flag(trt.BuilderFlag.GPU_FALLBACK)

    fp16 = set(CONFIG["fp16_layers"])
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        if layer.name in fp16:
            layer.precision = trt.float16
            for k in range(layer.num_outputs):
                layer.set_output_type(k, trt.float16)
    formats = {{"dla_hwc4": trt.TensorFormat.DLA_HWC4, "chw32": trt.TensorFormat.CHW32,
               "dla_linear": trt.TensorFormat.DLA_LINEAR}}
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        tensor.dtype = trt.int8
        tensor.allowed_formats = 1 << int(formats[CONFIG["input_format"]])
    for i in range(network.num_outputs):
        tensor = network.get_output(i)
        tensor.dtype = trt.float16
        tensor.allowed_formats = 1 << int(trt.TensorFormat.CHW16)

    on_gpu = [network.get_layer(i).name for i in range(network.num_layers)
              if not config.can_run_on_DLA(network.get_layer(i))]
    if on_gpu:
        print(f"{{len(on_gpu)}} layer(s) cannot run on DLA: {{', '.join(on_gpu[:10])}}", file=sys.stderr)
        if standalone:
            sys.exit("standalone DLA loadables need every layer on DLA: use --fallback")
    engine = builder.build_serialized_network(network, config)
    if engine is None:
        sys.exit("TensorRT failed to build the engine (see the log above)")
    out = HERE / (Path(CONFIG["onnx"]).stem + (".loadable" if standalone else ".engine"))
    out.write_bytes(engine)
    print(out)


if __name__ == "__main__":
    main()
'''


def write_python(build: DlaBuild, path: Path) -> Path:
    config = pprint.pformat({"onnx": build.onnx, "cache": build.cache, "outputs": list(build.outputs),
                             "fp16_layers": list(build.fp16_layers), "dla_core": build.dla_core,
                             "input_format": build.input_format, "standalone_default": build.standalone_default},
                            sort_dicts=False, width=110)
    path.write_text(_PY_TEMPLATE.format(config=config))
    path.chmod(0o755)
    return path


def write_gpu_shell(onnx_name: str, path: Path) -> Path:
    stem = Path(onnx_name).stem
    path.write_text(f"""#!/usr/bin/env bash
# Build the GPU engine from the explicitly quantized (Q/DQ) ONNX: the scales are in the graph, no calibration.
set -euo pipefail
cd "$(dirname "$0")"
TRTEXEC="${{TRTEXEC:-$(command -v trtexec || echo /usr/src/tensorrt/bin/trtexec)}}"
"$TRTEXEC" --onnx={shlex.quote(onnx_name)} --int8 --fp16 --saveEngine={shlex.quote(stem)}.engine "$@"
""")
    path.chmod(0o755)
    return path
