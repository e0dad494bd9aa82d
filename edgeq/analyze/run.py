"""`edgeq analyze`: per-layer sensitivity of one target's quantization scheme, written as analysis.json (every
figure), analysis.md (the ranked table) and analysis.png (the chart). Same model, data and recipe handling as
`edgeq export`, the same no-overwrite staging; nothing is built for the target."""

from __future__ import annotations

import shutil
import time
from dataclasses import asdict
from pathlib import Path

from edgeq.analyze.analysis import LayerAnalysis, MapScorer
from edgeq.analyze.calibration import choose_method
from edgeq.analyze.output import AnalysisReport
from edgeq.backend import backend_for
from edgeq.errors import EdgeqError
from edgeq.evaluation.evaluator import EvalSet, EvalSettings
from edgeq.head import HEAD_PREFIX
from edgeq.intake import ExportRequest, check_output_folder, take_in, validated_options
from edgeq.progress import StageTimer, log
from edgeq.staging import staged_output


def run_analyze(request: ExportRequest) -> AnalysisReport:
    """Rank the layers of `request`'s model under its target's scheme; nothing is built for the target."""
    recipe, out = request.recipe, request.out.resolve()
    check_output_folder(out, request.force)
    backend = backend_for(recipe.target)
    options = validated_options(backend, recipe)
    with staged_output(out, log, request.force) as staging:
        report = _analyze(request, backend, options, staging)
        report.write(staging)
        return report


def _analyze(request: ExportRequest, backend, options, staging: Path) -> AnalysisReport:
    recipe, timer = request.recipe, StageTimer()
    intake = take_in(request, backend, options, staging / ".work", timer, log_dir=staging.parent)
    job, head = intake.job, intake.head
    plan = job.plan
    if plan is None:
        raise EdgeqError(f"target {job.target} describes no quantization scheme to analyze",
                         "analyze for a target whose profile has a quantization: block (`edgeq targets`)")
    settings = recipe.analysis
    analysis = LayerAnalysis(job.full_onnx, plan.scheme, job.calibration[:settings.range_images],
                             job.calibration[:settings.metric_images], head.imgsz, job.progress)
    calibration = choose_method(job, plan, recipe.calibration.method, lambda: analysis, log)
    method = plan.scheme.emulated_method(calibration.used)
    log(f"{job.target}: {plan.scheme.weights} weights, {plan.scheme.activations} activations, ranges by {method}, "
        f"decode head {'quantized' if plan.head_quantized else 'in float'}")
    with timer.stage("ranges"):
        analysis.histograms()
    eval_set = EvalSet(intake.eval_set.images[:settings.map_images], head.nc)
    scorer = MapScorer(eval_set, head, EvalSettings(conf=recipe.evaluation.conf, iou=recipe.evaluation.iou))
    scorer.progress, scorer.key = job.progress, analysis.map_key(method)
    with timer.stage("sweep"):
        scores = analysis.ranked(method, plan.head_quantized, job.keep_float, scorer, settings.map_layers)
    with timer.stage("map"):
        fp32_map = scorer(analysis.model, "fp32")
        all_map = scorer(analysis.all_quantized(method, plan.head_quantized, job.keep_float),
                         "all-int8:" + ",".join(job.keep_float))
        scorer.save()
    marks = _marks(job, plan, backend)
    toolkit = None
    if settings.toolkit_images and not backend.missing(job.target):
        with timer.stage("toolkit"):
            toolkit = backend.toolkit_layer_errors(job, settings.toolkit_images)
    for s in scores:
        s.marks = marks.get(s.name, [])
        s.toolkit_cosine = toolkit.cosine.get(s.name) if toolkit else None
    head_layers = [n for n, info in analysis.qgraph.layers.items() if info.in_head]
    shutil.rmtree(staging / ".work", ignore_errors=True)  # the FP32 ONNX pair: rebuilt by any export
    return AnalysisReport(
        target=job.target, model=str(intake.detector.source), imgsz=head.imgsz, scheme=plan.scheme.model_dump(),
        calibration=asdict(calibration), method=method, head_quantized=plan.head_quantized,
        images={"ranges": len(analysis.range_images), "metrics": len(analysis.metric_images), "map": len(eval_set),
                "data": str(intake.data_path)},
        fp32_map50_95=round(fp32_map, 2), all_int8_map50_95=round(all_map, 2), layers=[asdict(s) for s in scores],
        keep_float=list(job.keep_float), float_layers=dict(plan.float_layers),
        head_layers=[] if plan.head_quantized else head_layers, timings_s=timer.timings,
        toolkit={"tool": toolkit.tool, "metric": toolkit.metric, "images": toolkit.images} if toolkit else {})


def _marks(job, plan, backend) -> dict[str, list[str]]:
    """What the head treatment, the target's own float layers and its rule tables already say about each layer."""
    marks: dict[str, list[str]] = {}
    for name, why in plan.float_layers.items():
        marks.setdefault(name, []).append(why)
    if plan.head_quantized:
        for node in job.graph(job.full_onnx).graph.node:
            if node.name.startswith(HEAD_PREFIX):
                marks.setdefault(node.name, []).append("decode head (quantized on this target)")
    if backend.missing(job.target):
        return marks
    started = time.perf_counter()
    for finding in backend.check(job):
        marks.setdefault(finding.where, []).append(f"rule {finding.rule} ({finding.severity.value})")
    log(f"rule tables checked in {time.perf_counter() - started:.1f} s")
    return marks
