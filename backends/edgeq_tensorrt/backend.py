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
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from edgeq.plugin import (
    HEAD_PREFIX,
    INPUT_NAME,
    Artifact,
    Backend,
    BackendOptions,
    BuildResult,
    Command,
    DeploySteps,
    EdgeqError,
    Finding,
    HeadLayout,
    Job,
    Precision,
    QuantPlan,
    Role,
    RuleTable,
    Severity,
    TargetProfile,
    load_profiles,
)

HERE = Path(__file__).parent


class TensorRTOptions(BackendOptions):
    # The activation calibration is the recipe's calibration.method (profiles.yaml lists what is offered). Its
    # default, ModelOpt's entropy (TensorRT's IInt8EntropyCalibrator2 criterion), clips the rare outliers that
    # max keeps: YOLO26n's GPU Q/DQ graph lost 1.12 mAP50-95 points with max, 0.36 with entropy; on DLA 1.08 -> 0.28.
    unify_scales: bool = True  # one scale across Concat, SPPF pools, residual Add inputs (no reformat layers)
    build_engine: bool = True  # where `tensorrt` imports: build and evaluate the engine (`measured`)


class DLAOptions(BackendOptions):
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


class TensorRTDeploy(BaseModel):
    """What the target's deploy kit says (edgeq.deploy): the device, its TensorRT, what to build there."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    device_needs: str
    build: tuple[str, ...]
    run_example: str
    input_note: str = ""


class TensorRTProfile(TargetProfile):
    build: Literal["gpu-qdq", "dla-cache"]  # which of the family's build pipelines the target uses
    deploy: TensorRTDeploy


class TensorRTBackend(Backend):
    family = "tensorrt"
    extra = "tensorrt"
    requires = ("modelopt", "onnx_graphsurgeon", "onnxscript", "lief")  # ModelOpt ONNX PTQ imports all three
    tools = ("nvidia-modelopt", "tensorrt")
    profiles = load_profiles(HERE / "profiles.yaml", TensorRTProfile)

    def options_model(self, target: str) -> type[BackendOptions]:
        return _PIPELINES[self.profiles[target].build].options

    def check(self, job: Job) -> list[Finding]:
        return _PIPELINES[job.profile.build]().check(job)

    def quant_plan(self, job: Job) -> QuantPlan:
        """The profile's scheme, without shared scales when `unify_scales` is off; DLA's FP16 last convolutions are
        layers it already keeps out of INT8."""
        scheme = job.profile.quantization
        if not job.options.unify_scales:
            scheme = scheme.model_copy(update={"unified": ()})
        float_layers = {}
        if job.profile.build == "dla-cache" and job.options.fp16_last_convs:
            model = job.graph(_dla_source(job))
            float_layers = {n: "FP16 on DLA (options.fp16_last_convs)"
                            for n in last_head_convs(model, job.head.body_outputs)}
        return QuantPlan(scheme, float_layers=float_layers)

    def build(self, job: Job) -> BuildResult:
        work = job.staging / ".tensorrt-work"
        try:
            return _PIPELINES[job.profile.build]().build(job, work)
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def deploy_steps(self, job: Job, artifacts: list[Artifact]) -> DeploySteps:
        deploy: TensorRTDeploy = job.profile.deploy
        return DeploySteps(runtime="TensorRT's Python bindings with cuda-python (the engine is built on the device "
                           "itself: engines do not move between TensorRT versions or GPUs)",
                           device_needs=deploy.device_needs, script=HERE / "kit_infer.py", build=deploy.build,
                           input_note=deploy.input_note, run_example=deploy.run_example)

    def quantization_aware(self, target: str):
        from edgeq_tensorrt.qat import ModelOptQuantAwareTraining

        return ModelOptQuantAwareTraining

    def commands(self) -> list[Command]:
        from edgeq_tensorrt import translate

        return [Command("translate", translate.TRANSLATE_HELP, translate.add_arguments, translate.run)]

    def runner_for(self, path: Path):
        from edgeq_tensorrt.runner import TensorRTRunner, tensorrt_available

        if path.suffix.lower() in (".engine", ".plan") and tensorrt_available():
            return TensorRTRunner(path)
        return None


class GpuQdqPipeline:
    """GPU: ModelOpt PTQ (decode head in float) -> unified scales -> Q/DQ ONNX -> engine where TensorRT is."""

    options = TensorRTOptions

    def check(self, job: Job) -> list[Finding]:
        from edgeq.plugin import onnx_layers

        table = RuleTable.load(HERE / job.profile.rules["onnx"])
        return _collapse(table.evaluate(onnx_layers(job.graph(job.full_onnx))))

    def build(self, job: Job, work: Path) -> BuildResult:
        out = job.staging / job.target
        out.mkdir(parents=True, exist_ok=True)
        qdq_path, extra = self._quantize(job, work, out)
        from edgeq_tensorrt.scripts import write_gpu_shell

        script = write_gpu_shell(qdq_path.name, out / "build_engine.sh")
        artifacts = [self._qdq_artifact(job, qdq_path, extra, script)]
        if job.qat_onnx is not None:
            qat_path, qat_extra = self._quantize(job, work / "qat", out, source=_qat_full(job, work),
                                                 name="model-int8-qat-qdq.onnx")
            qat_script = write_gpu_shell(qat_path.name, out / "build_engine_qat.sh")
            artifacts.insert(0, self._qdq_artifact(job, qat_path, qat_extra, qat_script, qat=True))
        if not job.primary_only:
            artifacts.append(self._engine_artifact(job, qdq_path, out / "model-int8.engine", extra, script))
        return BuildResult(artifacts)

    def _quantize(self, job: Job, work: Path, out: Path, source: Path | None = None,
                  name: str = "model-int8-qdq.onnx") -> tuple[Path, dict]:
        import onnx

        from edgeq_tensorrt.ptq import calibrate_qdq
        from edgeq_tensorrt.qdq import count_qdq
        from edgeq_tensorrt.unify import unify_scales

        work.mkdir(parents=True, exist_ok=True)
        model, method = calibrate_qdq(job, source or job.full_onnx, work / "ptq.onnx", work, target_dla=False,
                                      log_path=job.log_dir / "tensorrt-ptq.log")
        result = unify_scales(model, job.plan.scheme.unified, exclude_prefix=HEAD_PREFIX)
        merged, rescaled = result.merged_quantizers, result.rescaled_quantizers
        qdq_path = out / name
        onnx.save(model, str(qdq_path))
        return qdq_path, {"merged_quantizers": merged, "rescaled_quantizers": rescaled,
                          "qdq_pairs": count_qdq(model), "calibration_method": method,
                          "kept_float": list(job.keep_float)}

    def _qdq_artifact(self, job: Job, qdq_path: Path, extra: dict, script: Path, qat: bool = False) -> Artifact:
        from edgeq.plugin import OnnxRuntimeRunner

        unified = f"{extra['merged_quantizers']} quantizers merged into shared scales" if job.plan.scheme.unified \
            else "scales not unified"
        kept = f", {len(job.keep_float)} layer(s) kept out of INT8" if job.keep_float else ""
        what = (f"QAT weights, Q/DQ placed and calibrated on them by ModelOpt PTQ ({extra['calibration_method']})"
                if qat else f"ModelOpt PTQ ({extra['calibration_method']})")
        return Artifact(
            name=f"{job.target}-int8-{'qat-' if qat else ''}qdq", target=job.target,
            variant="int8-qat" if qat else "int8", path=qdq_path, role=Role.QAT if qat else Role.DEPLOYABLE,
            precision=Precision.int8(head="fp32", keep=job.keep_float), layout=HeadLayout.PIXEL,
            status=job.profile.figures,
            note=f"{what}, decode head in float{kept}, {unified}; Q/DQ graph run in ONNX Runtime",
            open_runner=lambda: OnnxRuntimeRunner(qdq_path), extra=extra, companions=(script,))

    def _engine_artifact(self, job: Job, qdq_path: Path, engine_path: Path, extra: dict, script: Path) -> Artifact:
        from edgeq_tensorrt.runner import build_engine, tensorrt_available

        opts: TensorRTOptions = job.options
        common = {"name": f"{job.target}-int8-engine", "target": job.target, "variant": "int8-engine",
                  "path": engine_path, "precision": Precision.int8(head="fp32", keep=job.keep_float),
                  "layout": HeadLayout.PIXEL, "extra": extra, "role": Role.COMPARISON}
        if opts.build_engine and tensorrt_available():
            from edgeq_tensorrt.runner import TensorRTRunner

            engine_path.write_bytes(build_engine(qdq_path))
            return Artifact(**common, status="measured", note="TensorRT engine built from the Q/DQ ONNX",
                            open_runner=lambda: TensorRTRunner(engine_path), measure_latency=True)
        why = "build_engine is off" if not opts.build_engine else "TensorRT is not installed here"
        return Artifact(**common, status="not-built", note=f"{why}: run {job.target}/{script.name} on the target",
                        companions=(script,))


@dataclass
class _DlaCalibration:
    """What calibration gave the DLA build: INT8 scales per activation tensor, and how they were made."""

    scales: dict[str, float]
    missing: list[str]  # activation tensors without a scale (they run FP16)
    merged_quantizers: int
    config: dict  # the precision config translated from the Q/DQ graph
    method: str  # how the activation ranges were calibrated, for the report


class DlaCachePipeline:
    """DLA: plan (what runs FP16) -> calibrate (ModelOpt Q/DQ on every tensor, unified, translated to scales)
    -> check placement with the scales -> emit model.onnx + model.cache + build scripts -> describe the
    emulated variants and the engine."""

    options = DLAOptions

    def check(self, job: Job) -> list[Finding]:
        from edgeq_tensorrt.dla import DLA_DROPPED_WARNING, check_tensorrt_for_dla

        check_tensorrt_for_dla()
        report = _unscaled_placement(job)
        findings = _collapse(report.findings)
        findings.append(Finding("dla.tensorrt-version", Severity.WARNING, "model", DLA_DROPPED_WARNING,
                                "build on JetPack 6 with its TensorRT 10.x"))
        return findings

    def build(self, job: Job, work: Path) -> BuildResult:
        import onnx

        from edgeq_tensorrt.dla import check_onnx, check_tensorrt_for_dla

        opts: DLAOptions = job.options
        check_tensorrt_for_dla()
        source = _dla_source(job)
        model = job.graph(source)  # read-only here: the emulation and the emitters copy what they change
        fp16 = _fp16_layers(model, job, opts)
        job.fallback.enforce(_unscaled_placement(job).findings)  # before calibration; the same report `check` made
        calibration = self._calibrate(job, source, model, work)
        # the rules again, now with the scales (unequal Concat scales move layers off the DLA)
        report = check_onnx(model, calibration.scales, fp16, opts.input_format)
        job.fallback.enforce(report.findings)
        out = job.staging / job.target
        out.mkdir(parents=True, exist_ok=True)
        files = self._emit(job, model, fp16, calibration, report, out)
        layout = HeadLayout.DETACHED if opts.detach_head else HeadLayout.PIXEL
        extra = {"merged_quantizers": calibration.merged_quantizers, "int8_scales": len(calibration.scales),
                 "dla_subgraphs": report.subgraphs, "gpu_fallback_layers": len(report.fallbacks),
                 "fp16_layers": len(fp16), "calibration_method": calibration.method,
                 "tensors_without_scale": len(calibration.missing), "kept_float": list(job.keep_float)}
        artifacts = self._emulated_variants(job, model, fp16, calibration, report, files, layout, extra, out)
        if job.qat_onnx is not None:
            qat_model = onnx.load(str(job.qat_onnx if opts.detach_head else _qat_full(job, work)))
            qat_out = job.staging / f"{job.target}-qat"
            qat_out.mkdir(parents=True, exist_ok=True)
            qat_files = self._emit(job, qat_model, fp16, calibration, report, qat_out)
            artifacts[:0] = self._emulated_variants(job, qat_model, fp16, calibration, report, qat_files, layout,
                                                    extra, qat_out, qat=True)[:1]
        if not job.primary_only:
            artifacts.append(self._engine(job, out, files, fp16, layout, extra))
        return BuildResult(artifacts)

    def _calibrate(self, job: Job, source: Path, model, work: Path) -> _DlaCalibration:
        from edgeq_tensorrt.ptq import calibrate_qdq
        from edgeq_tensorrt.translate import precision_config, translate_model
        from edgeq_tensorrt.unify import unify_scales

        qdq, method = calibrate_qdq(job, source, work / "ptq-dla.onnx", work, target_dla=True,
                                    log_path=job.log_dir / "dla-ptq.log")
        raw = work / "ptq-dla.onnx"
        merged = unify_scales(qdq, job.plan.scheme.unified, exclude_prefix=HEAD_PREFIX).merged_quantizers
        translation = translate_model(qdq, raw.name)
        activations = _activation_tensors(model)
        scales = {t: translation.scales[t] for t in activations
                  if t in translation.scales and not t.startswith(HEAD_PREFIX)}
        outputs = {o.name for o in model.graph.output}
        missing = [t for t in activations if t not in scales and t not in outputs and not t.startswith(HEAD_PREFIX)]
        return _DlaCalibration(scales=scales, missing=missing, merged_quantizers=merged,
                               config=precision_config(translation), method=method)

    def _emit(self, job: Job, model, fp16: list[str], calibration: _DlaCalibration, report, out: Path) -> _DlaFiles:
        """model.onnx, model.cache, the precision config, the layer table and the build scripts."""
        import onnx

        from edgeq_tensorrt.calib_cache import write_cache
        from edgeq_tensorrt.scripts import DlaBuild, write_python, write_shell

        opts: DLAOptions = job.options
        onnx_path, cache_path = out / "model.onnx", out / "model.cache"
        onnx.save(model, str(onnx_path))
        write_cache(cache_path, calibration.scales, opts.trt_version)
        companions = [cache_path]
        if opts.detach_head:
            head_json = out / "model-head.json"
            job.head.to_json(head_json)
            companions.append(head_json)
        precision_path = out / "model-precision.json"
        config = dict(calibration.config, fp16_layers=fp16, int8_tensor_scales=calibration.scales,
                      tensors_without_scale=calibration.missing)
        precision_path.write_text(json.dumps(config, indent=2))
        layers_md = out / "model-dla-layers.md"
        layers_md.write_text(report.markdown(f"DLA layer placement: {onnx_path.name} "
                                             f"({len(calibration.scales)} INT8 scales)"))
        build = DlaBuild(onnx=onnx_path.name, cache=cache_path.name, outputs=tuple(o.name for o in model.graph.output),
                         fp16_layers=tuple(fp16), dla_core=opts.dla_core, input_format=opts.input_format,
                         standalone_default=not job.fallback.allowed)
        scripts = (write_shell(build, out / "build_dla.sh"), write_python(build, out / "build_dla.py"))
        return _DlaFiles(onnx=onnx_path, cache=cache_path, companions=(*companions, precision_path, layers_md,
                                                                       *scripts), scripts=scripts)

    def _emulated_variants(self, job: Job, model, fp16: list[str], calibration: _DlaCalibration, report,
                           files: _DlaFiles, layout: HeadLayout, extra: dict, out: Path,
                           qat: bool = False) -> list[Artifact]:
        """The engine's numerics rebuilt from the cache for ONNX Runtime, with and without FP16 last convs."""
        import onnx

        from edgeq.plugin import OnnxRuntimeRunner
        from edgeq_tensorrt.emulate import emulation_model

        opts: DLAOptions = job.options
        head_fp16 = [n.name for n in model.graph.node if n.name.startswith(HEAD_PREFIX)]
        gpu_layers = len(report.fallbacks)
        placement = (f"{len(report.placements) - gpu_layers}/{len(report.placements)} layers on DLA, "
                     f"{report.subgraphs} DLA subgraph(s)")
        kept = f", {len(job.keep_float)} more layer(s) kept in FP16" if job.keep_float else ""
        variants = []
        if opts.fp16_last_convs:
            last = len(fp16) - len(head_fp16) - len(job.keep_float)
            variants.append((f"{job.target}-int8-fp16-last-convs", "int8-fp16-last-convs", fp16,
                             f"INT8, last head convs in FP16 ({last} layers){kept}"))
        if not opts.fp16_last_convs:  # the default build is all-INT8 (plus the layers kept)
            variants.append((f"{job.target}-int8", "int8", fp16, f"all convolutions INT8{kept}"))
        elif opts.compare_all_int8 and not job.primary_only:
            variants.append((f"{job.target}-int8", "int8", head_fp16, "all convolutions INT8"))
        if qat:  # QAT weights with the cache of the PTQ calibration their training started from (and kept)
            variants = [(f"{n}-qat", f"{v}-qat", f, f"QAT weights, the PTQ cache they trained against; {w}")
                        for n, v, f, w in variants]
        artifacts = []
        for index, (name, variant, fp16_set, what) in enumerate(variants):
            emulated = out / "emulation" / f"{name}.onnx"
            emulated.parent.mkdir(exist_ok=True)
            onnx.save(emulation_model(model, calibration.scales, fp16_set, cast_fp16=opts.emulate_fp16),
                      str(emulated))
            is_default = index == 0  # the others reproduce another build of the same model.onnx + cache
            role = (Role.QAT if qat else Role.DEPLOYABLE) if is_default else Role.EMULATION
            artifacts.append(Artifact(
                name=name, target=job.target, variant=variant, path=files.onnx if is_default else emulated,
                precision=_dla_precision(fp16_set, layout), role=role, layout=layout,
                status=job.profile.figures,
                note=f"{what}; engine numerics rebuilt from model.cache in ONNX Runtime; {placement}"
                     + ("" if is_default else " (comparison: same model.onnx + cache, no --layerPrecisions)"),
                open_runner=(lambda p=emulated: OnnxRuntimeRunner(p)), extra=dict(extra),
                companions=files.companions if is_default else ()))
        return artifacts

    def _engine(self, job: Job, out: Path, files: _DlaFiles, fp16: list[str], layout: HeadLayout,
                extra: dict) -> Artifact:
        """Where TensorRT sees a DLA core (on the Jetson): build and run the engine (`measured`); else `not-built`."""
        from edgeq_tensorrt.runner import TensorRTRunner, build_engine, dla_cores, tensorrt_available

        opts: DLAOptions = job.options
        allowed = job.fallback.allowed
        scripts = files.scripts
        if tensorrt_available() and dla_cores() > opts.dla_core:
            engine_path = out / "model.engine"  # float I/O for the evaluator; the deployable build is build_dla.sh
            engine_path.write_bytes(build_engine(files.onnx, calib_cache=files.cache, fp16_layers=fp16,
                                                 dla_core=opts.dla_core, gpu_fallback=allowed))
            return Artifact(name=f"{job.target}-engine", target=job.target, variant="engine", path=engine_path,
                            precision=_dla_precision(fp16, layout), role=Role.COMPARISON, layout=layout,
                            status="measured",
                            note=f"TensorRT engine on DLA core {opts.dla_core} from model.onnx + model.cache",
                            open_runner=lambda: TensorRTRunner(engine_path, opts.dla_core), measure_latency=True,
                            extra=dict(extra), companions=scripts)
        why = "TensorRT is not installed here" if not tensorrt_available() else "this TensorRT sees no DLA core"
        return Artifact(
            name=f"{job.target}-engine", target=job.target, variant="engine",
            path=out / ("model.engine" if allowed else "model.loadable"), precision=_dla_precision(fp16, layout),
            role=Role.COMPARISON, layout=layout, status="not-built",
            note=f"{why}: on the Jetson run {job.target}/{scripts[0].name} "
                 f"({'GPU fallback allowed' if allowed else 'standalone loadable'}) or {job.target}/{scripts[1].name}",
            extra=dict(extra), companions=scripts)


@dataclass(frozen=True)
class _DlaFiles:
    onnx: Path
    cache: Path
    companions: tuple[Path, ...]  # deployed with model.onnx: cache, head JSON, precision config, table, scripts
    scripts: tuple[Path, Path]  # build_dla.sh, build_dla.py


_PIPELINES = {"gpu-qdq": GpuQdqPipeline, "dla-cache": DlaCachePipeline}


def _qat_full(job: Job, work: Path) -> Path:
    """The QAT body with edgeq's decode head attached (float), as the PTQ's full ONNX is."""
    import onnx

    from edgeq.plugin import attach_head

    work.mkdir(parents=True, exist_ok=True)
    path = work / "qat-full.onnx"
    onnx.save(attach_head(onnx.load(str(job.qat_onnx)), job.head, HeadLayout.PIXEL), str(path))
    return path


def _unscaled_placement(job: Job):
    """The DLA rule table on the graph before calibration (no scales yet), once per run and set of FP16 layers."""
    from edgeq_tensorrt.dla import check_onnx

    model = job.graph(_dla_source(job))
    fp16 = _fp16_layers(model, job, job.options)
    return job.once(("dla-placement", _dla_source(job), tuple(fp16), job.options.input_format),
                    lambda: check_onnx(model, None, fp16, job.options.input_format))


def _dla_source(job: Job) -> Path:
    """The graph the DLA engine is built from: the body (head decoded on the host) or the full model."""
    return job.body_onnx if job.options.detach_head else job.full_onnx


def _dla_precision(fp16_layers: list[str], layout: HeadLayout) -> Precision:
    """INT8 with the FP16 layers named; the decode head in FP32 on the host, or FP16 inside the engine."""
    body = [n for n in fp16_layers if not n.startswith(HEAD_PREFIX)]
    return Precision.int8(head="fp32" if layout is HeadLayout.DETACHED else "fp16", keep=body, kept_as="fp16")


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
    """Layers built in FP16: the last head convs (option), the decode head when it stays in the engine (FP16,
    never INT8: pixels and scores), and the layers the user or the search keeps out of INT8."""
    layers = last_head_convs(model, job.head.body_outputs) if opts.fp16_last_convs else []
    if not opts.detach_head:
        layers += [n.name for n in model.graph.node if n.name.startswith(HEAD_PREFIX)]
    kept = [n for layer in job.keep_float for n in (*_fused_producers(model, layer), layer)]
    return list(dict.fromkeys([*layers, *kept]))


_POINTWISE = ("Sigmoid", "Mul", "Relu", "Clip", "LeakyRelu", "HardSwish", "HardSigmoid")


def _fused_producers(model, layer: str) -> list[str]:
    """The conv (+ fused activation) writing `layer`'s input. An INT8 layer writes INT8, so a layer kept in FP16
    on DLA reads an FP16 tensor only if the layer that makes it runs FP16 too: keeping a conv means keeping the
    Conv + SiLU before it as well."""
    nodes = {n.name: n for n in model.graph.node}
    producers = {o: n for n in model.graph.node for o in n.output}
    if layer not in nodes or not nodes[layer].input:
        return []
    found, node = [], producers.get(nodes[layer].input[0])
    while node is not None:
        found.append(node.name)
        if node.op_type not in _POINTWISE:
            break
        node = producers.get(node.input[0])
    return found


def _activation_tensors(model) -> list[str]:
    consts = {i.name for i in model.graph.initializer}
    names = [i.name for i in model.graph.input if i.name not in consts]
    names += [o for n in model.graph.node if n.op_type != "Constant" for o in n.output if o]
    return names


__all__ = ["INPUT_NAME", "DLAOptions", "TensorRTBackend", "TensorRTOptions", "last_head_convs"]
