"""One export, in one direction: recipe -> model -> ONNX -> backend (check, build) -> evaluate -> report.

Everything is written into a staging folder beside the output and moved into place only when the whole job
succeeded: a failed or interrupted export leaves no half-written artifact and never touches an existing
output folder unless --force was given. Logs of a failed stage are kept in the output folder's logs/.
"""

from __future__ import annotations

import platform
import sys
import time
from dataclasses import asdict, dataclass, replace
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from edgeq.backend import Artifact, Backend, Job, QuantPlan, backend_for
from edgeq.data import preprocess, read_image
from edgeq.errors import AccuracyGateError, EdgeqError
from edgeq.evaluate.evaluator import EvalSet, EvalSettings, evaluate
from edgeq.head import HeadLayout
from edgeq.intake import check_output_folder, validated_options
from edgeq.progress import StageTimer
from edgeq.recipe import Recipe
from edgeq.report import ArtifactEntry, Report
from edgeq.staging import staged_output
from edgeq.train.commands import remedy_command, remedy_commands

_CORE_TOOLS = ("edgeq", "torch", "ultralytics", "onnx", "onnxruntime", "faster-coco-eval")


def log(message: str) -> None:
    print(f"edgeq: {message}", file=sys.stderr, flush=True)


@dataclass
class ExportRequest:
    recipe: Recipe
    out: Path
    force: bool = False
    allow_fallback: bool | None = None  # None: the target's default
    fallback_flag: str | None = None  # the option the user typed for it (quoted back in a refusal)
    progress: bool = True
    trust_model: bool = False  # unpickle the checkpoint in full (runs code it names); off: weights-only
    qat_onnx: Path | None = None  # a graph `edgeq qat` trained for this target: built beside the PTQ artifacts


def run_export(request: ExportRequest) -> Report:
    recipe, out = request.recipe, request.out.resolve()
    check_output_folder(out, request.force)
    backend = backend_for(recipe.target)
    profile = backend.profiles[recipe.target]
    if profile.max_batch is not None and recipe.batch > profile.max_batch:
        raise EdgeqError(f"target {recipe.target} builds batch {profile.max_batch} only: {profile.max_batch_why}",
                         "leave --batch out (throughput at batch 4 and 8 is in the report where the runtime runs "
                         "here), or export for a target that takes it (openvino)")
    backend.ensure_available(recipe.target)
    options = validated_options(backend, recipe)
    if request.qat_onnx is not None and not Path(request.qat_onnx).is_file():
        raise EdgeqError(f"--qat-onnx '{request.qat_onnx}' does not exist",
                         f"pass the <model>-qat-{recipe.target}.onnx that `edgeq qat --target {recipe.target}` wrote")

    with staged_output(out, log, request.force) as staging:
        return _export(request, backend, options, staging)


def _export(request: ExportRequest, backend: Backend, options, staging: Path) -> Report:
    from edgeq.intake import IntakeRequest, take_in

    timer = StageTimer()
    intake = take_in(IntakeRequest(request.recipe, request.allow_fallback, request.fallback_flag, request.progress,
                                   request.trust_model), backend, options, staging, timer)
    shared = evaluate_shared(intake.detector, intake.eval_set, intake.job.full_onnx, request.recipe, request.progress,
                             timer)
    return export_target(request, backend, intake, shared, staging, timer, report_folder=staging)


@dataclass
class SharedResults:
    """What every artifact of a run is compared against, evaluated once: the FP32 PyTorch reference and the FP32
    ONNX every target starts from (same images, same evaluator)."""

    reference: dict  # the report's reference row
    ref_map: float
    onnx_fp32: ArtifactEntry
    settings: EvalSettings
    sample: object  # one preprocessed image, for timing
    eval_set: EvalSet
    fast_images: int | None = None  # --fast: slow (reference-kernel) evaluations use this many images
    _subset_ref: float | None = None

    def subset(self) -> EvalSet:
        return EvalSet(self.eval_set.images[:self.fast_images], self.eval_set.nc)

    def subset_ref_map(self, detector, head, progress: bool) -> float:
        """The FP32 reference on the --fast subset, so a subset artifact's drop compares the same images."""
        if self._subset_ref is None:
            self._subset_ref = evaluate_reference(detector, self.subset(), self.settings, "reference (subset)",
                                                  progress)[0].map50_95
        return self._subset_ref


def evaluate_reference(detector, eval_set: EvalSet, settings: EvalSettings, desc: str, progress: bool):
    """The FP32 PyTorch model on `eval_set`: (EvalResult, runtime name). An end-to-end head selects its
    detections inside the module (Ultralytics' own top-k)."""
    from edgeq.runners.torch import TorchRunner

    head = detector.head
    with TorchRunner(detector.module) as runner:
        layout = HeadLayout.SELECTED if head.end2end else HeadLayout.PIXEL
        return evaluate(runner, layout, head, eval_set, settings, desc, progress), runner.runtime


def evaluate_shared(detector, eval_set: EvalSet, full_onnx: Path, recipe: Recipe, progress: bool, timer,
                    fast_images: int | None = None) -> SharedResults:
    """The reference and the FP32 ONNX, scored once per run; `fast_images` sets SharedResults.fast_images."""
    from edgeq.runners.onnxruntime import OnnxRuntimeRunner

    head = detector.head
    settings = EvalSettings(conf=recipe.evaluation.conf, iou=recipe.evaluation.iou)
    sample = preprocess(read_image(eval_set.images[0]), head.imgsz)[0]
    with timer.stage("reference"):
        ref, runtime = evaluate_reference(detector, eval_set, settings, "reference (pytorch)", progress)
        onnx_fp32 = Artifact(name="onnx-fp32", target="onnx", variant="fp32", path=full_onnx,
                             precision="fp32", layout=HeadLayout.PIXEL, status="measured",
                             note="FP32 ONNX every target starts from",
                             open_runner=lambda: OnnxRuntimeRunner(full_onnx))
        entry = _evaluate_artifact(onnx_fp32, head, eval_set, settings, ref.map50_95, full_onnx.parent, progress)
    reference = {"name": "pytorch-fp32", "runtime": runtime, "map50_95": round(ref.map50_95, 2),
                 "map50": round(ref.map50, 2), "latency_ms": None, "images": ref.images}
    fast = fast_images if fast_images and fast_images < len(eval_set) else None
    return SharedResults(reference=reference, ref_map=ref.map50_95, onnx_fp32=entry, settings=settings,
                         sample=sample, eval_set=eval_set, fast_images=fast)


def export_target(request: ExportRequest, backend: Backend, intake, shared: SharedResults, staging: Path, timer,
                  report_folder: Path) -> Report:
    """One target of a run: check -> calibrate -> build -> evaluate its artifacts against the shared reference
    -> time -> search (when --max-drop asks) -> deploy kit -> report (written into `report_folder`)."""
    from edgeq.analyze.calibration import choose_method

    recipe = request.recipe
    job, head, eval_set, detector = intake.job, intake.head, intake.eval_set, intake.detector
    if request.qat_onnx is not None:
        job = replace(job, qat_onnx=Path(request.qat_onnx).resolve())
    plan = backend.quant_plan(job)
    analysis = _LazyAnalysis(job, plan, recipe)

    with timer.stage("check"):
        findings = backend.check(job)
    for finding in findings:
        log(finding.one_line())
    for command in remedy_commands(findings, recipe.model, recipe.data, recipe.target):
        log(f"the training fix for the findings above, on this model and data: {command}")
    job.fallback.enforce(findings)
    calibration = choose_method(job, plan, recipe.calibration.method, analysis.get, log,
                                lambda methods: _real_method_scores(job, backend, methods, recipe, staging))
    job = replace(job, calibration_method=calibration.used)
    log(f"building {recipe.target} artifacts ({len(intake.calib_paths)} calibration images, calibration "
        f"{calibration.describe()}{', kept float: ' + ', '.join(job.keep_float) if job.keep_float else ''})")
    with timer.stage("build"):
        built = backend.build(job)
    for finding in built.findings:
        log(finding.one_line())
    artifacts, findings = built.artifacts, [*findings, *built.findings]

    settings, sample = shared.settings, shared.sample
    with timer.stage("evaluate"):
        entries = [replace(shared.onnx_fp32)]
        for artifact in artifacts:
            if shared.fast_images and artifact.slow_evaluation:
                subset_ref = shared.subset_ref_map(detector, head, request.progress)
                entry = _evaluate_artifact(artifact, head, shared.subset(), settings, subset_ref, staging,
                                           request.progress)
                entry.note = (f"{entry.note}; --fast: scored on the first {shared.fast_images} evaluation images "
                              f"(drop against FP32 on the same images)").lstrip("; ")
                entry.extra = {**entry.extra, "evaluation_images": shared.fast_images}
            else:
                entry = _evaluate_artifact(artifact, head, eval_set, settings, shared.ref_map, staging,
                                           request.progress)
            entries.append(entry)
    throughput = _time_artifacts(artifacts, entries, sample, recipe, timer, request.progress)
    search = None
    primary = primary_entry(entries)
    budget = recipe.budget(primary.drop_map50_95) if primary else None
    if budget is not None and recipe.search.enabled and primary.drop_map50_95 > budget:
        with timer.stage("search"):
            search = _search(job, backend, plan, analysis, primary, artifacts, entries, shared.ref_map, eval_set,
                             settings, sample, recipe, staging, budget)
    steps = backend.deploy_steps(job, artifacts)
    if steps is not None:
        from edgeq.deploy.kit import write_kit

        write_kit(staging / recipe.target, job, artifacts, entries, steps, detector.source.name)
    report = Report(
        edgeq_version=_version("edgeq"), recipe=recipe.model_dump(), tools=_tool_versions(backend),
        model={"source": str(detector.source), "imgsz": head.imgsz, "batch": recipe.batch, "nc": head.nc,
               "names": list(head.names), "activations": detector.activations, "trained": detector.trained,
               "head": {"class": head.head_class, "branch": head.branch, "reg_max": head.reg_max,
                        "selection": head.selection, "nms": not head.end2end}},
        data={"source": str(intake.data_path), "root": str(intake.dataset.root),
              "labels": asdict(eval_set.label_stats), "calib_split": recipe.calibration.split,
              "calib_images": len(intake.calib_paths), "val_split": recipe.evaluation.split,
              "val_images": len(eval_set), "skipped_images": intake.skipped_images},
        reference=dict(shared.reference), artifacts=entries,
        findings=[{"rule": f.rule, "severity": f.severity.value, "where": f.where, "message": f.message,
                   "fix": f.fix, **({"command": remedy_command(f.remedy, recipe.model, recipe.data, recipe.target)}
                                    if f.remedy else {})} for f in findings],
        timings_s=timer.timings, throughput=throughput, calibration=asdict(calibration),
        keep_float=list(job.keep_float), search=asdict(search) if search else None)
    report_folder.mkdir(parents=True, exist_ok=True)
    report.write(report_folder)
    return report


class _LazyAnalysis:
    """The LayerAnalysis of this export, made on first use (auto calibration, the search)."""

    def __init__(self, job: Job, plan: QuantPlan | None, recipe: Recipe) -> None:
        self.job, self.plan, self.recipe, self._analysis = job, plan, recipe, None

    def get(self):
        from edgeq.analyze.analysis import LayerAnalysis

        if self._analysis is None:
            settings, calib = self.recipe.analysis, self.job.calibration
            self._analysis = LayerAnalysis(self.job.full_onnx, self.plan.scheme, calib[:settings.range_images],
                                           calib[:settings.metric_images], self.job.head.imgsz, self.job.progress)
        return self._analysis


def _real_method_scores(job: Job, backend: Backend, methods, recipe: Recipe, staging: Path) -> list:
    """`calibration.method: auto` in an export: the deployable artifact built once per offered method (in a scratch
    folder, removed after), run on calibration images and compared with FP32 on the anchors FP32 is confident
    about; the pipeline then builds the winner for real."""
    import shutil

    from edgeq.analyze.analysis import MethodScore
    from edgeq.analyze.sensitivity import confident_vectors, score
    from edgeq.runners.onnxruntime import OnnxRuntimeRunner

    images = [job.calibration[i] for i in range(min(recipe.analysis.metric_images, len(job.calibration)))]
    references: dict[Path, list] = {}
    scores = []
    for method in methods:
        folder = staging / ".calibration-trial" / method
        folder.mkdir(parents=True, exist_ok=True)
        log(f"calibration auto: building with {method}")
        built = backend.build(replace(job, calibration_method=method, primary_only=True, staging=folder))
        artifact = next(a for a in built.artifacts if a.precision.startswith("int8") and a.open_runner)
        source = job.body_onnx if artifact.layout is HeadLayout.DETACHED else job.full_onnx
        if source not in references:
            with OnnxRuntimeRunner(source) as runner:
                references[source] = [runner.infer(x) for x in images]
        with artifact.open_runner() as runner:
            outputs = [runner.infer(x) for x in images]
        ref, quant = confident_vectors(references[source], outputs, job.head.imgsz,
                                       normalized=artifact.layout is HeadLayout.NORMALIZED)
        scores.append(MethodScore(method, *score(ref, quant)))
        shutil.rmtree(folder, ignore_errors=True)
    shutil.rmtree(staging / ".calibration-trial", ignore_errors=True)
    return scores


def primary_entry(entries: list[ArtifactEntry]) -> ArtifactEntry | None:
    """The deployable INT8 artifact the budget applies to: the target's first INT8 artifact with figures (the
    others are comparisons: OpenVINO's head-quantized variant, TFLite's other head treatments)."""
    return next((e for e in entries if e.precision.startswith("int8") and e.drop_map50_95 is not None), None)


def _search(job: Job, backend: Backend, plan: QuantPlan | None, analysis: _LazyAnalysis, primary: ArtifactEntry,
            artifacts: list[Artifact], entries: list[ArtifactEntry], ref_map: float, eval_set: EvalSet,
            settings: EvalSettings, sample, recipe: Recipe, staging: Path, budget: float):
    """The mixed-precision search (edgeq.analyze.search) with this export's builds as its steps."""
    from edgeq.analyze.search import SearchResult, StepResult, float_layer_costs, run_search
    from edgeq.evaluate.timing import TimedArtifact, time_interleaved

    started = time.perf_counter()
    start = StepResult(step=0, kept=list(job.keep_float), artifact=primary.name, path=primary.path,
                       map50_95=primary.map50_95, drop_map50_95=primary.drop_map50_95, latency_ms=primary.latency_ms)
    if plan is None:
        return SearchResult(budget=budget, requested=str(recipe.max_drop), steps=[start],
                            stopped=f"target {job.target} describes no quantization scheme: nothing to search")
    asked = f"{recipe.max_drop} = {budget:.3g} points" if isinstance(recipe.max_drop, str) else budget
    log(f"{primary.name} loses {primary.drop_map50_95:.2f} points, over --max-drop {asked}: ranking layers for "
        f"the mixed-precision search")
    from edgeq.analyze.analysis import MapScorer

    layer_analysis = analysis.get()
    exclude = [*job.keep_float, *plan.float_layers]
    scorer = MapScorer(EvalSet(eval_set.images[:recipe.analysis.map_images], job.head.nc), job.head, settings)
    scorer.progress = job.progress
    scores = layer_analysis.ranked(plan.scheme.emulated_method(job.calibration_method), plan.head_quantized,
                                   exclude, scorer, recipe.analysis.map_layers)
    ranked = [s.name for s in scores]
    fp32 = next((a for a in artifacts if a.precision == "fp32" and a.measure_latency and a.open_runner), None)
    fp32_latency = next((e.latency_ms for e in entries if fp32 and e.name == fp32.name), None)

    def build_step(step: int, kept: list[str]) -> StepResult:
        nonlocal fp32_latency
        folder = staging / "search" / f"step-{step}"
        folder.mkdir(parents=True, exist_ok=True)
        built = backend.build(replace(job, keep_float=tuple(kept), primary_only=True, staging=folder))
        artifact = next(a for a in built.artifacts if a.precision.startswith("int8") and a.open_runner)
        artifact.name = f"{artifact.name}-keep{len(kept)}"
        entry = _evaluate_artifact(artifact, job.head, eval_set, settings, ref_map, staging, job.progress)
        latency = None
        if artifact.measure_latency and fp32 is not None and recipe.evaluation.latency_runs:
            timings = time_interleaved([TimedArtifact(fp32.name, fp32.open_runner),
                                        TimedArtifact(artifact.name, artifact.open_runner)], sample, [1],
                                       recipe.evaluation.latency_runs, recipe.evaluation.warmup_runs, job.progress)
            by_name = {t.artifact: t.median_ms for t in timings}
            latency = by_name.get(artifact.name)
            fp32_latency = by_name.get(fp32.name) or fp32_latency  # timed in the same rounds: the fair comparison
        return StepResult(step=step, kept=kept, artifact=artifact.name, path=entry.path, map50_95=entry.map50_95,
                          drop_map50_95=entry.drop_map50_95, latency_ms=latency)

    result = run_search(start, ranked, list(job.keep_float), budget, recipe.search.max_layers, plan.scheme,
                        build_step, lambda: fp32_latency, log, str(recipe.max_drop))
    if plan.scheme.higher_precision is None:
        result.costs = float_layer_costs(layer_analysis.model, ranked[:8], plan.scheme)
    result.seconds = round(time.perf_counter() - started, 1)
    log(f"search: {result.stopped}" + (f"; chosen {result.chosen}" if result.chosen else ""))
    return result


def _evaluate_artifact(artifact: Artifact, head, eval_set: EvalSet, settings: EvalSettings, ref_map: float,
                       staging: Path, progress: bool) -> ArtifactEntry:
    entry = ArtifactEntry(name=artifact.name, target=artifact.target, variant=artifact.variant,
                          path=str(artifact.path.relative_to(staging)) if artifact.path.is_relative_to(staging)
                          else str(artifact.path),
                          precision=artifact.precision, map50_95=None, map50=None, drop_map50_95=None,
                          size_mb=artifact.size_mb(), latency_ms=None, status=artifact.status,
                          note=artifact.note, extra=artifact.extra, layout=artifact.layout.value)
    if artifact.open_runner is None:
        return entry
    with artifact.open_runner() as runner:
        result = evaluate(runner, artifact.layout, head, eval_set, settings, artifact.name, progress)
        entry.runtime = runner.runtime
    entry.map50_95, entry.map50 = round(result.map50_95, 2), round(result.map50, 2)
    entry.drop_map50_95 = round(ref_map - result.map50_95, 2)
    log(f"{artifact.name}: mAP50-95 {entry.map50_95:.2f} ({artifact.status})")
    return entry


def _time_artifacts(artifacts: list[Artifact], entries: list[ArtifactEntry], sample, recipe: Recipe, timer,
                    progress: bool) -> list[dict]:
    """Latency (batch 1, the table's column) and throughput at every recipe batch of the artifacts whose timing
    means something here, all timed interleaved so their ratios survive a busy machine."""
    from edgeq.evaluate.timing import TimedArtifact, time_interleaved

    timed = [TimedArtifact(a.name, a.open_runner) for a in artifacts if a.measure_latency and a.open_runner]
    settings = recipe.evaluation
    if not timed or not settings.latency_runs:
        return []
    with timer.stage("timing"):
        batches = sorted({*settings.batches, recipe.batch})  # the artifacts' own static batch is timed too
        timings = time_interleaved(timed, sample, batches, settings.latency_runs, settings.warmup_runs, progress)
    by_name = {e.name: e for e in entries}
    for t in timings:
        if t.batch == 1:
            by_name[t.artifact].latency_ms = t.median_ms
    return [{**asdict(t), "images_per_s": t.images_per_s} for t in timings]


def enforce_max_drop(report: Report, recipe: Recipe) -> None:
    """Exit 3 unless the deployable INT8 artifact, or a search step, is within --max-drop."""
    primary = primary_entry(report.artifacts)
    if primary is None or recipe.max_drop is None:
        return
    max_drop = recipe.budget(primary.drop_map50_95)
    if primary.drop_map50_95 <= max_drop:
        return
    if isinstance(recipe.max_drop, str):
        max_drop = f"{recipe.max_drop} ({max_drop:.3g} points)"
    search = report.search
    if search and search["chosen"]:
        return
    if search and search["remedy"]:
        search = dict(search, remedy=_with_command(search["remedy"], recipe))
    if search and search["steps"][1:]:
        best = min(search["steps"], key=lambda s: s["drop_map50_95"])
        raise AccuracyGateError(f"no search step is within --max-drop {max_drop}: the best, {best['artifact']}, "
                                f"loses {best['drop_map50_95']:.2f} points ({search['stopped']})",
                                (search["remedy"] or "raise search.max_layers") + "; the steps are in report.md")
    if search and search["remedy"]:
        raise AccuracyGateError(f"{primary.name} loses {primary.drop_map50_95:.2f} mAP50-95 points, over --max-drop "
                                f"{max_drop}, and mixed precision cannot help here ({search['stopped']})",
                                search["remedy"])
    raise AccuracyGateError(f"{primary.name} loses {primary.drop_map50_95:.2f} mAP50-95 points, over --max-drop "
                            f"{max_drop}" + (f" ({search['stopped']})" if search else ""),
                            "keep more layers in float (--keep-float, `edgeq analyze` ranks them), try "
                            "calibration.method auto, add calibration images, or raise --max-drop")


def _with_command(remedy: str, recipe: Recipe) -> str:
    """The remedy, with the edgeq command that runs it on the user's model and data (profile data says which)."""
    scheme = backend_for(recipe.target).profiles[recipe.target].quantization
    if scheme is None or not scheme.training_command:
        return remedy
    return f"{remedy}: {remedy_command(scheme.training_command, recipe.model, recipe.data, recipe.target)}"


def _version(dist: str) -> str:
    try:
        return version(dist)
    except PackageNotFoundError:
        return "not installed"


def _tool_versions(backend: Backend) -> dict[str, str]:
    found = {name: _version(name) for name in (*_CORE_TOOLS, *backend.tools)}
    found = {k: v for k, v in found.items() if v != "not installed"}
    found["python"] = platform.python_version()
    return found
