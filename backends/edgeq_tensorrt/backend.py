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

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

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
    log,
)

HERE = Path(__file__).parent


class _GenerationOptions(BackendOptions):
    """Which TensorRT generations the export builds for (each in its own subfolder), and for which Jetson."""

    tensorrt: Literal["10", "11", "both"] = "both"  # 10: JetPack 6 (weakly typed); 11: JetPack 7 (strongly typed)
    jetson: Literal["agx-orin", "orin-nx", "orin-nano", "thor"] | None = None  # the device, where a recipe says it

    @field_validator("tensorrt", mode="before")
    @classmethod
    def _generation(cls, value):
        text = str(value).strip()
        if text not in ("10", "11", "both"):
            raise ValueError(f"'{value}' is not a TensorRT generation edgeq builds for: 10 (JetPack 6), "
                             "11 (JetPack 7) or both")
        return text

    @model_validator(mode="after")
    def _device_has_it(self):
        from edgeq_tensorrt.generations import check_device

        try:
            check_device(self.jetson, self.tensorrt, dla=isinstance(self, DLAOptions))
        except EdgeqError as exc:
            raise ValueError(exc.one_line()) from None
        return self


class TensorRTOptions(_GenerationOptions):
    # The activation calibration is the recipe's calibration.method (profiles.yaml lists what is offered). Its
    # default, ModelOpt's entropy (TensorRT's IInt8EntropyCalibrator2 criterion), clips the rare outliers that
    # max keeps: YOLO26n's GPU Q/DQ graph lost 1.12 mAP50-95 points with max, 0.36 with entropy; on DLA 1.08 -> 0.28.
    unify_scales: bool = True  # one scale across Concat, SPPF pools, residual Add inputs (no reformat layers)
    build_engine: bool = True  # where `tensorrt` imports: build and evaluate the engine (`measured`)


class DLAOptions(_GenerationOptions):
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
    build: dict[str, tuple[str, ...]]  # per TensorRT generation; `{folder}` is its subfolder
    run_example: str  # for the shipped (first) generation
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
        work = job.staging / f".{job.target}-work"  # one per target: --jobs builds a family's targets at once
        try:
            return _PIPELINES[job.profile.build]().build(job, work)
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def deploy_steps(self, job: Job, artifacts: list[Artifact]) -> DeploySteps:
        from edgeq_tensorrt.generations import selected

        deploy: TensorRTDeploy = job.profile.deploy
        gens = selected(job.options.tensorrt)
        build = tuple(line for g in gens for line in (f"# {g.jetpack}:",
                                                      *(c.format(folder=g.folder) for c in deploy.build[g.name])))
        return DeploySteps(runtime="TensorRT's Python bindings with cuda-python, TensorRT 10 or 11 (the engine is "
                           "built on the device itself: engines do not move between TensorRT versions or GPUs)",
                           device_needs=deploy.device_needs, script=HERE / "kit_infer.py", build=build,
                           input_note=deploy.input_note, run_example=deploy.run_example.format(folder=gens[0].folder))

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
        gens = _generations_built(job)
        artifacts = self._generations(job, work, out, gens, job.full_onnx, qat=False)
        if job.qat_onnx is not None:
            artifacts[:0] = self._generations(job, work / "qat", out, gens, _qat_full(job, work), qat=True)
        return BuildResult(artifacts)

    def _generations(self, job: Job, work: Path, out: Path, gens, source: Path, qat: bool) -> list[Artifact]:
        """One calibration, then per generation its ONNX, build script and engine row: TensorRT 10 builds the
        Q/DQ ONNX with --int8 --fp16; TensorRT 11 builds the same Q/DQ ONNX with its float layers typed FP16."""
        from edgeq_tensorrt.autocast import autocast_fp16
        from edgeq_tensorrt.ptq import calibration_array
        from edgeq_tensorrt.scripts import write_gpu_shell

        suffix = "-qat" if qat else ""
        folders = {g.name: out / g.folder for g in gens}
        for folder in folders.values():
            folder.mkdir(parents=True, exist_ok=True)
        first = folders["10"] if "10" in folders else work
        qdq_path, extra = self._quantize(job, work, first, source=source, name=f"model-int8{suffix}-qdq.onnx")
        artifacts, engines = [], []
        for gen in gens:
            path, gen_extra = qdq_path, dict(extra, tensorrt=gen.name)
            if gen.name == "11":
                path = folders["11"] / f"model-int8{suffix}-qdq-fp16.onnx"
                gen_extra.update(autocast_fp16(qdq_path, path, calibration_array(job.calibration), work,
                                               job.log_dir / f"tensorrt-autocast{suffix}.log"))
            script = write_gpu_shell(path.name, folders[gen.name] / f"build_engine{'_qat' if qat else ''}.sh",
                                     gen.name)
            shipped = not artifacts  # the first generation is the one the target ships; the other is beside it
            artifacts.append(self._qdq_artifact(job, path, gen_extra, script, gen, qat=qat, shipped=shipped))
            if not qat and not job.primary_only:
                engines.append(self._engine_artifact(job, path, folders[gen.name] / "model-int8.engine", gen_extra,
                                                     script, gen))
        return artifacts + engines

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

    def _qdq_artifact(self, job: Job, qdq_path: Path, extra: dict, script: Path, gen, qat: bool = False,
                      shipped: bool = True) -> Artifact:
        from edgeq.plugin import OnnxRuntimeRunner

        unified = f"{extra['merged_quantizers']} quantizers merged into shared scales" if job.plan.scheme.unified \
            else "scales not unified"
        kept = f", {len(job.keep_float)} layer(s) kept out of INT8" if job.keep_float else ""
        what = (f"QAT weights, Q/DQ placed and calibrated on them by ModelOpt PTQ ({extra['calibration_method']})"
                if qat else f"ModelOpt PTQ ({extra['calibration_method']})")
        if gen.name == "11":
            typed = (f"float layers typed FP16 by ModelOpt AutoCast ({extra['fp16_nodes']} FP16, "
                     f"{extra['fp32_nodes']} FP32 nodes), decode head FP32")
            label, suffix = "int8-qdq-fp16", "-trt11"
        else:
            typed, label, suffix = "decode head in float", "int8-qdq", ""
        role = _shipped_role(qat, shipped)
        return Artifact(
            name=f"{job.target}{suffix}-int8-{'qat-' if qat else ''}{label.removeprefix('int8-')}", target=job.target,
            variant=("int8-qat" if qat else "int8") + suffix, path=qdq_path, role=role,
            precision=Precision.int8(head="fp32", keep=job.keep_float), layout=HeadLayout.PIXEL,
            status=job.profile.figures,
            note=f"{gen.label} ({gen.folder}/): {what}, {typed}{kept}, {unified}; Q/DQ graph run in ONNX Runtime",
            open_runner=lambda: OnnxRuntimeRunner(qdq_path), extra=extra, companions=(script,))

    def _engine_artifact(self, job: Job, qdq_path: Path, engine_path: Path, extra: dict, script: Path,
                         gen) -> Artifact:
        from edgeq_tensorrt.runner import build_engine, installed_version

        opts: TensorRTOptions = job.options
        suffix = "" if gen.name == "10" else "-trt11"
        common = {"name": f"{job.target}{suffix}-int8-engine", "target": job.target,
                  "variant": f"int8-engine{suffix}", "path": engine_path,
                  "precision": Precision.int8(head="fp32", keep=job.keep_float),
                  "layout": HeadLayout.PIXEL, "extra": extra, "role": Role.COMPARISON}
        here = installed_version()
        if opts.build_engine and here and gen.gpu.contains(here):
            from edgeq_tensorrt.runner import TensorRTRunner

            engine_path.write_bytes(build_engine(qdq_path))
            return Artifact(**common, status="measured", note=f"{gen.label}: engine built from {qdq_path.name}",
                            open_runner=lambda: TensorRTRunner(engine_path), measure_latency=True)
        why = ("build_engine is off" if not opts.build_engine else "TensorRT is not installed here" if not here
               else f"TensorRT {here} here is not {gen.label}")
        where = f"{job.target}/{gen.folder}/{script.name}"
        return Artifact(**common, status="not-built", note=f"{gen.label}: {why}: run {where} on the target",
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
                                "build tensorrt10/ on JetPack 6 (TensorRT 10.3) or tensorrt11/ on JetPack 7.2.2+ "
                                "(TensorRT 11.4.1+, AGX Orin)"))
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
        # the scales do not depend on the kept layers (on DLA a kept layer keeps its scales and runs FP16 by layer
        # precision): one calibration serves the export and every step of its --max-drop search
        calibration = job.once(("dla-calibration", str(source), job.calibration_method, id(job.calibration),
                                len(job.calibration), job.qat_onnx is not None),
                               lambda: self._calibrate(job, source, model, work))
        # the rules again, now with the scales (unequal Concat scales move layers off the DLA)
        report = check_onnx(model, calibration.scales, fp16, opts.input_format)
        job.fallback.enforce(report.findings)
        layout = HeadLayout.DETACHED if opts.detach_head else HeadLayout.PIXEL
        extra = {"merged_quantizers": calibration.merged_quantizers, "int8_scales": len(calibration.scales),
                 "dla_subgraphs": report.subgraphs, "gpu_fallback_layers": len(report.fallbacks),
                 "fp16_layers": len(fp16), "calibration_method": calibration.method,
                 "tensors_without_scale": len(calibration.missing), "kept_float": list(job.keep_float)}
        qat_model = None
        if job.qat_onnx is not None:
            qat_model = onnx.load(str(job.qat_onnx if opts.detach_head else _qat_full(job, work)))
        artifacts, qat_artifacts, engines = [], [], []
        for gen in _generations_built(job):  # the same scales for both: the cache (10) or Q/DQ nodes (11)
            shipped = not artifacts
            out = job.staging / job.target / gen.folder
            files, variants = self._generation(job, gen, model, fp16, calibration, report, layout,
                                               dict(extra, tensorrt=gen.name), out, shipped=shipped)
            artifacts += variants
            if qat_model is not None:  # QAT weights with the PTQ scales their training started from (and kept)
                qat_out = job.staging / f"{job.target}-qat" / gen.folder
                qat_artifacts += self._generation(job, gen, qat_model, fp16, calibration, report, layout,
                                                  dict(extra, tensorrt=gen.name), qat_out, shipped=shipped,
                                                  qat=True)[1][:1]
            if not job.primary_only:
                engines.append(self._engine(job, gen, out, files, fp16, layout, dict(extra, tensorrt=gen.name)))
        return BuildResult(qat_artifacts + artifacts + engines)

    def _generation(self, job: Job, gen, model, fp16: list[str], calibration: _DlaCalibration, report,
                    layout: HeadLayout, extra: dict, out: Path, shipped: bool, qat: bool = False):
        """One generation's folder and its emulated rows: TensorRT 10 builds model.onnx + model.cache; TensorRT
        11.4.1+ builds the strongly typed model.onnx whose Q/DQ nodes carry the same scales."""
        out.mkdir(parents=True, exist_ok=True)
        if gen.name == "10":
            files = self._emit(job, model, fp16, calibration, report, out)
            return files, self._emulated_variants(job, model, fp16, calibration, report, files, layout, extra, out,
                                                  qat=qat, shipped=shipped)
        files, typed = self._emit_typed(job, model, fp16, calibration, report, out)
        return files, [self._typed_variant(job, gen, typed, fp16, report, files, layout, extra, out, qat=qat,
                                           shipped=shipped)]

    def _calibrate(self, job: Job, source: Path, model, work: Path) -> _DlaCalibration:
        from edgeq_tensorrt.ptq import calibrate_qdq
        from edgeq_tensorrt.translate import precision_config, translate_model
        from edgeq_tensorrt.unify import unify_scales

        log(f"{job.target}: calibrating INT8 scales on {len(job.calibration)} images ({job.calibration_method})")
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
                           qat: bool = False, shipped: bool = True) -> list[Artifact]:
        """TensorRT 10's engine numerics rebuilt from the cache for ONNX Runtime, with and without FP16 last
        convs."""
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
            role = _shipped_role(qat, shipped) if is_default else Role.EMULATION
            artifacts.append(Artifact(
                name=name, target=job.target, variant=variant, path=files.onnx if is_default else emulated,
                precision=_dla_precision(fp16_set, layout), role=role, layout=layout,
                status=job.profile.figures,
                note=f"TensorRT 10.x (tensorrt10/, JetPack 6): {what}; engine numerics rebuilt from model.cache "
                     f"in ONNX Runtime; {placement}"
                     + ("" if is_default else " (comparison: same model.onnx + cache, no --layerPrecisions)"),
                open_runner=(lambda p=emulated: OnnxRuntimeRunner(p)), extra=dict(extra),
                companions=files.companions if is_default else ()))
        return artifacts

    def _emit_typed(self, job: Job, model, fp16: list[str], calibration: _DlaCalibration, report, out: Path):
        """TensorRT 11.4.1+: the strongly typed model.onnx (Q/DQ from the cache's scales, FP16-typed last convs,
        INT8 input, FP16 outputs), its I/O description, the layer table and the build scripts."""
        import onnx

        from edgeq_tensorrt.emulate import emulation_model
        from edgeq_tensorrt.scripts import DlaBuild, write_python, write_shell

        opts: DLAOptions = job.options
        typed = emulation_model(model, calibration.scales, fp16, typed=True)
        onnx_path = out / "model.onnx"
        onnx.save(typed, str(onnx_path))
        inputs = [i.name for i in typed.graph.input]
        io_path = out / "model-io.json"
        io_path.write_text(json.dumps({
            "inputs": {n: {"dtype": "int8", "scale": calibration.scales[n], "format": opts.input_format}
                       for n in inputs},
            "outputs": {o.name: {"dtype": "fp16", "format": "chw16"} for o in typed.graph.output}}, indent=2))
        companions = [io_path]
        if opts.detach_head:
            head_json = out / "model-head.json"
            job.head.to_json(head_json)
            companions.append(head_json)
        layers_md = out / "model-dla-layers.md"
        layers_md.write_text(report.markdown(f"DLA layer placement: {onnx_path.name} (TensorRT 11.4.1+, "
                                             f"{len(calibration.scales)} INT8 scales as Q/DQ nodes)"))
        build = DlaBuild(onnx=onnx_path.name, cache=None, outputs=tuple(o.name for o in typed.graph.output),
                         fp16_layers=tuple(fp16), dla_core=opts.dla_core, input_format=opts.input_format,
                         standalone_default=not job.fallback.allowed, generation="11")
        scripts = (write_shell(build, out / "build_dla.sh"), write_python(build, out / "build_dla.py"))
        files = _DlaFiles(onnx=onnx_path, cache=None, companions=(*companions, layers_md, *scripts), scripts=scripts)
        return files, typed

    def _typed_variant(self, job: Job, gen, typed, fp16: list[str], report, files: _DlaFiles, layout: HeadLayout,
                       extra: dict, out: Path, qat: bool = False, shipped: bool = True) -> Artifact:
        """The strongly typed graph itself in ONNX Runtime, the host's input quantization in front."""
        import onnx

        from edgeq.plugin import OnnxRuntimeRunner
        from edgeq_tensorrt.emulate import with_float_input

        opts: DLAOptions = job.options
        head_fp16 = [n.name for n in typed.graph.node if n.name.startswith(HEAD_PREFIX)]
        last = len(fp16) - len(head_fp16) - len(job.keep_float)
        variant = ("int8-fp16-last-convs" if opts.fp16_last_convs else "int8") + ("-qat" if qat else "")
        name = f"{job.target}-trt11-{variant}"
        emulated = out / "emulation" / f"{name}.onnx"
        emulated.parent.mkdir(exist_ok=True)
        onnx.save(with_float_input(typed), str(emulated))
        gpu_layers = len(report.fallbacks)
        what = f"INT8, last head convs typed FP16 ({last} layers)" if opts.fp16_last_convs else "all convolutions INT8"
        return Artifact(
            name=name, target=job.target, variant=f"{variant}-trt11", path=files.onnx,
            precision=_dla_precision(fp16, layout), role=_shipped_role(qat, shipped), layout=layout,
            status=job.profile.figures,
            note=f"{gen.label} ({gen.folder}/, JetPack 7.2.2+): {what}; strongly typed Q/DQ graph (the cache's "
                 f"scales) run in ONNX Runtime; {len(report.placements) - gpu_layers}/{len(report.placements)} "
                 f"layers on DLA" + ("; QAT weights" if qat else ""),
            open_runner=lambda: OnnxRuntimeRunner(emulated), extra=dict(extra), companions=files.companions)

    def _engine(self, job: Job, gen, out: Path, files: _DlaFiles, fp16: list[str], layout: HeadLayout,
                extra: dict) -> Artifact:
        """Where this generation's TensorRT sees a DLA core (on the Jetson): build and run the engine (`measured`);
        else `not-built`, naming the script."""
        from edgeq_tensorrt.runner import TensorRTRunner, build_engine, dla_cores, installed_version

        opts: DLAOptions = job.options
        allowed = job.fallback.allowed
        scripts = files.scripts
        suffix = "" if gen.name == "10" else "-trt11"
        name, variant = f"{job.target}{suffix}-engine", f"engine{suffix}"
        here = installed_version()
        where = f"{job.target}/{gen.folder}"
        if here and gen.dla.contains(here) and dla_cores() > opts.dla_core:
            engine_path = out / "model.engine"  # float I/O for the evaluator; the deployable build is build_dla.sh
            source = files.onnx if gen.name == "10" else out / "emulation" / f"{job.target}-trt11-" \
                f"{'int8-fp16-last-convs' if opts.fp16_last_convs else 'int8'}.onnx"
            layers = fp16 if files.cache else ()  # TensorRT 11: the FP16 layers are typed in the graph
            engine_path.write_bytes(build_engine(source, calib_cache=files.cache, fp16_layers=layers,
                                                 dla_core=opts.dla_core, gpu_fallback=allowed))
            return Artifact(name=name, target=job.target, variant=variant, path=engine_path,
                            precision=_dla_precision(fp16, layout), role=Role.COMPARISON, layout=layout,
                            status="measured",
                            note=f"{gen.label}: engine on DLA core {opts.dla_core} from {where}/model.onnx",
                            open_runner=lambda: TensorRTRunner(engine_path, opts.dla_core), measure_latency=True,
                            extra=dict(extra), companions=scripts)
        why = ("TensorRT is not installed here" if not here else f"TensorRT {here} here does not build {gen.label} "
               "DLA engines" if not gen.dla.contains(here) else "this TensorRT sees no DLA core")
        return Artifact(
            name=name, target=job.target, variant=variant,
            path=out / ("model.engine" if allowed else "model.loadable"), precision=_dla_precision(fp16, layout),
            role=Role.COMPARISON, layout=layout, status="not-built",
            note=f"{gen.label}: {why}: on the Jetson run {where}/{scripts[0].name} "
                 f"({'GPU fallback allowed' if allowed else 'standalone loadable'}) or {where}/{scripts[1].name}",
            extra=dict(extra), companions=scripts)


@dataclass(frozen=True)
class _DlaFiles:
    onnx: Path
    cache: Path | None  # TensorRT 11: none, the scales are Q/DQ nodes
    companions: tuple[Path, ...]  # deployed with model.onnx: cache, head JSON, precision config, table, scripts
    scripts: tuple[Path, Path]  # build_dla.sh, build_dla.py


_PIPELINES = {"gpu-qdq": GpuQdqPipeline, "dla-cache": DlaCachePipeline}


def _generations_built(job: Job):
    """options.tensorrt's generations, 10 first; a search step (primary_only) builds only the shipped one."""
    from edgeq_tensorrt.generations import selected

    gens = selected(job.options.tensorrt)
    return gens[:1] if job.primary_only else gens


def _shipped_role(qat: bool, shipped: bool) -> Role:
    """The first generation's file is what the target ships (or its QAT twin); the other generation's sits beside
    it as a comparison, deployable with its own folder's script."""
    return (Role.QAT if qat else Role.DEPLOYABLE) if shipped else Role.COMPARISON


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
