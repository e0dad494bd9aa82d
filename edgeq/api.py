"""edgeq as a library: the same exports, evaluations and errors as the CLI, returned as typed results.

    import edgeq

    result = edgeq.export("best.pt", target="openvino", data="data.yaml", calib_images=300)
    print(result.shipped.name, result.shipped.map50_95, result.shipped.drop_map50_95)
    score = edgeq.evaluate("best_openvino_model/best.xml", data="data.yaml")
    print(score.map50_95)

Keyword overrides are recipe keys (`imgsz=640`, `max_drop=0.5`, `keep_float=[...]`, `head_branch="one2many"`),
the CLI's spellings of the two image counts (`calib_images`, `val_images`), `options={...}` for the target's own
section and `set={"calibration.method": "auto"}` for any dotted key; an unknown one is refused with the CLI's own
message. Every mistake raises `edgeq.errors.EdgeqError` (its `one_line()` is what the CLI prints); nothing is
printed unless `verbose=True`.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeq.matrix.report import MatrixReport
from edgeq.report import ArtifactEntry, Report

# the CLI's option names for recipe keys that live in a section
_SPELLINGS = {"calib_images": "calibration.images", "val_images": "evaluation.images"}


@dataclass(frozen=True)
class ExportResult:
    """What one export wrote and measured: each built target's report (artifacts with their figures and paths),
    the matrix report when several targets were asked for, and where it all is."""

    out: Path
    reports: dict[str, Report]
    matrix: MatrixReport | None = None

    @property
    def report(self) -> Report:
        """The report of a one-target export."""
        if len(self.reports) != 1:
            raise ValueError(f"{len(self.reports)} targets were exported: read .reports[target]")
        return next(iter(self.reports.values()))

    @property
    def shipped(self) -> ArtifactEntry | None:
        """The artifact a one-target export ships (QAT where built, else the deployable one), with its figures."""
        from edgeq.pipeline import shipped_entry

        return shipped_entry(self.report.artifacts)


@dataclass(frozen=True)
class Evaluation:
    """One artifact scored by edgeq's evaluator."""

    artifact: Path
    runtime: str
    images: int
    map50_95: float
    map50: float
    skipped_images: int = 0  # undecodable or truncated images left out (bad_images="skip")
    latency_ms: float | None = None  # median of latency_runs timed runs on the first image (None: not timed)


def build_recipe(model: str | Path | None = None, *, target: str | None = None, recipe: str | Path | None = None,
                 data: str | Path | None = None, options: Mapping[str, Any] | None = None,
                 set: Mapping[str, Any] | None = None, **overrides: Any):  # noqa: A002 (the CLI's --set)
    """The validated Recipe for these arguments, as the CLI builds it from its flags."""
    from edgeq.recipe import load_recipe

    values = {"model": None if model is None else str(model), "data": None if data is None else str(data)}
    lists: dict[str, Any] = {"options": dict(options)} if options else {}
    sets = [f"{key}={_as_yaml(value)}" for key, value in (set or {}).items()]
    for key, value in overrides.items():
        key = _SPELLINGS.get(key, key)
        if value is None:  # not given, as an absent CLI flag
            continue
        if "." in key:
            sets.append(f"{key}={_as_yaml(value)}")
        elif isinstance(value, (list, tuple)):
            lists[key] = list(value)
        else:
            values[key] = value
    return load_recipe(None if recipe is None else str(recipe), target=target, overrides=values, sets=sets,
                       lists=lists)


def _as_yaml(value: Any) -> str:
    """A value as `--set` would spell it (JSON is YAML: lists, numbers, booleans keep their type)."""
    import json

    return value if isinstance(value, str) else json.dumps(value)


def export(model: str | Path | None = None, *, target: str | None = None, recipe: str | Path | None = None,
           data: str | Path | None = None, out: str | Path | None = None, force: bool = False,
           allow_fallback: bool | None = None, trust_model: bool = False, fast: bool = False,
           qat_onnx: str | Path | None = None, baseline: str | None = None, verbose: bool = False,
           jobs: int | None = None, options: Mapping[str, Any] | None = None,
           set: Mapping[str, Any] | None = None, **overrides: Any) -> ExportResult:  # noqa: A002
    """Export `model` (default: the demo detector) for `target` (a name, a comma list or "all") or `recipe`,
    exactly as `edgeq export` does; see the module docstring for the overrides."""
    built = build_recipe(model, target=target, recipe=recipe, data=data, options=options, set=set, **overrides)
    return export_recipe(built, out=out, force=force, allow_fallback=allow_fallback, trust_model=trust_model,
                         fast=fast, qat_onnx=qat_onnx, baseline=baseline, verbose=verbose, jobs=jobs)


def export_recipe(recipe, *, out: str | Path | None = None, force: bool = False, allow_fallback: bool | None = None,
                  fallback_flag: str | None = None, trust_model: bool = False, fast: bool = False,
                  qat_onnx: str | Path | None = None, baseline: str | None = None, verbose: bool = False,
                  progress: bool | None = None, jobs: int | None = None) -> ExportResult:
    """Export an already resolved Recipe (the CLI builds one from its flags); `out` defaults to edgeq-out/<target>;
    progress bars follow `verbose` unless `progress` says otherwise."""
    from edgeq.intake import ExportRequest
    from edgeq.pipeline import ExportRun, is_target_list

    several = is_target_list(recipe.target)
    name = ("all" if recipe.target == "all" else recipe.target.replace(",", "+")) if several else recipe.target
    folder = Path(out) if out is not None else Path("edgeq-out") / name
    request = ExportRequest(recipe=recipe, out=folder, force=force, allow_fallback=allow_fallback,
                            fallback_flag=fallback_flag, progress=verbose if progress is None else progress,
                            trust_model=trust_model, fast=fast,
                            qat_onnx=None if qat_onnx is None else Path(qat_onnx), baseline=baseline, jobs=jobs)
    with _quiet(not verbose):
        result = ExportRun(request).run()
    return ExportResult(out=folder, reports=result.reports, matrix=result.matrix)


def evaluate(artifact: str | Path, *, data: str | Path | None = None, imgsz: int | None = None,
             layout: str | None = None, head_json: str | Path | None = None, split: str = "val",
             val_images: int = 300, bad_images: str = "refuse", trust_model: bool = False, latency_runs: int = 0,
             verbose: bool = False, progress: bool | None = None) -> Evaluation:
    """Score any artifact edgeq can run (ours, `yolo export`'s) on `data` (default: the demo data), as `edgeq eval`
    does (the CLI prints what this returns); progress bars follow `verbose` unless `progress` says otherwise."""
    from edgeq.artifacts import open_any
    from edgeq.data import load_dataset, preprocess, read_image, subsample, usable_images
    from edgeq.evaluation.evaluator import EvalSet, median_latency_ms
    from edgeq.evaluation.evaluator import evaluate as score
    from edgeq.head import HeadLayout
    from edgeq.progress import log

    _check_evaluation_arguments(val_images, latency_runs, imgsz, head_json)
    bars = verbose if progress is None else progress
    with _quiet(not verbose):
        if data is None:
            from edgeq import demo

            data = demo.demo_dataset(train=1, val=val_images, progress=bars)
        dataset = load_dataset(Path(data))
        runner, head, found = open_any(Path(artifact), HeadLayout(layout) if layout else None, imgsz,
                                       None if head_json is None else Path(head_json), dataset,
                                       trust_model=trust_model)
        images = usable_images(subsample(dataset.images(split), val_images), bad_images, log)
        eval_set = EvalSet(images.paths, head.nc)
        with runner:
            result = score(runner, found, head, eval_set, desc=Path(artifact).name, progress=bars)
            latency = median_latency_ms(runner, preprocess(read_image(eval_set.images[0]), head.imgsz)[0],
                                        latency_runs) if latency_runs else None
    return Evaluation(artifact=Path(artifact), runtime=runner.runtime, images=result.images,
                      map50_95=round(result.map50_95, 2), map50=round(result.map50, 2),
                      skipped_images=len(images.skipped), latency_ms=latency)


def compare_device(report: str | Path, device: str | Path, *, outputs: bool = True):
    """A deploy kit's device validation (`infer.py --validate`'s device-validation.json) against `report`
    (report.json): refused unless both are of the same artifact and evaluation set by hash; `outputs` also runs the
    artifact here on the inputs the device saved, for per-output agreement. Returns a DeviceComparison."""
    from edgeq.deploy.compare import compare_device as compare

    return compare(Path(report), Path(device), outputs=outputs)


def _check_evaluation_arguments(val_images: int, latency_runs: int, imgsz: int | None,
                                head_json: str | Path | None) -> None:
    """Numbers that would run and report nonsense (mAP 0.00 on no images) are refused before any work."""
    from edgeq.errors import EdgeqError
    from edgeq.model import check_imgsz

    if val_images < 1:
        raise EdgeqError(f"--val-images {val_images}: evaluation needs at least one image", "use e.g. --val-images 300")
    if latency_runs < 0:
        raise EdgeqError(f"--latency-runs {latency_runs} is negative", "give the timed runs (0: no timing)")
    if imgsz is not None:
        check_imgsz(imgsz)
    if head_json is not None and not Path(head_json).is_file():
        raise EdgeqError(f"--head-json '{head_json}' is not a file",
                         "pass the <artifact>-head.json shipped beside the artifact")


@contextlib.contextmanager
def _quiet(quiet: bool) -> Iterator[None]:
    """No printing: edgeq's own log lines off, and what libraries print from Python (NNCF's and ModelOpt's
    progress, Ultralytics' banners) kept out of the caller's stdout and stderr."""
    from edgeq import progress

    if not quiet:
        yield
        return
    with progress.silenced(), contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield
