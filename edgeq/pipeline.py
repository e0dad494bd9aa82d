"""One export run, in one direction: recipe -> model -> ONNX -> backend (check, build) -> evaluate -> report, for
one target or several (`--target all` or a list) alike.

`ExportRun` is the only place that knows the order. The shared part runs once (model intake, FP32 ONNX, the
calibration images, the evaluation set with the FP32 reference scored once); then each target's own check ->
build -> evaluate -> search -> deploy kit (`export_target`). One target writes its report at the top of the
output folder and its artifacts in `<target>/`; several write each target's report in `<target>/` and a matrix
report at the top, list targets whose install is missing as skipped and go on past a target that fails.

Everything is written into a staging folder beside the output and moved into place only when the whole run
succeeded: a failed or interrupted export leaves no half-written artifact and never touches an existing
output folder unless --force was given. Logs are kept in the output folder's logs/.
"""

from __future__ import annotations

import difflib
import platform
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np

from edgeq import backend as registry
from edgeq.backend import SHIPPED_ROLES, Artifact, Backend, Job, PluginError, Role, backend_for
from edgeq.data import preprocess, read_image
from edgeq.env import cpus
from edgeq.errors import AccuracyGateError, EdgeqError
from edgeq.evaluation.diagnostics import best_f1_threshold, describe
from edgeq.evaluation.evaluator import EvalSet, EvalSettings, evaluate
from edgeq.evaluation.matches import map50_95
from edgeq.evaluation.uncertainty import PairedBootstrap, compare, small_set_warning
from edgeq.head import HeadLayout
from edgeq.intake import ExportRequest, check_output_folder, take_in_shared, validated_options
from edgeq.matrix.report import MatrixReport, TargetOutcome
from edgeq.matrix.workers import default_jobs, run_in_workers
from edgeq.progress import StageTimer, is_silent, log, log_context
from edgeq.recipe import Recipe
from edgeq.report import ArtifactEntry, Report
from edgeq.staging import staged_output
from edgeq.train.commands import remedy_command, remedy_commands

_CORE_TOOLS = ("edgeq", "torch", "ultralytics", "onnx", "onnxruntime", "faster-coco-eval")
ALL = "all"
FAST_IMAGES = 100  # --fast: evaluation images for artifacts scored with reference kernels


def is_target_list(target: str | None) -> bool:
    return bool(target) and (target == ALL or "," in target)


def run_export(request: ExportRequest) -> Report:
    """Export one target; its report."""
    return ExportRun(request).run().reports[request.recipe.target]


def run_matrix(request: ExportRequest) -> MatrixReport:
    """Export several targets (`all`, or a comma list in `recipe.target`); the matrix report."""
    return ExportRun(request).run().matrix


@dataclass
class RunResult:
    reports: dict[str, Report]  # target -> its report (built targets only)
    matrix: MatrixReport | None = None  # several targets: the report comparing them


@dataclass
class TargetTask:
    """Everything one target of a run needs after the shared part; pickled to a worker process with --jobs."""

    target: str
    recipe: Recipe
    options: object  # the backend's validated options model
    intake: object  # edgeq.intake.SharedIntake
    shared: SharedResults
    staging: Path
    allow_fallback: bool | None
    request: ExportRequest
    timer: StageTimer
    several: bool
    in_worker: bool = False  # --jobs: no progress bars (one display: the parent's line per target), log lines
    # prefixed with the target, and the parent's silence (the Python API's default) kept
    silent: bool = False


@dataclass
class TargetDone:
    """What a target's export sends back: its report, or the one line it failed with, and what the run keeps
    across targets (the shipped artifact's matches for the matrix's intervals, the default path's exports)."""

    seconds: float
    report: Report | None = None
    error: str | None = None
    shipped: tuple | None = None
    baselines: dict = field(default_factory=dict)


def export_one(task: TargetTask) -> TargetDone:
    """One target of a run, in this process or in a --jobs worker. A target of several that fails is a
    TargetDone with the reason and its folder removed; a single target's failure is raised as it is."""
    if task.in_worker:
        with log_context(prefix=f"[{task.target}] ", silent=task.silent):
            return _export_one(task)
    return _export_one(task)


def _export_one(task: TargetTask) -> TargetDone:
    t0, request, recipe, target = time.perf_counter(), task.request, task.recipe, task.target
    backend = backend_for(target)
    progress = request.progress and not task.in_worker
    try:
        target_intake = task.intake.for_target(backend, recipe, task.options, task.staging, task.staging.parent,
                                               task.allow_fallback, request.fallback_flag, progress,
                                               request.qat_onnx and Path(request.qat_onnx).resolve())
        report = export_target(recipe, backend, target_intake, task.shared, task.staging, task.timer, progress,
                               report_folder=task.staging / target if task.several else task.staging,
                               baseline=request.baseline, trust_model=request.trust_model)
    except EdgeqError as exc:
        if not task.several:
            raise
        shutil.rmtree(task.staging / target, ignore_errors=True)  # no half-made target folder
        return TargetDone(seconds=round(time.perf_counter() - t0, 1), error=exc.one_line())
    return TargetDone(seconds=round(time.perf_counter() - t0, 1), report=report,
                      shipped=task.shared.shipped_matches.get(target), baselines=dict(task.shared.baselines))


class ExportRun:
    """One `edgeq export`. Everything that can refuse the run before any work (unknown targets or options, a
    missing extra, flags that need one target) is checked when it is made; `run()` does the work."""

    def __init__(self, request: ExportRequest) -> None:
        self.request = request
        recipe = request.recipe
        check_output_folder(request.out.resolve(), request.force)  # a bad --out is refused before anything else
        self.several = is_target_list(recipe.target)
        self.skipped: dict[str, str] = {}  # target -> the line that installs it
        if self.several:
            self.requested = resolve_targets(recipe.target)
            ready = [t for t in self.requested if not backend_for(t).missing(t)]
            self.skipped = {t: backend_for(t).install_hint() for t in self.requested if t not in ready}
            if not ready:
                installs = sorted(set(self.skipped.values()))
                raise EdgeqError(f"--target {recipe.target}: no backend extra is installed for "
                                 f"{', '.join(self.requested)}",
                                 installs[0] if len(installs) == 1 else "; ".join(installs))
            _refuse_single_target_flags(request)
            self.recipes = {t: _recipe_for(recipe, t, backend_for(t)) for t in ready}
            _check_option_keys(recipe, ready)
        else:
            if request.fast:
                raise EdgeqError("--fast applies to runs of several targets",
                                 "drop --fast, or pass --target all or a list")
            self.requested, ready = [recipe.target], [recipe.target]
            self.recipes = {recipe.target: recipe}
            _refuse_unbuildable(request, backend_for(recipe.target))
        if request.baseline not in (None, "ultralytics"):
            raise EdgeqError(f"--baseline {request.baseline}: unknown default path", "use --baseline ultralytics")
        self.ready = ready
        self.jobs = (request.jobs or default_jobs(len(ready))) if self.several else 1
        self.options = {t: validated_options(backend_for(t), self.recipes[t]) for t in ready}

    @property
    def allow_fallback(self) -> bool | None:
        """A matrix compares: fallback is allowed unless refused, so every target has a figure."""
        allowed = self.request.allow_fallback
        return (True if allowed is None else allowed) if self.several else allowed

    def run(self) -> RunResult:
        out = self.request.out.resolve()
        with staged_output(out, log, self.request.force) as staging:
            return self._run(staging)

    def _run(self, staging: Path) -> RunResult:
        request, started, timer = self.request, time.perf_counter(), StageTimer()
        first = self.recipes[self.ready[0]]
        intake = take_in_shared(request, first, staging, timer)
        shared = evaluate_shared(intake.detector, intake.eval_set, intake.onnx_models.full, first, request.progress,
                                 timer, fast_images=FAST_IMAGES if request.fast else None)
        if self.several:
            log(f"shared work done in {time.perf_counter() - started:.0f} s (model, ONNX, FP32 reference "
                f"{shared.reference['map50_95']:.2f} on {len(intake.eval_set)} images); {len(self.ready)} target(s) "
                "to go" + (f", {len(self.skipped)} skipped (not installed: {', '.join(self.skipped)})"
                           if self.skipped else ""))
        reports: dict[str, Report] = {}
        outcomes = {t: TargetOutcome(target=t, status="skipped", install=hint,
                                     reason="extra not installed" if backend_for(t).missing_modules(t)
                                     else "toolchain not installed") for t, hint in self.skipped.items()}
        tasks = [TargetTask(target=t, recipe=self.recipes[t], options=self.options[t], intake=intake, shared=shared,
                            staging=staging, allow_fallback=self.allow_fallback, request=request,
                            timer=timer if not self.several else StageTimer(), several=self.several)
                 for t in self.ready]
        jobs = min(self.jobs, len(tasks))
        if jobs > 1:
            log(f"{len(tasks)} targets in {jobs} worker processes (--jobs {jobs}), "
                f"{max(1, cpus() // jobs)} CPU(s) each")
            finished = run_in_workers(export_one, [replace(t, in_worker=True, silent=is_silent()) for t in tasks],
                                      jobs)
        else:
            finished = ((task, export_one(task)) for task in tasks)
        for number, (task, done) in enumerate(finished, 1):
            target = task.target
            if done.error is not None:
                outcomes[target] = TargetOutcome(target=target, status="failed", reason=done.error,
                                                 seconds=done.seconds)
                log(f"[{number}/{len(tasks)}] {target} failed after {done.seconds:.0f} s: {done.error}")
                continue
            reports[target] = done.report
            if done.shipped is not None:
                shared.shipped_matches[target] = done.shipped
            shared.baselines.update(done.baselines)
            if self.several:
                outcome = outcomes[target] = TargetOutcome(
                    target=target, status="built", seconds=done.seconds, findings=len(done.report.findings),
                    timings=done.report.timings_s, artifacts=[e for e in done.report.artifacts if e.target != "onnx"],
                    baseline=done.report.baseline, comparisons=done.report.uncertainty.get("comparisons", []))
                best = outcome.primary()
                figure = f"{best.name} {best.map50_95:.2f} (drop {best.drop_map50_95:.2f}, {best.status})" \
                    if best is not None else "no INT8 figure"
                log(f"[{number}/{len(tasks)}] {target} done in {outcome.seconds:.0f} s: {figure}")
        if not self.several:
            return RunResult(reports)
        matrix = MatrixReport(
            targets_requested=request.recipe.target, model=str(intake.detector.source), imgsz=intake.head.imgsz,
            data=str(intake.data_path), val_images=len(intake.eval_set), calib_images=len(intake.calib_paths),
            reference=shared.reference, onnx_fp32=shared.onnx_fp32, outcomes=[outcomes[t] for t in self.requested],
            shared_timings=timer.timings, seconds=round(time.perf_counter() - started, 1),
            fast_images=shared.fast_images, max_drop=request.recipe.max_drop, fallback_allowed=self.allow_fallback,
            uncertainty=_between_targets(shared))
        matrix.write(staging)
        return RunResult(reports, matrix)


def _between_targets(shared: SharedResults) -> dict:
    """The matrix's `uncertainty`: each pair of targets' shipped artifacts scored on all the images."""
    full = {target: table for target, (entry, table) in shared.shipped_matches.items()
            if "evaluation_images" not in entry.extra}
    return {**shared.bootstrap.record(), "comparisons": compare(full, shared.bootstrap)}


def resolve_targets(spec: str) -> list[str]:
    """'all' -> every installed target (registry order); 'a,b' -> those, checked, in the order typed."""
    known = list(registry.discover())  # looked up at call time: tests register their own targets
    if spec == ALL:
        return known
    names = [n.strip() for n in spec.split(",") if n.strip()]
    for name in names:
        if name not in known:
            close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
            hint = f"did you mean {', '.join(close)}?" if close else f"choose from: {', '.join(known)}"
            raise EdgeqError(f"unknown target '{name}' in --target {spec}", f"{hint} (or --target all)")
    if len(set(names)) != len(names):
        raise EdgeqError(f"--target {spec} names a target twice", "list each target once")
    return names


def _refuse_unbuildable(request: ExportRequest, backend: Backend) -> None:
    """What stops a one-target export before any work: a batch the target cannot build, a missing install, a
    --qat-onnx that is not there."""
    recipe = request.recipe
    profile = backend.profiles[recipe.target]
    if profile.max_batch is not None and recipe.batch > profile.max_batch:
        takers = sorted(t for t, b in registry.discover().items()
                        if (limit := b.profiles[t].max_batch) is None or limit >= recipe.batch)
        raise EdgeqError(f"target {recipe.target} builds batch {profile.max_batch} only: {profile.max_batch_why}",
                         "leave --batch out (throughput at batch 4 and 8 is in the report where the runtime runs "
                         f"here), or export for a target that takes it ({', '.join(takers) or 'none installed'})")
    backend.ensure_available(recipe.target)
    if request.qat_onnx is not None and not Path(request.qat_onnx).is_file():
        raise EdgeqError(f"--qat-onnx '{request.qat_onnx}' does not exist",
                         f"pass the <model>-qat-{recipe.target}.onnx that `edgeq qat --target {recipe.target}` wrote")


def _refuse_single_target_flags(request: ExportRequest) -> None:
    recipe = request.recipe
    if isinstance(recipe.max_drop, str):
        raise EdgeqError(f"--max-drop {recipe.max_drop} asks the mixed-precision search to win back a share of the "
                         "loss, which runs in a single-target export",
                         "give points for the matrix (--max-drop 1.0), or export the target alone with the share")
    if recipe.keep_float:
        raise EdgeqError("--keep-float names layers for one target's higher precision",
                         "export that target alone with --keep-float (the matrix compares default builds)")
    if request.qat_onnx is not None:
        raise EdgeqError("--qat-onnx is a graph trained for one target", "export that target alone with --qat-onnx")


def _recipe_for(recipe: Recipe, target: str, backend: Backend) -> Recipe:
    """The run's recipe for one target: its options are the keys its own options model has (a key no listed
    target knows is an error, see _check_option_keys)."""
    known = backend.options_model(target).model_fields
    options = {k: v for k, v in recipe.options.items() if k in known}
    per_target = recipe.model_copy(update={"target": target, "options": options})
    per_target.search.enabled = False  # the matrix gates per artifact; the search runs in a single-target export
    return per_target


def _check_option_keys(recipe: Recipe, ready: list[str]) -> None:
    known = {k for t in ready for k in backend_for(t).options_model(t).model_fields}
    unknown = [k for k in recipe.options if k not in known]
    if unknown:
        raise EdgeqError(f"unknown option 'options.{unknown[0]}' for {', '.join(ready)}",
                         "`edgeq recipes --schema --target T` lists each target's options")


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
    baselines: dict = field(default_factory=dict)  # --baseline: Ultralytics' exports made so far, by format
    bootstrap: PairedBootstrap | None = None  # the intervals on every drop, paired with the reference's matches
    shipped_matches: dict = field(default_factory=dict)  # target -> (shipped entry, its matches): the matrix compares

    def subset(self) -> EvalSet:
        return EvalSet(self.eval_set.images[:self.fast_images], self.eval_set.nc)

    def subset_ref_map(self) -> float:
        """The FP32 reference on the --fast subset, so a subset artifact's drop compares the same images."""
        if self._subset_ref is None:  # from the reference's kept matches: no second run of the model
            subset = self.bootstrap.reference.subset(self.fast_images)
            self._subset_ref = float(map50_95(subset.average_precision())[0])
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
                             precision="fp32", layout=HeadLayout.PIXEL, status="measured", role=Role.REFERENCE,
                             note="FP32 ONNX every target starts from",
                             open_runner=lambda: OnnxRuntimeRunner(full_onnx))
        bootstrap = PairedBootstrap(ref.matches)
        fp32_matches: dict = {}
        entry = _evaluate_artifact(onnx_fp32, head, eval_set, settings, ref.map50_95, full_onnx.parent, progress,
                                   paired=bootstrap, kept=fp32_matches)
    if warning := small_set_warning(len(eval_set)):
        log(warning)
    best_conf = best_f1_threshold(ref.matches)
    reference = {"name": "pytorch-fp32", "runtime": runtime, "map50_95": round(ref.map50_95, 2),
                 "map50": round(ref.map50, 2), "latency_ms": None, "images": ref.images,
                 "fp32_best_f1_conf": round(best_conf, 4),
                 "diagnostics": describe(ref.matches, ref.matches, recipe.evaluation.deploy_conf, best_conf)}
    entry.diagnostics = describe(fp32_matches[onnx_fp32.name], ref.matches, recipe.evaluation.deploy_conf, best_conf)
    fast = fast_images if fast_images and fast_images < len(eval_set) else None
    return SharedResults(reference=reference, ref_map=ref.map50_95, onnx_fp32=entry, settings=settings,
                         sample=sample, eval_set=eval_set, fast_images=fast, bootstrap=bootstrap)


def export_target(recipe: Recipe, backend: Backend, intake, shared: SharedResults, staging: Path, timer,
                  progress: bool, report_folder: Path, baseline: str | None = None,
                  trust_model: bool = False) -> Report:
    """One target of a run: check -> calibrate -> build -> evaluate its artifacts against the shared reference
    -> time -> search (when --max-drop asks) -> deploy kit -> report (written into `report_folder`)."""
    from edgeq.analyze.calibration import choose_method

    job, head, eval_set, detector = intake.job, intake.head, intake.eval_set, intake.detector
    analysis = _LazyAnalysis(job, recipe)

    with timer.stage("check"):
        findings = backend.check(job)
    for finding in findings:
        log(finding.one_line())
    for command in remedy_commands(findings, recipe.model, recipe.data, recipe.target):
        log(f"the training fix for the findings above, on this model and data: {command}")
    job.fallback.enforce(findings)
    trial_errors: dict = {}  # auto: per method, per image (signal, error) energies, for the noise in its choice
    calibration = choose_method(job, job.plan, recipe.calibration.method, analysis.get, log,
                                lambda methods: _real_method_scores(job, backend, methods, recipe, staging,
                                                                    trial_errors))
    if calibration.scores and len(trial_errors) > 1:
        calibration.noise = _calibration_noise(calibration, trial_errors)
        log(f"calibration auto: {calibration.noise}")
    job = replace(job, calibration_method=calibration.used)
    log(f"building {recipe.target} artifacts ({len(intake.calib_paths)} calibration images, calibration "
        f"{calibration.describe()}{', kept float: ' + ', '.join(job.keep_float) if job.keep_float else ''})")
    with timer.stage("build"):
        built = backend.build(job)
    shipped = built.shipped()
    for finding in built.findings:
        log(finding.one_line())
    artifacts, findings = built.artifacts, [*findings, *built.findings]
    default_path = _default_path(baseline, recipe, backend, intake, shared, report_folder, trust_model, timer)
    scored = artifacts
    if default_path and default_path.artifact:
        # scored on the images edgeq's deployable artifact is scored on (--fast: the same subset), so the gain
        # compares like with like
        default_path.artifact.slow_evaluation = shipped.slow_evaluation
        scored = [*artifacts, default_path.artifact]

    settings, sample = shared.settings, shared.sample
    matches: dict = {}  # artifact name -> its per-image matches, for the intervals of their differences
    with timer.stage("evaluate"):
        entries = [replace(shared.onnx_fp32)]
        for artifact in scored:
            if shared.fast_images and artifact.slow_evaluation:
                subset_ref = shared.subset_ref_map()
                entry = _evaluate_artifact(artifact, head, shared.subset(), settings, subset_ref, staging, progress,
                                           paired=shared.bootstrap.subset(shared.fast_images), kept=matches)
                entry.note = (f"{entry.note}; --fast: scored on the first {shared.fast_images} evaluation images "
                              f"(drop against FP32 on the same images)").lstrip("; ")
                entry.extra = {**entry.extra, "evaluation_images": shared.fast_images}
            else:
                entry = _evaluate_artifact(artifact, head, eval_set, settings, shared.ref_map, staging, progress,
                                           paired=shared.bootstrap, kept=matches)
            entries.append(entry)
        uncertainty = _uncertainty(entries, matches, shared)
        for entry in entries:
            _describe_entry(entry, matches, shared, recipe)
    throughput = _time_artifacts(scored, entries, sample, recipe, timer, progress)
    search = None
    primary = next(e for e in entries if e.name == shipped.name)
    if primary.name in matches:
        shared.shipped_matches[recipe.target] = (primary, matches[primary.name])
    budget = recipe.budget(primary.drop_map50_95) if primary.drop_map50_95 is not None else None
    if budget is not None and recipe.search.enabled and primary.drop_map50_95 > budget:
        with timer.stage("search"):
            search = _search(job, backend, analysis, primary, artifacts, entries, shared.ref_map, eval_set,
                             settings, sample, recipe, staging, budget, shared.bootstrap, matches)
    steps = backend.deploy_steps(job, artifacts)
    if steps is not None:
        from edgeq.deploy.kit import write_kit

        write_kit(staging / recipe.target, job, artifacts, entries, steps, detector.source.name,
                  _kit_evaluation(recipe, settings, intake.image_sets))
    report = Report(
        edgeq_version=_version("edgeq"), recipe=recipe.model_dump(), tools=_tool_versions(backend),
        model={"source": str(detector.source), "imgsz": head.imgsz, "batch": recipe.batch, "nc": head.nc,
               "names": list(head.names), "activations": detector.activations, "trained": detector.trained,
               "head": {"class": head.head_class, "branch": head.branch, "reg_max": head.reg_max,
                        "selection": head.selection, "nms": not head.end2end}},
        data={"source": str(intake.data_path), "root": str(intake.dataset.root),
              "labels": asdict(eval_set.label_stats), "calib_split": recipe.calibration.split,
              "calib_images": len(intake.calib_paths), "val_split": recipe.evaluation.split,
              "val_images": len(eval_set), "skipped_images": intake.skipped_images,
              **(intake.image_sets.record() if intake.image_sets else {})},
        reference=dict(shared.reference), artifacts=entries,
        findings=[{"rule": f.rule, "severity": f.severity.value, "where": f.where, "message": f.message,
                   "fix": f.fix, **({"command": remedy_command(f.remedy, recipe.model, recipe.data, recipe.target)}
                                    if f.remedy else {})} for f in findings],
        timings_s=timer.timings, throughput=throughput, calibration=asdict(calibration),
        keep_float=list(job.keep_float), search=search, baseline=default_path.record() if default_path else {},
        uncertainty=uncertainty)
    report_folder.mkdir(parents=True, exist_ok=True)
    report.write(report_folder)
    return report


def _kit_evaluation(recipe: Recipe, settings: EvalSettings, sets) -> dict | None:
    """What the deploy kit's `infer.py --validate` needs to score as the report did: the split, the protocol's
    thresholds, the evaluation images by content hash in the evaluator's order and the set's hash."""
    if sets is None:
        return None
    return {"split": recipe.evaluation.split, "conf": settings.conf, "iou": settings.iou, "max_det": settings.max_det,
            "sha256": sets.evaluation_sha256, "images": list(sets.evaluation_hashes)}


def _default_path(baseline: str | None, recipe: Recipe, backend: Backend, intake, shared: SharedResults,
                  folder: Path, trust_model: bool, timer):
    """--baseline ultralytics: Ultralytics' own INT8 export of the same checkpoint for this target, on the same
    calibration images, for the evaluator to score beside edgeq's artifacts (None when not asked for)."""
    if baseline is None:
        return None
    from edgeq.artifacts import open_any
    from edgeq.baseline.ultralytics import BaselineOutcome, export_baseline

    detector, head = intake.detector, intake.detector.head
    if Path(detector.source).suffix.lower() != ".pt":
        return BaselineOutcome(recipe.target, skipped="Ultralytics' exporter starts from a .pt checkpoint")
    profile = backend.profiles[recipe.target]

    def open_runner(path: Path):
        runner, _, layout = open_any(path, None, head.imgsz, None, intake.dataset)
        return runner, layout

    log(f"{recipe.target}: Ultralytics' own INT8 export of the same checkpoint (--baseline ultralytics)")
    with timer.stage("baseline"):
        outcome = export_baseline(recipe.target, profile.ultralytics, checkpoint=Path(detector.source),
                                  imgsz=head.imgsz, calib_paths=intake.calib_paths, names=list(head.names),
                                  folder=folder / "baseline-ultralytics", log_dir=intake.job.log_dir,
                                  trust_model=trust_model, shared=shared.baselines, open_runner=open_runner)
    if outcome.artifact is not None:
        outcome.artifact.measure_latency = profile.latency_meaningful
    else:
        log(f"{recipe.target}: no Ultralytics baseline: {outcome.skipped}")
    return outcome


class _LazyAnalysis:
    """The LayerAnalysis of this export under its plan, made on first use (auto calibration, the search)."""

    def __init__(self, job: Job, recipe: Recipe) -> None:
        self.job, self.recipe, self._analysis = job, recipe, None

    def get(self):
        from edgeq.analyze.analysis import LayerAnalysis

        if self._analysis is None:
            settings, calib = self.recipe.analysis, self.job.calibration
            self._analysis = LayerAnalysis(self.job.full_onnx, self.job.plan.scheme, calib[:settings.range_images],
                                           calib[:settings.metric_images], self.job.head.imgsz, self.job.progress)
        return self._analysis


def _trial_build(job: Job, backend: Backend, folder: Path, **changes) -> Artifact:
    """The target's shipped artifact alone, built into `folder` with `changes` to the job (a calibration method,
    layers kept): what a calibration trial and a search step both are. Logs stay in the job's log folder."""
    folder.mkdir(parents=True, exist_ok=True)
    artifact = backend.build(replace(job, primary_only=True, staging=folder, **changes)).shipped()
    if artifact.open_runner is None:
        raise PluginError(f"{artifact.name} ({artifact.status}) cannot run here, so a trial build cannot be scored")
    return artifact


def _calibration_noise(calibration, trial_errors: dict) -> str:
    """Whether auto's winner leads the runner-up by more than the calibration images' noise, in words."""
    from edgeq.evaluation.uncertainty import snr_lead

    best, runner_up = sorted(calibration.scores, key=lambda s: -s["snr_db"])[:2]
    signal, noise_best = trial_errors[best["method"]]
    lead = snr_lead(signal, noise_best, trial_errors[runner_up["method"]][1])
    verdict = ("inside the noise of these images: the choice could go either way, and the two should deploy "
               "alike" if lead.contains(0.0) else "beyond the noise of these images")
    return (f"{best['method']} leads {runner_up['method']} by {best['snr_db'] - runner_up['snr_db']:.2f} dB output "
            f"SNR (95% interval {lead.text()}, paired bootstrap over the {len(signal)} scored images): {verdict}")


def _real_method_scores(job: Job, backend: Backend, methods, recipe: Recipe, staging: Path,
                        per_image: dict | None = None) -> list:
    """`calibration.method: auto` in an export: the shipped artifact built once per offered method (in a scratch
    folder, removed after), run on calibration images and compared with FP32 on the anchors FP32 is confident
    about; the pipeline then builds the winner for real."""
    from edgeq.analyze.analysis import MethodScore
    from edgeq.analyze.sensitivity import confident_vectors, score
    from edgeq.runners.onnxruntime import OnnxRuntimeRunner

    images = [job.calibration[i] for i in range(min(recipe.analysis.metric_images, len(job.calibration)))]
    references: dict[Path, list] = {}
    scores = []
    trials = staging / f".calibration-trial-{job.target}"  # one per target: --jobs runs targets at once
    try:
        for method in methods:
            log(f"calibration auto: building with {method}")
            artifact = _trial_build(job, backend, trials / method, calibration_method=method)
            source = job.body_onnx if artifact.layout is HeadLayout.DETACHED else job.full_onnx
            if source not in references:
                with OnnxRuntimeRunner(source) as runner:
                    references[source] = [runner.infer(x) for x in images]
            with artifact.open_runner() as runner:
                outputs = [runner.infer(x) for x in images]
            ref, quant = confident_vectors(references[source], outputs, job.head.imgsz,
                                           normalized=artifact.layout is HeadLayout.NORMALIZED)
            scores.append(MethodScore(method, *score(ref, quant)))
            if per_image is not None:  # (signal, error) energy per image: the interval on auto's choice
                per_image[method] = (np.array([float(np.sum(r * r)) for r in ref]),
                                     np.array([float(np.sum((r - q) ** 2)) for r, q in zip(ref, quant)]))
            shutil.rmtree(trials / method, ignore_errors=True)
    finally:
        shutil.rmtree(trials, ignore_errors=True)
    return scores


def shipped_entry(entries: list[ArtifactEntry]) -> ArtifactEntry | None:
    """The entry of the artifact the target ships (its backend's role: QAT where built, else the deployable one)
    when it has figures: the one --max-drop gates."""
    for role in SHIPPED_ROLES:
        for entry in entries:
            if entry.role == role.value and entry.drop_map50_95 is not None:
                return entry
    return None


def _search(job: Job, backend: Backend, analysis: _LazyAnalysis, primary: ArtifactEntry, artifacts: list[Artifact],
            entries: list[ArtifactEntry], ref_map: float, eval_set: EvalSet, settings: EvalSettings, sample,
            recipe: Recipe, staging: Path, budget: float, bootstrap: PairedBootstrap | None = None,
            matches: dict | None = None):
    """The mixed-precision search (edgeq.analyze.search) with this export's builds as its steps."""
    from edgeq.analyze.scheme import WHOLE_MODEL
    from edgeq.analyze.search import SearchResult, StepResult, float_layer_costs, run_search
    from edgeq.evaluation.timing import TimedArtifact, time_interleaved

    started, plan = time.perf_counter(), job.plan
    start = StepResult(step=0, kept=list(job.keep_float), artifact=primary.name, path=primary.path,
                       map50_95=primary.map50_95, drop_map50_95=primary.drop_map50_95, latency_ms=primary.latency_ms,
                       drop_interval=primary.drop_interval)
    step_matches = {primary.name: (matches or {}).get(primary.name)}
    if plan is None:
        return SearchResult(budget=budget, requested=str(recipe.max_drop), steps=[start],
                            stopped=f"target {job.target} describes no quantization scheme: nothing to search")
    asked = f"{recipe.max_drop} = {budget:.3g} points" if isinstance(recipe.max_drop, str) else budget
    hp = plan.scheme.higher_precision
    log(f"{primary.name} loses {primary.drop_map50_95:.2f} points, over --max-drop {asked}: "
        + ("building the whole model in the higher precision" if hp and hp.scope == "model" else
           "ranking layers for the mixed-precision search"))
    from edgeq.analyze.analysis import MapScorer

    ranked = []
    if hp is None or hp.scope == "layer":  # a whole-model higher precision has one step and nothing to rank
        layer_analysis = analysis.get()
        exclude = [*job.keep_float, *plan.float_layers]
        scorer = MapScorer(EvalSet(eval_set.images[:recipe.analysis.map_images], job.head.nc), job.head, settings)
        scorer.progress = job.progress
        scores = layer_analysis.ranked(plan.scheme.emulated_method(job.calibration_method), plan.head_quantized,
                                       exclude, scorer, recipe.analysis.map_layers)
        ranked = [s.name for s in scores]
    fp32 = next((a for a in artifacts if a.role is Role.REFERENCE and a.measure_latency and a.open_runner), None)
    fp32_latency = next((e.latency_ms for e in entries if fp32 and e.name == fp32.name), None)

    def build_step(step: int, kept: list[str]) -> StepResult:
        nonlocal fp32_latency
        artifact = _trial_build(job, backend, staging / "search" / f"step-{step}", keep_float=tuple(kept))
        if WHOLE_MODEL not in kept:  # a whole-model step's artifact is named by its precision already
            artifact.name = f"{artifact.name}-keep{len(kept)}"
        entry = _evaluate_artifact(artifact, job.head, eval_set, settings, ref_map, staging, job.progress,
                                   paired=bootstrap, kept=step_matches)
        latency = None
        if artifact.measure_latency and fp32 is not None and recipe.evaluation.latency_runs:
            timings = time_interleaved([TimedArtifact(fp32.name, fp32.open_runner),
                                        TimedArtifact(artifact.name, artifact.open_runner)], sample, [1],
                                       recipe.evaluation.latency_runs, recipe.evaluation.warmup_runs, job.progress)
            by_name = {t.artifact: t.median_ms for t in timings}
            latency = by_name.get(artifact.name)
            fp32_latency = by_name.get(fp32.name) or fp32_latency  # timed in the same rounds: the fair comparison
        return StepResult(step=step, kept=kept, artifact=artifact.name, path=entry.path, map50_95=entry.map50_95,
                          drop_map50_95=entry.drop_map50_95, latency_ms=latency, drop_interval=entry.drop_interval)

    result = run_search(start, ranked, list(job.keep_float), budget, recipe.search.max_layers, plan.scheme,
                        build_step, lambda: fp32_latency, log, str(recipe.max_drop))
    if hp is None:
        result.costs = float_layer_costs(layer_analysis.model, ranked[:8], plan.scheme)
    result.seconds = round(time.perf_counter() - started, 1)
    if bootstrap is not None:
        result.noise = _search_noise(result, step_matches, bootstrap)
        if result.noise:
            log(f"search: {result.noise}")
    log(f"search: {result.stopped}" + (f"; chosen {result.chosen}" if result.chosen else ""))
    return result


def _describe_entry(entry: ArtifactEntry, matches: dict, shared: SharedResults, recipe: Recipe) -> None:
    """What mAP hides (edgeq.evaluation.diagnostics), for one scored entry against FP32 on the same images."""
    table = matches.get(entry.name)
    if table is None:  # not scored here (not built), or the shared FP32 ONNX, described once in evaluate_shared
        return
    reference = shared.bootstrap.subset(table.n_images).reference
    entry.diagnostics = describe(table, reference, recipe.evaluation.deploy_conf,
                                 shared.reference["fp32_best_f1_conf"])


def _uncertainty(entries: list[ArtifactEntry], matches: dict, shared: SharedResults) -> dict:
    """report.json's `uncertainty`: how the intervals were made, and every pair of the target's non-reference
    artifacts scored on the same images with the interval of their difference."""
    full = {e.name: matches[e.name] for e in entries
            if e.name in matches and e.role != Role.REFERENCE.value and "evaluation_images" not in e.extra}
    return {**shared.bootstrap.record(), "comparisons": compare(full, shared.bootstrap)}


def _search_noise(result, step_matches: dict, bootstrap: PairedBootstrap) -> str:
    """Where the search's verdict rests on a difference inside the images' noise: the chosen (or best) step's drop
    interval holding the budget, and steps whose gain over the step before is within noise."""
    parts = []
    steps = result.steps
    verdict = next((s for s in steps if s.artifact == result.chosen), None) or min(steps, key=lambda s: s.drop_map50_95)
    if verdict.drop_interval and verdict.drop_interval[0] <= result.budget <= verdict.drop_interval[1]:
        parts.append(f"the verdict rests on noise: {verdict.artifact}'s drop {verdict.drop_map50_95:.2f} has the "
                     f"95% interval {verdict.drop_interval[0]:.2f} to {verdict.drop_interval[1]:.2f}, which holds "
                     f"the budget {result.budget:.3g}")
    flat = []
    for before, after in zip(steps, steps[1:]):
        a, b = step_matches.get(after.artifact), step_matches.get(before.artifact)
        if a is not None and b is not None and bootstrap.difference(a, b).contains(0.0):
            flat.append(f"step {after.step} over step {before.step} ({before.drop_map50_95 - after.drop_map50_95:+.2f})")
    if flat:
        parts.append("gains within noise (the 95% interval of the difference contains 0): " + ", ".join(flat))
    return "; ".join(parts)


def _evaluate_artifact(artifact: Artifact, head, eval_set: EvalSet, settings: EvalSettings, ref_map: float,
                       staging: Path, progress: bool, paired: PairedBootstrap | None = None,
                       kept: dict | None = None) -> ArtifactEntry:
    """Score one artifact against the reference figure `ref_map`; with `paired` (the reference's bootstrap on
    the same images), the drop's interval too; `kept` receives its matches by name."""
    entry = ArtifactEntry(name=artifact.name, target=artifact.target, variant=artifact.variant,
                          path=str(artifact.path.relative_to(staging)) if artifact.path.is_relative_to(staging)
                          else str(artifact.path),
                          precision=artifact.precision.label(), map50_95=None, map50=None, drop_map50_95=None,
                          size_mb=artifact.size_mb(), latency_ms=None, status=artifact.status,
                          note=artifact.note, extra=artifact.extra, layout=artifact.layout.value,
                          role=artifact.role.value, precision_detail=artifact.precision.describe())
    if artifact.open_runner is None:
        return entry
    with artifact.open_runner() as runner:
        result = evaluate(runner, artifact.layout, head, eval_set, settings, artifact.name, progress)
        entry.runtime = runner.runtime
    entry.map50_95, entry.map50 = round(result.map50_95, 2), round(result.map50, 2)
    entry.drop_map50_95 = round(ref_map - result.map50_95, 2)
    if paired is not None:
        entry.drop_interval = paired.drop(result.matches).as_list()
    if kept is not None:
        kept[artifact.name] = result.matches
    log(f"{artifact.name}: mAP50-95 {entry.map50_95:.2f} ({artifact.status})")
    return entry


def _time_artifacts(artifacts: list[Artifact], entries: list[ArtifactEntry], sample, recipe: Recipe, timer,
                    progress: bool) -> list[dict]:
    """Latency (batch 1, the table's column) and throughput at every recipe batch of the artifacts whose timing
    means something here, all timed interleaved so their ratios survive a busy machine."""
    from edgeq.evaluation.timing import TimedArtifact, time_interleaved

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
    """Exit 3 unless the shipped artifact, or a search step, is within --max-drop."""
    primary = shipped_entry(report.artifacts)
    if primary is None or recipe.max_drop is None:
        return
    max_drop = recipe.budget(primary.drop_map50_95)
    noise = _budget_noise(primary, max_drop)
    if primary.drop_map50_95 <= max_drop:
        if noise:
            log(f"{primary.name} is within --max-drop, but {noise}")
        return
    if isinstance(recipe.max_drop, str):
        max_drop = f"{recipe.max_drop} ({max_drop:.3g} points)"
    search = report.search
    if search and search.chosen:
        return
    remedy = _with_command(search.remedy, recipe) if search and search.remedy else ""
    if search and search.steps[1:]:
        best = min(search.steps, key=lambda s: s.drop_map50_95)
        raise AccuracyGateError(f"no search step is within --max-drop {max_drop}: the best, {best.artifact}, "
                                f"loses {best.drop_map50_95:.2f} points ({search.stopped})",
                                (remedy or "raise search.max_layers") + "; the steps are in report.md")
    if search and remedy:
        raise AccuracyGateError(f"{primary.name} loses {primary.drop_map50_95:.2f} mAP50-95 points, over --max-drop "
                                f"{max_drop}{', but ' + noise if noise else ''}, and mixed precision cannot help here "
                                f"({search.stopped})", remedy)
    raise AccuracyGateError(f"{primary.name} loses {primary.drop_map50_95:.2f} mAP50-95 points, over --max-drop "
                            f"{max_drop}" + (f", but {noise}" if noise else "")
                            + (f" ({search.stopped})" if search else ""),
                            "keep more layers in float (--keep-float, `edgeq analyze` ranks them), try "
                            "calibration.method auto, add calibration images, or raise --max-drop")


def _budget_noise(entry: ArtifactEntry, budget: float) -> str:
    """When the budget lies inside the drop's interval: the gate's verdict is the images' noise, in words."""
    interval = entry.drop_interval
    if interval is None or not interval[0] <= budget <= interval[1]:
        return ""
    return (f"the budget {budget:.3g} lies inside the drop's 95% interval ({interval[0]:.2f} to {interval[1]:.2f}): "
            "on other images of the same kind the verdict could go the other way")


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
