"""One export, in one direction: recipe -> model -> ONNX -> backend (check, build) -> evaluate -> report.

Everything is written into a staging folder beside the output and moved into place only when the whole job
succeeded: a failed or interrupted export leaves no half-written artifact and never touches an existing
output folder unless --force was given. Logs of a failed stage are kept in the output folder's logs/.
"""

from __future__ import annotations

import platform
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from pydantic import ValidationError

from edgeq.backend import Artifact, Backend, backend_for, make_job
from edgeq.data import ImageBatches, load_dataset, preprocess, read_image, subsample
from edgeq.errors import AccuracyGateError, EdgeqError, StageError
from edgeq.evaluate.evaluator import EvalSet, EvalSettings, evaluate
from edgeq.head import HeadLayout
from edgeq.recipe import Recipe, describe_validation_error
from edgeq.report import ArtifactEntry, Report
from edgeq.staging import remove_stale, work_folder

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


@dataclass
class _Timer:
    timings: dict[str, float] = field(default_factory=dict)

    def stage(self, name: str):
        timer = self

        class _Stage:
            def __enter__(self):
                self.start = time.perf_counter()

            def __exit__(self, *exc):
                timer.timings[name] = round(time.perf_counter() - self.start, 2)

        return _Stage()


def check_output_folder(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise EdgeqError(f"output '{out}' is a file", "choose a folder for --out")
    if out.exists() and any(out.iterdir()) and not force:
        raise EdgeqError(f"output folder '{out}' already holds files",
                         "choose another --out, or pass --force to replace its contents")


def resolve_model(recipe: Recipe) -> str | Path:
    """The model the user named: a path, a bare Ultralytics name (`yolo11n.yaml`), or `demo[:relu6]`."""
    from edgeq import demo

    name = recipe.model or "demo"
    return demo.demo_model(name.partition(":")[2] or "silu") if name.split(":")[0] == "demo" else name


def resolve_data(recipe: Recipe, progress: bool = True) -> Path:
    """The dataset the user named, else the embedded synthetic one (generated once into the cache)."""
    from edgeq import demo

    if recipe.data:
        return Path(recipe.data)
    log("no --data: using the embedded synthetic dataset (generated once into the cache)")
    return demo.demo_dataset(train=recipe.calibration.images, val=recipe.evaluation.images, progress=progress)


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
    options_model = backend.options_model(recipe.target)
    try:
        options = options_model.model_validate(recipe.options)
    except ValidationError as exc:
        raise describe_validation_error(exc, prefix="options.", model=options_model, target=recipe.target) from None

    for stale in remove_stale(out):
        log(f"removed '{stale}', left by an export that no longer runs")
    staging_root = work_folder(out)
    shutil.rmtree(staging_root, ignore_errors=True)
    staging = staging_root / "artifacts"
    staging.mkdir(parents=True)
    try:
        report = _export(request, backend, options, staging)
        _promote(staging_root, staging, out)
        return report
    except StageError as exc:
        kept = _keep_logs(staging_root, out)
        raise (exc.moved_log(str(kept / Path(exc.log_path).name)) if exc.log_path and kept else exc) from None
    except BaseException:
        _keep_logs(staging_root, out)
        raise
    finally:
        shutil.rmtree(staging_root, ignore_errors=True)


def _export(request: ExportRequest, backend: Backend, options, staging: Path) -> Report:
    from edgeq.model import export_onnx, load_detector
    from edgeq.runners.onnxruntime import OnnxRuntimeRunner
    from edgeq.runners.torch import TorchRunner

    recipe, timer = request.recipe, _Timer()
    with timer.stage("load"):  # the model first: a wrong --model fails before any data work
        detector = load_detector(resolve_model(recipe), recipe.imgsz, request.trust_model, recipe.head_branch)
    head, imgsz = detector.head, detector.head.imgsz
    model_path = detector.source
    data_path = resolve_data(recipe, request.progress)
    dataset = load_dataset(data_path)
    if dataset.names and len(dataset.names) != head.nc:
        raise EdgeqError(f"dataset '{data_path}' has {len(dataset.names)} classes but the model has {head.nc}",
                         "evaluate with the dataset the model was trained on")
    calib_paths = subsample(dataset.images(recipe.calibration.split), recipe.calibration.images,
                            recipe.calibration.seed)
    eval_set = EvalSet(subsample(dataset.images(recipe.evaluation.split), recipe.evaluation.images,
                                 recipe.evaluation.seed), head.nc)  # labels validated here, before heavy work
    log(f"data {data_path} (root {dataset.root}), {recipe.evaluation.split} split: {eval_set.label_stats.summary()}")
    log(f"model {model_path.name}: {head.head_class} head, {head.branch} branch ({head.selection}), {head.nc} classes, "
        f"input {imgsz}, activation {detector.main_activation}"
        f"{'' if detector.trained else ' (untrained YAML: mAP is meaningless)'}")

    with timer.stage("onnx"):
        onnx_models = export_onnx(detector, staging)
    job = make_job(backend, recipe.target, options=options, allow_fallback=request.allow_fallback,
                   fallback_flag=request.fallback_flag, head=head, body_onnx=onnx_models.body,
                   full_onnx=onnx_models.full, calibration=ImageBatches(calib_paths, imgsz), staging=staging,
                   activations=detector.activations, progress=request.progress, batch=recipe.batch)

    with timer.stage("check"):
        findings = backend.check(job)
    for finding in findings:
        log(finding.one_line())
    job.fallback.enforce(findings)
    log(f"building {recipe.target} artifacts ({len(calib_paths)} calibration images)")
    with timer.stage("build"):
        built = backend.build(job)
    for finding in built.findings:
        log(finding.one_line())
    artifacts, findings = built.artifacts, [*findings, *built.findings]

    settings = EvalSettings(conf=recipe.evaluation.conf, iou=recipe.evaluation.iou)
    sample = preprocess(read_image(eval_set.images[0]), imgsz)[0]
    with timer.stage("evaluate"):
        with TorchRunner(detector.module) as runner:
            # an end-to-end head selects its detections inside the PyTorch module (Ultralytics' own top-k)
            ref_layout = HeadLayout.SELECTED if head.end2end else HeadLayout.PIXEL
            ref = evaluate(runner, ref_layout, head, eval_set, settings, "reference (pytorch)", request.progress)
            runtime = runner.runtime
        onnx_fp32 = Artifact(name="onnx-fp32", target="onnx", variant="fp32", path=onnx_models.full,
                             precision="fp32", layout=HeadLayout.PIXEL, status="measured",
                             note="FP32 ONNX every target starts from",
                             open_runner=lambda: OnnxRuntimeRunner(onnx_models.full))
        entries = [_evaluate_artifact(a, head, eval_set, settings, ref.map50_95, staging, request.progress)
                   for a in [onnx_fp32, *artifacts]]
    throughput = _time_artifacts(artifacts, entries, sample, recipe, timer, request.progress)
    reference = {"name": "pytorch-fp32", "runtime": runtime, "map50_95": round(ref.map50_95, 2),
                 "map50": round(ref.map50, 2), "latency_ms": None, "images": ref.images}
    report = Report(
        edgeq_version=_version("edgeq"), recipe=recipe.model_dump(), tools=_tool_versions(backend),
        model={"source": str(model_path), "imgsz": imgsz, "batch": recipe.batch, "nc": head.nc, "names": list(head.names),
               "activations": detector.activations, "trained": detector.trained,
               "head": {"class": head.head_class, "branch": head.branch, "reg_max": head.reg_max,
                        "selection": head.selection, "nms": not head.end2end}},
        data={"source": str(data_path), "root": str(dataset.root), "labels": asdict(eval_set.label_stats),
              "calib_split": recipe.calibration.split, "calib_images": len(calib_paths),
              "val_split": recipe.evaluation.split, "val_images": len(eval_set)},
        reference=reference, artifacts=entries,
        findings=[{"rule": f.rule, "severity": f.severity.value, "where": f.where, "message": f.message,
                   "fix": f.fix} for f in findings],
        timings_s=timer.timings, throughput=throughput)
    report.write(staging)
    return report


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


def max_drop_exceeded(report: Report, max_drop: float) -> list[ArtifactEntry]:
    return [a for a in report.artifacts if a.precision.startswith("int8") and a.drop_map50_95 is not None
            and a.drop_map50_95 > max_drop]


def enforce_max_drop(report: Report, max_drop: float | None) -> None:
    if max_drop is None:
        return
    if failed := max_drop_exceeded(report, max_drop):
        worst = max(failed, key=lambda a: a.drop_map50_95)
        raise AccuracyGateError(f"{worst.name} loses {worst.drop_map50_95:.2f} mAP50-95 points, over --max-drop "
                                f"{max_drop} ({len(failed)} artifact(s) over)",
                                "keep more layers in float (e.g. the decode head), add calibration images, "
                                "or raise --max-drop")


def _promote(staging_root: Path, staging: Path, out: Path) -> None:
    logs = [p for p in staging_root.glob("*.log")]
    if logs:
        (staging / "logs").mkdir(exist_ok=True)
        for p in logs:
            p.rename(staging / "logs" / p.name)
    if out.exists():  # --force: swap, then delete the old contents
        old = work_folder(out, "old")
        out.rename(old)
        staging.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        staging.rename(out)


def _keep_logs(staging_root: Path, out: Path) -> Path | None:
    logs = list(staging_root.glob("*.log"))
    if not logs:
        return None
    kept = out / "logs"
    kept.mkdir(parents=True, exist_ok=True)
    for p in logs:
        shutil.move(str(p), kept / p.name)
    return kept


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
