"""TensorRT family: `tensorrt` (GPU, explicit Q/DQ) and `dla` (Jetson Orin DLA, ONNX + calibration cache).

tensorrt  ModelOpt ONNX PTQ (TensorRT Q/DQ placement, decode head excluded) -> scale unification -> Q/DQ ONNX,
          run as is in ONNX Runtime (`emulated`); where TensorRT imports, the engine too (`measured`).
dla       ModelOpt PTQ with Q/DQ on every tensor of the detached body -> scale unification (Concat, pooling)
          -> Q/DQ-to-cache translation -> model.onnx + model.cache + build_dla.sh/.py; the DLA rule table checks
          every layer with its scales; the engine numerics are rebuilt from the cache for ONNX Runtime
          (`emulated`), with and without the last head convolutions in FP16. The engine itself is `not-built`
          here: the build scripts make it on the Jetson.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field, field_validator

from edgeq.backend import Artifact, Backend, BackendOptions, Command, Job
from edgeq.errors import EdgeqError
from edgeq.head import HEAD_PREFIX, INPUT_NAME, HeadLayout
from edgeq.rules import Finding, RuleTable, Severity

RULES_DIR = Path(__file__).parent / "rules"


class TensorRTOptions(BackendOptions):
    calibration_method: Literal["max", "entropy"] = "max"  # ModelOpt's activation calibration
    unify_scales: bool = True  # one scale across Concat, SPPF pools, residual Add inputs (no reformat layers)
    build_engine: bool = True  # where `tensorrt` imports: build and evaluate the engine (`measured`)


class DLAOptions(BackendOptions):
    calibration_method: Literal["max", "entropy"] = "max"
    unify_scales: bool = True  # DLA needs equal Concat input/output scales; pooling keeps its input scale
    detach_head: bool = True  # engine ends at box_i/cls_i; DFL, sigmoid and boxes on the host in FP32
    fp16_last_convs: bool = True  # the Conv producing each box_i/cls_i runs FP16 (layer precisions)
    compare_all_int8: bool = True  # also emulate the all-INT8 build (no FP16 last convs) for the report
    emulate_fp16: bool = True  # FP16 layers: weights and outputs rounded to float16 in the emulation
    dla_core: int = Field(0, ge=0, le=1)
    input_format: Literal["dla_hwc4", "chw32"] = "dla_hwc4"
    trt_version: str = "10.3"  # TensorRT that builds on the Jetson (cache header TRT-100300-...); quote it in YAML

    @field_validator("trt_version", mode="before")
    @classmethod
    def _known_version(cls, value: str | float) -> str:
        # YAML reads an unquoted 10.3 as a number; accepted, but 10.10 would read as 10.1: quote versions
        from edgeq_tensorrt.calib_cache import version_code
        from edgeq_tensorrt.dla import check_tensorrt_for_dla

        try:
            value = str(value)
            version_code(value)
            check_tensorrt_for_dla(value)
        except EdgeqError as exc:
            raise ValueError(exc.one_line()) from None
        return str(value)


class TensorRTBackend(Backend):
    family = "tensorrt"
    extra = "tensorrt"
    requires = ("modelopt",)
    targets: ClassVar[dict[str, str]] = {
        "tensorrt": "NVIDIA GPU (Jetson Orin, desktop) through TensorRT: explicit INT8 Q/DQ ONNX from ModelOpt PTQ",
        "dla": "Jetson Orin DLA: ONNX + INT8 calibration cache, FP16 last convs, trtexec/TensorRT build scripts",
    }
    fallback_by_default: ClassVar[dict[str, bool]] = {"tensorrt": True, "dla": True}

    def options_model(self, target: str) -> type[BackendOptions]:
        return DLAOptions if target == "dla" else TensorRTOptions

    # --- check -----------------------------------------------------------------------------------------------

    def check(self, job: Job) -> list[Finding]:
        import onnx

        if job.target != "dla":
            from edgeq.graph import onnx_layers

            return _collapse(RuleTable.load(RULES_DIR / "tensorrt.yaml").evaluate(
                onnx_layers(onnx.load(str(job.full_onnx)))))
        from edgeq_tensorrt.dla import DLA_DROPPED_WARNING, check_onnx, check_tensorrt_for_dla

        check_tensorrt_for_dla()
        opts: DLAOptions = job.options
        model = onnx.load(str(job.body_onnx if opts.detach_head else job.full_onnx))
        report = check_onnx(model, None, _fp16_layers(model, job, opts), opts.input_format)
        findings = _collapse(report.findings)
        findings.append(Finding("dla.tensorrt-version", Severity.WARNING, "model", DLA_DROPPED_WARNING,
                                "build on JetPack 6 with its TensorRT 10.x"))
        return findings

    # --- build -----------------------------------------------------------------------------------------------

    def build(self, job: Job) -> list[Artifact]:
        work = job.staging / ".tensorrt-work"
        try:
            return self._build_dla(job, work) if job.target == "dla" else self._build_gpu(job, work)
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def commands(self) -> list[Command]:
        from edgeq_tensorrt import translate

        return [Command("translate", translate.TRANSLATE_HELP, translate.add_arguments, translate.run)]

    def runner_for(self, path: Path):
        from edgeq_tensorrt.runner import TensorRTRunner, tensorrt_available

        if path.suffix.lower() in (".engine", ".plan") and tensorrt_available():
            return TensorRTRunner(path)
        return None

    def _build_gpu(self, job: Job, work: Path) -> list[Artifact]:
        import onnx

        from edgeq.runners.onnxruntime import OnnxRuntimeRunner
        from edgeq_tensorrt.ptq import calibration_array, modelopt_quantize
        from edgeq_tensorrt.qdq import count_qdq
        from edgeq_tensorrt.runner import build_engine, tensorrt_available
        from edgeq_tensorrt.scripts import write_gpu_shell
        from edgeq_tensorrt.unify import GPU_TIES, unify_scales

        opts: TensorRTOptions = job.options
        out = job.staging / "tensorrt"
        out.mkdir(parents=True, exist_ok=True)
        raw = modelopt_quantize(job.full_onnx, work / "ptq.onnx", calibration_array(job.calibration), work,
                                method=opts.calibration_method, log_path=job.staging.parent / "tensorrt-ptq.log")
        model = onnx.load(str(raw))
        merged = rescaled = 0
        if opts.unify_scales:
            result = unify_scales(model, GPU_TIES, exclude_prefix=HEAD_PREFIX)
            merged, rescaled = result.merged_quantizers, result.rescaled_quantizers
        qdq_path = out / "model-int8-qdq.onnx"
        onnx.save(model, str(qdq_path))
        script = write_gpu_shell(qdq_path.name, out / "build_engine.sh")
        extra = {"merged_quantizers": merged, "rescaled_quantizers": rescaled, "qdq_pairs": count_qdq(model),
                 "calibration_method": opts.calibration_method}
        unified = f"{merged} quantizers merged into shared scales" if opts.unify_scales else "scales not unified"
        artifacts = [Artifact(
            name="tensorrt-int8-qdq", target="tensorrt", variant="int8", path=qdq_path, precision="int8+fp32-head",
            layout=HeadLayout.PIXEL, status="emulated",
            note=f"ModelOpt PTQ ({opts.calibration_method}), decode head in float, {unified}; "
                 "Q/DQ graph run in ONNX Runtime",
            open_runner=lambda: OnnxRuntimeRunner(qdq_path), extra=extra, companions=(script,))]
        engine_path = out / "model-int8.engine"
        if opts.build_engine and tensorrt_available():
            from edgeq_tensorrt.runner import TensorRTRunner

            engine_path.write_bytes(build_engine(qdq_path))
            artifacts.append(Artifact(name="tensorrt-int8-engine", target="tensorrt", variant="int8-engine",
                                      path=engine_path, precision="int8+fp32-head", layout=HeadLayout.PIXEL,
                                      status="measured", note="TensorRT engine built from the Q/DQ ONNX",
                                      open_runner=lambda: TensorRTRunner(engine_path), measure_latency=True,
                                      extra=extra))
        else:
            why = "build_engine is off" if not opts.build_engine else "TensorRT is not installed here"
            artifacts.append(Artifact(name="tensorrt-int8-engine", target="tensorrt", variant="int8-engine",
                                      path=engine_path, precision="int8+fp32-head", layout=HeadLayout.PIXEL,
                                      status="not-built", note=f"{why}: run tensorrt/{script.name} on the target",
                                      extra=extra, companions=(script,)))
        return artifacts

    def _build_dla(self, job: Job, work: Path) -> list[Artifact]:
        import onnx

        from edgeq.runners.onnxruntime import OnnxRuntimeRunner
        from edgeq_tensorrt.calib_cache import write_cache
        from edgeq_tensorrt.dla import check_onnx, check_tensorrt_for_dla
        from edgeq_tensorrt.emulate import emulation_model
        from edgeq_tensorrt.ptq import calibration_array, modelopt_quantize
        from edgeq_tensorrt.scripts import DlaBuild, write_python, write_shell
        from edgeq_tensorrt.translate import precision_config, translate_model
        from edgeq_tensorrt.unify import DLA_TIES, unify_scales

        opts: DLAOptions = job.options
        check_tensorrt_for_dla()
        source = job.body_onnx if opts.detach_head else job.full_onnx
        model = onnx.load(str(source))
        fp16 = _fp16_layers(model, job, opts)
        _refuse(check_onnx(model, None, fp16, opts.input_format).findings, job)

        raw = modelopt_quantize(source, work / "ptq-dla.onnx", calibration_array(job.calibration), work,
                                method=opts.calibration_method, target_dla=True,
                                log_path=job.staging.parent / "dla-ptq.log")
        qdq = onnx.load(str(raw))
        merged = unify_scales(qdq, DLA_TIES, exclude_prefix=HEAD_PREFIX).merged_quantizers if opts.unify_scales else 0
        translation = translate_model(qdq, raw.name)
        activations = _activation_tensors(model)
        scales = {t: translation.scales[t] for t in activations
                  if t in translation.scales and not t.startswith(HEAD_PREFIX)}
        report = check_onnx(model, scales, fp16, opts.input_format)
        _refuse(report.findings, job)
        outputs = tuple(o.name for o in model.graph.output)
        missing = [t for t in activations if t not in scales and t not in outputs and not t.startswith(HEAD_PREFIX)]

        out = job.staging / "dla"
        out.mkdir(parents=True, exist_ok=True)
        onnx_path, cache_path = out / "model.onnx", out / "model.cache"
        onnx.save(model, str(onnx_path))
        write_cache(cache_path, scales, opts.trt_version)
        companions = [cache_path]
        if opts.detach_head:
            head_json = out / "model-head.json"
            job.head.to_json(head_json)
            companions.append(head_json)
        precision_path = out / "model-precision.json"
        config = precision_config(translation)
        config.update(fp16_layers=fp16, int8_tensor_scales=scales, tensors_without_scale=missing)
        precision_path.write_text(json.dumps(config, indent=2))
        layers_md = out / "model-dla-layers.md"
        layers_md.write_text(report.markdown(f"DLA layer placement: {onnx_path.name} ({len(scales)} INT8 scales)"))
        build = DlaBuild(onnx=onnx_path.name, cache=cache_path.name, outputs=outputs, fp16_layers=tuple(fp16),
                         dla_core=opts.dla_core, input_format=opts.input_format,
                         standalone_default=not job.allow_fallback)
        shell, python = write_shell(build, out / "build_dla.sh"), write_python(build, out / "build_dla.py")
        companions += [precision_path, layers_md, shell, python]

        layout = HeadLayout.DETACHED if opts.detach_head else HeadLayout.PIXEL
        head_fp16 = [n.name for n in model.graph.node if n.name.startswith(HEAD_PREFIX)]
        gpu_layers = len(report.fallbacks)
        extra = {"merged_quantizers": merged, "int8_scales": len(scales), "dla_subgraphs": report.subgraphs,
                 "gpu_fallback_layers": gpu_layers, "fp16_layers": len(fp16), "calibration_method":
                 opts.calibration_method, "tensors_without_scale": len(missing)}
        placement = (f"{len(report.placements) - gpu_layers}/{len(report.placements)} layers on DLA, "
                     f"{report.subgraphs} DLA subgraph(s)")
        variants = []
        if opts.fp16_last_convs:
            variants.append(("dla-int8-fp16-last-convs", "int8-fp16-last-convs", fp16, "int8+fp16",
                             f"INT8, last head convs in FP16 ({len(fp16) - len(head_fp16)} layers)"))
        if opts.compare_all_int8 or not opts.fp16_last_convs:
            variants.append(("dla-int8", "int8", head_fp16, "int8", "all convolutions INT8"))
        artifacts = []
        for name, variant, fp16_set, precision, what in variants:
            emulated = out / "emulation" / f"{name}.onnx"
            emulated.parent.mkdir(exist_ok=True)
            onnx.save(emulation_model(model, scales, fp16_set, cast_fp16=opts.emulate_fp16), str(emulated))
            is_default = fp16_set is fp16
            artifacts.append(Artifact(
                name=name, target="dla", variant=variant, path=onnx_path if is_default else emulated,
                precision=precision, layout=layout, status="emulated",
                note=f"{what}; engine numerics rebuilt from model.cache in ONNX Runtime; {placement}"
                     + ("" if is_default else " (comparison: same model.onnx + cache, no --layerPrecisions)"),
                open_runner=(lambda p=emulated: OnnxRuntimeRunner(p)), extra=dict(extra),
                companions=tuple(companions) if is_default else ()))
        artifacts.append(self._dla_engine(job, out, onnx_path, cache_path, fp16, layout, extra, (shell, python)))
        return artifacts

    def _dla_engine(self, job: Job, out: Path, onnx_path: Path, cache_path: Path, fp16: list[str],
                    layout: HeadLayout, extra: dict, scripts: tuple[Path, Path]) -> Artifact:
        """Where TensorRT sees a DLA core (on the Jetson): build and run the engine (`measured`); else `not-built`."""
        from edgeq_tensorrt.runner import TensorRTRunner, build_engine, dla_cores, tensorrt_available

        opts: DLAOptions = job.options
        standalone = not job.allow_fallback
        if tensorrt_available() and dla_cores() > opts.dla_core:
            engine_path = out / "model.engine"  # float I/O for the evaluator; the deployable build is build_dla.sh
            engine_path.write_bytes(build_engine(onnx_path, calib_cache=cache_path, fp16_layers=fp16,
                                                 dla_core=opts.dla_core, gpu_fallback=job.allow_fallback))
            return Artifact(name="dla-engine", target="dla", variant="engine", path=engine_path,
                            precision="int8+fp16", layout=layout, status="measured",
                            note=f"TensorRT engine on DLA core {opts.dla_core} from model.onnx + model.cache",
                            open_runner=lambda: TensorRTRunner(engine_path, opts.dla_core), measure_latency=True,
                            extra=dict(extra), companions=scripts)
        why = "TensorRT is not installed here" if not tensorrt_available() else "this TensorRT sees no DLA core"
        return Artifact(
            name="dla-engine", target="dla", variant="engine",
            path=out / ("model.loadable" if standalone else "model.engine"), precision="int8+fp16", layout=layout,
            status="not-built",
            note=f"{why}: on the Jetson run dla/{scripts[0].name} "
                 f"({'standalone loadable' if standalone else 'GPU fallback allowed'}) or dla/{scripts[1].name}",
            extra=dict(extra), companions=scripts)


def _collapse(findings: list[Finding]) -> list[Finding]:
    """Warnings of one rule become one finding naming the first layers (the per-layer table has them all);
    errors and fallbacks stay one per layer."""
    out, warned = [], {}
    for f in findings:
        if f.severity is Severity.WARNING:
            warned.setdefault(f.rule, []).append(f)
        else:
            out.append(f)
    for rule, group in warned.items():
        where = group[0].where if len(group) == 1 else \
            f"{len(group)} layers ({', '.join(g.where for g in group[:3])}{', ...' if len(group) > 3 else ''})"
        out.append(Finding(rule, Severity.WARNING, where, group[0].message, group[0].fix))
    return out


def _refuse(findings: list[Finding], job: Job) -> None:
    """Errors always stop the DLA build; GPU fallbacks stop it under --no-gpu-fallback."""
    blocking = [f for f in findings if f.severity is Severity.ERROR
                or (f.severity is Severity.FALLBACK and not job.allow_fallback)]
    if not blocking:
        return
    first = blocking[0]
    more = f" (and {len(blocking) - 1} more)" if len(blocking) > 1 else ""
    hint = "" if first.severity is Severity.ERROR else "; or allow GPU fallback (drop --no-gpu-fallback)"
    raise EdgeqError(f"dla: {first.where}: {first.message}{more}", first.fix + hint)


def last_head_convs(model, outputs: list[str]) -> list[str]:
    """The Conv nodes producing the per-scale head outputs (box_i, cls_i): the final conv of each cv2/cv3 branch."""
    producers = {o: n for n in model.graph.node for o in n.output}
    found = []
    for name in outputs:
        node = producers.get(name)
        while node is not None and node.op_type != "Conv" and node.input:  # look through Identity/Cast/...
            node = producers.get(node.input[0])
        if node is not None and node.op_type == "Conv":
            found.append(node.name)
    return found


def _fp16_layers(model, job: Job, opts: DLAOptions) -> list[str]:
    layers = last_head_convs(model, job.head.body_outputs) if opts.fp16_last_convs else []
    if not opts.detach_head:  # the decode head in the engine: FP16, never INT8 (pixels and scores)
        layers += [n.name for n in model.graph.node if n.name.startswith(HEAD_PREFIX)]
    return layers


def _activation_tensors(model) -> list[str]:
    consts = {i.name for i in model.graph.initializer}
    names = [i.name for i in model.graph.input if i.name not in consts]
    names += [o for n in model.graph.node if n.op_type != "Constant" for o in n.output if o]
    return names


__all__ = ["INPUT_NAME", "DLAOptions", "TensorRTBackend", "TensorRTOptions", "last_head_convs"]
