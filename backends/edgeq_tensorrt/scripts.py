"""Build scripts for the device, one set per TensorRT generation: `build_dla.sh` (trtexec) and `build_dla.py`
(TensorRT Python API) for the DLA, `build_engine.sh` for the GPU.

TensorRT 10 (JetPack 6): the DLA engine from `model.onnx` + `model.cache`, INT8 with FP16 allowed, the listed
layers pinned to FP16 (`--precisionConstraints=obey`). TensorRT 11 (JetPack 7.2.2+): strongly typed, the same
engine from the Q/DQ ONNX whose types carry every precision (11.0 removed the flags, the calibrator and the
constraints). Both: INT8 input in the dla_hwc4 format, FP16 outputs in chw16, and either GPU fallback (a
TensorRT engine) or a standalone DLA loadable (cuDLA). Every script first reads the device's TensorRT version
and refuses, in one line naming the other folder, a generation it is not for. They cannot run where edgeq runs
(no TensorRT), so the engine artifacts are reported `not-built` and name them.
"""

from __future__ import annotations

import pprint
import shlex
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class DlaBuild:
    onnx: str  # file names, relative to the script's folder
    cache: str | None  # TensorRT 10: the calibration cache; TensorRT 11: None (the scales are Q/DQ nodes)
    outputs: tuple[str, ...]
    fp16_layers: tuple[str, ...]  # TensorRT 10: pinned by layer precision; TensorRT 11: typed in the ONNX
    dla_core: int = 0
    input_format: str = "dla_hwc4"
    standalone_default: bool = False  # default mode: standalone loadable (no GPU fallback) or engine with fallback
    generation: str = "10"

    def trtexec(self, standalone: bool) -> list[str]:
        args = ["trtexec", f"--onnx={self.onnx}", f"--useDLACore={self.dla_core}"]
        if self.generation == "10":  # weakly typed: precisions from flags, scales from the cache
            args += ["--int8", "--fp16", f"--calib={self.cache}"]
        args += [f"--inputIOFormats=int8:{self.input_format}",
                 "--outputIOFormats=" + ",".join(["fp16:chw16"] * len(self.outputs))]
        if self.generation == "10":
            if self.fp16_layers:
                args.append("--layerPrecisions=" + ",".join(f"{name}:fp16" for name in self.fp16_layers))
            args.append("--precisionConstraints=obey")
        stem = Path(self.onnx).stem
        if standalone:
            args += ["--buildDLAStandalone", f"--saveEngine={stem}.loadable"]
        else:
            args += ["--allowGPUFallback", f"--saveEngine={stem}.engine"]
        return args


def gpu_trtexec(onnx_name: str, generation: str) -> list[str]:
    """TensorRT 10 takes the Q/DQ ONNX with INT8 and FP16 enabled; TensorRT 11 reads both from the ONNX's types."""
    flags = ["--int8", "--fp16"] if generation == "10" else []
    engine = Path(onnx_name).stem.replace("-qdq-fp16", "").replace("-qdq", "")  # model-int8.engine in both folders
    return ["trtexec", f"--onnx={onnx_name}", *flags, f"--saveEngine={engine}.engine"]


def version_guard(script: str, generation: str, dla: bool) -> str:
    """Bash that reads the device's TensorRT version (trtexec's banner, else the Python package; TRT_VERSION
    overrides) and exits with one line when this folder's generation cannot build here: the other generation's
    folder, or why no TensorRT of this device builds a DLA engine."""
    from edgeq_tensorrt.generations import generations

    gens = generations()
    own, other = gens[generation], gens["11" if generation == "10" else "10"]
    allowed = own.versions(dla)
    low, high = (_as_number(v) for v in (allowed.low, allowed.high))
    other_script = f"../{other.folder}/{script}"
    newer = generation == "10"
    wrong = (f"TensorRT $version is not {own.label}: this folder is for {own.jetpack}; run {other_script} "
             f"({other.jetpack})")
    lines = [
        "# The device's TensorRT: trtexec's banner ('[TensorRT v110401]'), else the Python package; TRT_VERSION=X.Y.Z",
        "# overrides. This folder builds with " + f"{own.label} ({allowed.text}); {other_script} with {other.label}.",
        "trt_version() {",
        '  if [ -n "${TRT_VERSION:-}" ]; then echo "$TRT_VERSION"; return; fi',
        "  local code",
        '  code="$("$TRTEXEC" --version 2>&1 | sed -nE \'s/.*TensorRT v([0-9]+).*/\\1/p\' | head -n 1 || true)"',
        '  if [ -n "$code" ]; then',
        '    if [ "$code" -ge 90000 ]; then echo "$((code / 10000)).$((code / 100 % 100)).$((code % 100))"',
        '    else echo "$((code / 1000)).$((code / 100 % 10)).$((code % 100))"; fi',
        "    return",
        "  fi",
        "  python3 -c 'import tensorrt; print(tensorrt.__version__)' 2>/dev/null || true",
        "}",
        "as_number() { local IFS=.; set -- $1 0 0; echo $(( $1 * 10000 + $2 * 100 + $3 )); }",
        'version="$(trt_version)"',
        'if [ -z "$version" ]; then',
        f'  echo "{script}: cannot read this device\'s TensorRT version (no trtexec banner, no tensorrt module): '
        'set TRT_VERSION=X.Y.Z" >&2; exit 2',
        "fi",
        'v="$(as_number "$version")"',
        f'if [ "$v" -{"ge" if newer else "lt"} {_as_number(gens["11"].gpu.low)} ]; then',
        f'  echo "{script}: {wrong}" >&2; exit 2',
        "fi",
        f'if [ "$v" -lt {low} ] || [ "$v" -gt {high} ]; then',
        f'  echo "{script}: {_out_of_range(own, other, dla, other_script)}" >&2; exit 2',
        "fi",
    ]
    if dla:
        lines += [
            "# a Jetson without a DLA (Orin Nano, Thor) builds nothing here; JETSON_MODEL overrides the device tree",
            'model="${JETSON_MODEL:-$(tr -d \'\\0\' < /proc/device-tree/model 2>/dev/null || true)}"',
            'case "$model" in',
            f'  *"Orin Nano"*|*Thor*) echo "{script}: $model has no DLA (only AGX Orin and Orin NX have one): '
            'export --target tensorrt for its GPU" >&2; exit 2 ;;',
            "esac",
        ]
    return "\n".join(lines) + "\n"


def _as_number(version: tuple[int, ...]) -> int:
    return version[0] * 10000 + min(version[1], 99) * 100 + min(version[2], 99)


def _out_of_range(own, other, dla: bool, other_script: str) -> str:
    """Why a version of this folder's generation cannot build it (the DLA gaps)."""
    if not dla:
        return f"TensorRT $version is outside {own.gpu.text}, which this folder's script knows"
    if own.name == "10":
        return (f"TensorRT $version has no DLA (TensorRT 10.7 was the last 10.x with DLA): use {own.jetpack}, or "
                f"{other.jetpack} with {other_script}")
    return (f"TensorRT $version has no DLA (11.0-11.3 dropped it; 11.4.1 restores it on the Jetson AGX Orin "
            f"under JetPack 7.2.2): upgrade to JetPack 7.2.2+, or use {other_script} on {other.jetpack}")


def write_shell(build: DlaBuild, path: Path) -> Path:
    from edgeq_tensorrt.generations import generations

    gen = generations()[build.generation]
    standalone = " ".join(shlex.quote(a) for a in build.trtexec(True))
    fallback = " ".join(shlex.quote(a) for a in build.trtexec(False))
    default = "standalone" if build.standalone_default else "fallback"
    scales = (f"the 'images' scale of {build.cache}" if build.cache else
              "the scale of the input's DequantizeLinear (model-io.json)")
    path.write_text(f"""#!/usr/bin/env bash
# Build the DLA engine on the Jetson with {gen.label} ({gen.jetpack}).
#   ./{path.name}             {default} (default)
#   ./{path.name} standalone  DLA loadable for cuDLA: every layer must run on DLA
#   ./{path.name} fallback    TensorRT engine; layers DLA cannot run go to the GPU
# Input: INT8 images in {build.input_format}, quantized with {scales} (1/127 for [0, 1] pixels).
# Outputs: {', '.join(build.outputs)} in FP16 chw16.
set -euo pipefail
cd "$(dirname "$0")"
TRTEXEC="${{TRTEXEC:-$(command -v trtexec || echo /usr/src/tensorrt/bin/trtexec)}}"
{version_guard(path.name, build.generation, dla=True)}mode="${{1:-{default}}}"
case "$mode" in
  standalone) "$TRTEXEC" {standalone.removeprefix("trtexec ")} ;;
  fallback)   "$TRTEXEC" {fallback.removeprefix("trtexec ")} ;;
  *) echo "usage: $0 [standalone|fallback]" >&2; exit 2 ;;
esac
""")
    path.chmod(0o755)
    return path


_PY_TEMPLATE_10 = '''#!/usr/bin/env python3
"""Build the DLA engine with the TensorRT Python API (equivalent to build_dla.sh). {jetpack}, {label}.

    python3 build_dla.py [--standalone | --fallback] [--dla-core N]
"""
import argparse
import os
import sys
from pathlib import Path

import tensorrt as trt

CONFIG = {config}
HERE = Path(__file__).resolve().parent
{guard}

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
    check_device(trt.__version__)
    major = int(trt.__version__.split(".")[0])

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


_GUARD = '''
VERSIONS = {versions}  # the TensorRT versions this folder's engine builds with
WRONG_GENERATION = {wrong!r}
OUT_OF_RANGE = {gap!r}


def check_device(version):
    """Exit with one line where this folder cannot build: the other TensorRT generation, a TensorRT without
    DLA, or a Jetson without a DLA."""
    number = tuple(int(p) for p in (version.split(".") + ["0", "0"])[:3] if p.isdigit())
    if (number >= (11, 0, 0)) != (VERSIONS[0] >= (11, 0, 0)):
        sys.exit(WRONG_GENERATION.format(version=version))
    if not VERSIONS[0] <= number <= VERSIONS[1]:
        sys.exit(OUT_OF_RANGE.format(version=version))
    model_file = Path("/proc/device-tree/model")
    model = os.environ.get("JETSON_MODEL") or (model_file.read_text().strip("\\0\\n") if model_file.exists() else "")
    if "Orin Nano" in model or "Thor" in model:
        sys.exit(f"{{model}} has no DLA (only AGX Orin and Orin NX have one): export --target tensorrt for its GPU")
'''


_PY_TEMPLATE_11 = '''#!/usr/bin/env python3
"""Build the DLA engine with the TensorRT Python API (equivalent to build_dla.sh). {jetpack}, {label}.

Strongly typed: INT8 comes from the Q/DQ nodes of the ONNX, FP16 from its FP16-typed tensors (the last head
convolutions); no calibrator, no precision flags (TensorRT 11 has neither).

    python3 build_dla.py [--standalone | --fallback] [--dla-core N]
"""
import argparse
import os
import sys
from pathlib import Path

import tensorrt as trt

CONFIG = {config}
HERE = Path(__file__).resolve().parent
{guard}

def main():
    parser = argparse.ArgumentParser()
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--standalone", action="store_true", help="DLA loadable for cuDLA (no GPU fallback)")
    mode.add_argument("--fallback", action="store_true", help="TensorRT engine with GPU fallback")
    parser.add_argument("--dla-core", type=int, default=CONFIG["dla_core"])
    args = parser.parse_args()
    standalone = args.standalone or (CONFIG["standalone_default"] and not args.fallback)
    check_device(trt.__version__)

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    if builder.num_DLA_cores == 0:
        sys.exit("this device has no DLA core")
    strongly_typed = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)  # the only mode in 11
    network = builder.create_network(0 if strongly_typed is None else 1 << int(strongly_typed))
    parser_onnx = trt.OnnxParser(network, logger)
    if not parser_onnx.parse_from_file(str(HERE / CONFIG["onnx"])):
        sys.exit("\\n".join(str(parser_onnx.get_error(i)) for i in range(parser_onnx.num_errors)))

    config = builder.create_builder_config()
    config.default_device_type = trt.DeviceType.DLA
    config.DLA_core = args.dla_core
    if standalone:
        config.engine_capability = trt.EngineCapability.DLA_STANDALONE
    else:
        config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
    formats = {{"dla_hwc4": trt.TensorFormat.DLA_HWC4, "chw32": trt.TensorFormat.CHW32,
               "dla_linear": trt.TensorFormat.DLA_LINEAR}}
    for i in range(network.num_inputs):  # INT8-typed in the ONNX: only the memory format is chosen here
        network.get_input(i).allowed_formats = 1 << int(formats[CONFIG["input_format"]])
    for i in range(network.num_outputs):  # FP16-typed in the ONNX
        network.get_output(i).allowed_formats = 1 << int(trt.TensorFormat.CHW16)

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
    from edgeq_tensorrt.generations import generations

    gens = generations()
    gen = gens[build.generation]
    other = gens["11" if build.generation == "10" else "10"]
    other_script = f"../{other.folder}/{path.name}"
    versions = (gen.dla.low, gen.dla.high)
    wrong = (f"{path.name}: TensorRT {{version}} is not {gen.label}: this folder is for {gen.jetpack}; run "
             f"{other_script} ({other.jetpack})")
    gap = f"{path.name}: " + _out_of_range(gen, other, True, other_script).replace("$version", "{version}")
    config = pprint.pformat({"onnx": build.onnx, "cache": build.cache, "outputs": list(build.outputs),
                             "fp16_layers": list(build.fp16_layers), "dla_core": build.dla_core,
                             "input_format": build.input_format, "standalone_default": build.standalone_default},
                            sort_dicts=False, width=110)
    guard = _GUARD.format(versions=versions, wrong=wrong, gap=gap)
    template = _PY_TEMPLATE_10 if build.generation == "10" else _PY_TEMPLATE_11
    path.write_text(template.format(config=config, guard=guard, jetpack=gen.jetpack, label=gen.label))
    path.chmod(0o755)
    return path


def write_gpu_shell(onnx_name: str, path: Path, generation: str = "10") -> Path:
    from edgeq_tensorrt.generations import generations

    gen = generations()[generation]
    what = ("INT8 from the Q/DQ scales, FP16 allowed elsewhere (--int8 --fp16)" if generation == "10" else
            "strongly typed: INT8 from the Q/DQ nodes, FP16 from the FP16-typed tensors, no precision flags")
    command = " ".join(shlex.quote(a) for a in gpu_trtexec(onnx_name, generation)).removeprefix("trtexec ")
    path.write_text(f"""#!/usr/bin/env bash
# Build the GPU engine with {gen.label} ({gen.jetpack}) from the explicitly quantized ONNX: the scales are in
# the graph, no calibration; {what}. Extra arguments go to trtexec.
set -euo pipefail
cd "$(dirname "$0")"
TRTEXEC="${{TRTEXEC:-$(command -v trtexec || echo /usr/src/tensorrt/bin/trtexec)}}"
{version_guard(path.name, generation, dla=False)}"$TRTEXEC" {command} "$@"
""")
    path.chmod(0o755)
    return path
