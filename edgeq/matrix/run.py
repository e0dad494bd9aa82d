"""Every target in one run: one model intake, one FP32 ONNX, one calibration set (decoded once), one evaluation
set with the FP32 reference scored once; then each target's own check -> build -> evaluate -> deploy kit in
`<out>/<target>/`, and one matrix report at the top comparing them all.

A target whose extra is not installed is listed as skipped with its install line; a target that fails (its
converter, or its rules refusing the model) is listed as failed with the reason, its half-made folder removed,
and the run goes on. Fallback to the host is allowed for every target unless `--no-fallback` is given: a matrix
compares what each chip would do, and a refusal would hide the figure the user came for (the findings column
says how many rules fired).
"""

from __future__ import annotations

import difflib
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from edgeq import backend as registry
from edgeq.backend import Backend
from edgeq.errors import EdgeqError
from edgeq.intake import IntakeRequest, check_output_folder, take_in_shared, validated_options
from edgeq.matrix.report import MatrixReport, TargetOutcome
from edgeq.progress import StageTimer
from edgeq.recipe import Recipe
from edgeq.staging import staged_output

ALL = "all"
FAST_IMAGES = 100  # --fast: evaluation images for artifacts scored with reference kernels


def log(message: str) -> None:
    print(f"edgeq: {message}", file=sys.stderr, flush=True)


def is_target_list(target: str | None) -> bool:
    return bool(target) and (target == ALL or "," in target)


@dataclass
class MatrixRequest:
    recipe: Recipe  # recipe.target holds the list as typed ("all", "openvino,edgetpu")
    out: Path
    force: bool = False
    allow_fallback: bool | None = None  # None: allowed (a comparison); False: each target's refusal stands
    fallback_flag: str | None = None
    progress: bool = True
    trust_model: bool = False
    fast: bool = False


def resolve_targets(spec: str, backends: dict[str, Backend]) -> list[str]:
    """'all' -> every registered target (registry order); 'a,b' -> those, checked, in the order typed."""
    if spec == ALL:
        return list(backends)
    names = [n.strip() for n in spec.split(",") if n.strip()]
    for name in names:
        if name not in backends:
            close = difflib.get_close_matches(name, list(backends), n=3, cutoff=0.5)
            hint = f"did you mean {', '.join(close)}?" if close else f"choose from: {', '.join(backends)}"
            raise EdgeqError(f"unknown target '{name}' in --target {spec}", f"{hint} (or --target all)")
    if len(set(names)) != len(names):
        raise EdgeqError(f"--target {spec} names a target twice", "list each target once")
    return names


def run_matrix(request: MatrixRequest) -> MatrixReport:
    backends = registry.discover()  # looked up at call time: tests register their own targets
    targets = resolve_targets(request.recipe.target, backends)
    ready = [t for t in targets if not backends[t].missing()]
    skipped = {t: backends[t].install_hint() for t in targets if t not in ready}
    if not ready:
        installs = sorted(set(skipped.values()))
        raise EdgeqError(f"--target {request.recipe.target}: no backend extra is installed for "
                         f"{', '.join(targets)}", "pip install 'edgeq[all]'" if len(installs) > 1 else installs[0])
    _refuse_single_target_flags(request.recipe)
    recipes = {t: _recipe_for(request.recipe, t, backends[t]) for t in ready}
    out = request.out.resolve()
    check_output_folder(out, request.force)
    with staged_output(out, log, request.force) as staging:
        return _run(request, backends, targets, ready, skipped, recipes, staging)


def _refuse_single_target_flags(recipe: Recipe) -> None:
    if isinstance(recipe.max_drop, str):
        raise EdgeqError(f"--max-drop {recipe.max_drop} asks the mixed-precision search to win back a share of the "
                         "loss, which runs in a single-target export",
                         "give points for the matrix (--max-drop 1.0), or export the target alone with the share")
    if recipe.keep_float:
        raise EdgeqError("--keep-float names layers for one target's higher precision",
                         "export that target alone with --keep-float (the matrix compares default builds)")


def _recipe_for(recipe: Recipe, target: str, backend: Backend) -> Recipe:
    """The run's recipe for one target: its options are the keys its own options model has (a key no listed
    target knows is an error, checked by the first that validates it)."""
    known = backend.options_model(target).model_fields
    options = {k: v for k, v in recipe.options.items() if k in known}
    per_target = recipe.model_copy(update={"target": target, "options": options})
    per_target.search.enabled = False  # the matrix gates per artifact; the search runs in a single-target export
    return per_target


def _check_option_keys(recipe: Recipe, backends: dict[str, Backend], ready: list[str]) -> None:
    known = {k for t in ready for k in backends[t].options_model(t).model_fields}
    unknown = [k for k in recipe.options if k not in known]
    if unknown:
        raise EdgeqError(f"unknown option 'options.{unknown[0]}' for {', '.join(ready)}",
                         "`edgeq recipes --schema --target T` lists each target's options")


def _run(request: MatrixRequest, backends, targets, ready, skipped, recipes, staging: Path) -> MatrixReport:
    from edgeq.pipeline import ExportRequest, evaluate_shared, export_target

    _check_option_keys(request.recipe, backends, ready)
    options = {t: validated_options(backends[t], recipes[t]) for t in ready}
    allow = True if request.allow_fallback is None else request.allow_fallback
    started, timer = time.perf_counter(), StageTimer()
    intake_request = IntakeRequest(recipes[ready[0]], allow, request.fallback_flag, request.progress,
                                   request.trust_model)
    shared_intake = take_in_shared(intake_request, staging, timer)
    shared = evaluate_shared(shared_intake.detector, shared_intake.eval_set, shared_intake.onnx_models.full,
                             recipes[ready[0]], request.progress, timer,
                             fast_images=FAST_IMAGES if request.fast else None)
    log(f"shared work done in {time.perf_counter() - started:.0f} s (model, ONNX, FP32 reference "
        f"{shared.reference['map50_95']:.2f} on {len(shared_intake.eval_set)} images); {len(ready)} target(s) to go"
        + (f", {len(skipped)} skipped (extra missing: {', '.join(skipped)})" if skipped else ""))
    outcomes: dict[str, TargetOutcome] = {t: TargetOutcome(target=t, status="skipped", reason="extra not installed",
                                                           install=skipped[t]) for t in skipped}
    for number, target in enumerate(ready, 1):
        t0 = time.perf_counter()
        recipe, backend = recipes[target], backends[target]
        export = ExportRequest(recipe=recipe, out=staging, allow_fallback=allow, fallback_flag=request.fallback_flag,
                               progress=request.progress, trust_model=request.trust_model)
        try:
            intake = shared_intake.for_target(backend, recipe, options[target], intake_request, staging)
            report = export_target(export, backend, intake, shared, staging, StageTimer(),
                                   report_folder=staging / target)
        except EdgeqError as exc:
            shutil.rmtree(staging / target, ignore_errors=True)  # no half-made target folder
            outcomes[target] = TargetOutcome(target=target, status="failed", reason=exc.one_line(),
                                             seconds=round(time.perf_counter() - t0, 1))
            log(f"[{number}/{len(ready)}] {target} failed after {outcomes[target].seconds:.0f} s: {exc.one_line()}")
            continue
        outcome = TargetOutcome(target=target, status="built", seconds=round(time.perf_counter() - t0, 1),
                                findings=len(report.findings), timings=report.timings_s,
                                artifacts=[e for e in report.artifacts if e.target != "onnx"])
        outcomes[target] = outcome
        best = outcome.primary()
        figure = f"{best.name} {best.map50_95:.2f} (drop {best.drop_map50_95:.2f}, {best.status})" \
            if best is not None else "no INT8 figure"
        log(f"[{number}/{len(ready)}] {target} done in {outcome.seconds:.0f} s: {figure}")
    matrix = MatrixReport(
        targets_requested=request.recipe.target, model=str(shared_intake.detector.source),
        imgsz=shared_intake.head.imgsz, data=str(shared_intake.data_path), val_images=len(shared_intake.eval_set),
        calib_images=len(shared_intake.calib_paths), reference=shared.reference, onnx_fp32=shared.onnx_fp32,
        outcomes=[outcomes[t] for t in targets], shared_timings=timer.timings,
        seconds=round(time.perf_counter() - started, 1), fast_images=shared.fast_images,
        max_drop=request.recipe.max_drop, fallback_allowed=allow)
    matrix.write(staging)
    return matrix
