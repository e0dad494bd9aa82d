"""What every command that quantizes starts from: the model (first, so a wrong --model fails before any data
work), the dataset with its calibration and evaluation subsets (labels validated up front), the FP32 ONNX pair,
and the backend's Job. `edgeq export` and `edgeq analyze` share it, so both see the same images and graph.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from pydantic import ValidationError

from edgeq.backend import Backend, Job, make_job
from edgeq.data import ImageBatches, load_dataset, subsample, usable_images
from edgeq.data.provenance import ImageSets, image_sets, refuse_overlap
from edgeq.errors import EdgeqError
from edgeq.evaluation.evaluator import EvalSet
from edgeq.progress import log
from edgeq.recipe import Recipe, describe_validation_error
from edgeq.staging import check_output_folder, protect_inputs  # noqa: F401  (the commands import the first here)


@dataclass(frozen=True)
class ExportRequest:
    """What the user asked for, as every command that quantizes takes it (`export` of one target or several,
    `analyze`, `qat`): the recipe (for several targets its `target` holds the list as typed), where the output
    goes, and how to treat the user's files and the accelerator's limits."""

    recipe: Recipe
    out: Path
    force: bool = False  # replace an output folder that already holds files
    allow_fallback: bool | None = None  # None: the target's default (one target), allowed (several)
    fallback_flag: str | None = None  # the option the user typed for it (quoted back in a refusal)
    progress: bool = True
    trust_model: bool = False  # unpickle the checkpoint in full (runs code it names); off: weights-only
    fast: bool = False  # several targets: score reference-kernel artifacts on a subset
    qat_onnx: Path | None = None  # one target: a graph `edgeq qat` trained, built beside the PTQ artifacts
    baseline: str | None = None  # "ultralytics": the default path's own export scored beside each target's
    jobs: int | None = None  # several targets: worker processes side by side (None: one per CPU the memory holds)


@dataclass
class Intake:
    detector: object  # edgeq.model.Detector
    data_path: Path
    dataset: object  # edgeq.data.Dataset
    calib_paths: list[Path]
    eval_set: EvalSet
    job: Job
    skipped_images: dict[str, int]  # bad images left out (`bad_images: skip`), per use
    image_sets: ImageSets | None = None  # both subsets by content hash, for the report (edgeq.data.provenance)

    @property
    def head(self):
        return self.job.head


def validated_options(backend: Backend, recipe: Recipe):
    options_model = backend.options_model(recipe.target)
    try:
        return options_model.model_validate(recipe.options)
    except ValidationError as exc:
        raise describe_validation_error(exc, prefix="options.", model=options_model, target=recipe.target) from None


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


def take_in(request: ExportRequest, backend: Backend, options, staging: Path, timer, log_dir: Path) -> Intake:
    """One target's intake (`analyze`, `qat`): the shared part and its Job, its logs kept in `log_dir`."""
    return take_in_shared(request, request.recipe, staging, timer).for_target(
        backend, request.recipe, options, staging, log_dir, request.allow_fallback, request.fallback_flag,
        request.progress)


@dataclass
class SharedIntake:
    """What every target of a run starts from: the model, the data with its calibration and evaluation subsets,
    the FP32 ONNX pair, and the calibration images (decoded once, see ImageBatches)."""

    detector: object  # edgeq.model.Detector
    data_path: Path
    dataset: object  # edgeq.data.Dataset
    calib_paths: list[Path]
    eval_set: EvalSet
    onnx_models: object  # edgeq.model.OnnxModels
    calibration: ImageBatches
    skipped_images: dict[str, int]  # bad images left out (`bad_images: skip`): {"calibration": n, "evaluation": m}
    image_sets: ImageSets | None = None  # both subsets by content hash, for the report (edgeq.data.provenance)
    graphs: dict = field(default_factory=dict)  # the ONNX pair as read once, shared by every target's Job

    @property
    def head(self):
        return self.detector.head

    def for_target(self, backend: Backend, recipe: Recipe, options, staging: Path, log_dir: Path,
                   allow_fallback: bool | None, fallback_flag: str | None, progress: bool,
                   qat_onnx: Path | None = None) -> Intake:
        """The backend's Job for one target (its options, fallback policy and --keep-float checked); every trial
        build of it keeps its logs in `log_dir`."""
        job = make_job(backend, recipe.target, options=options, allow_fallback=allow_fallback,
                       fallback_flag=fallback_flag, head=self.head, body_onnx=self.onnx_models.body,
                       full_onnx=self.onnx_models.full, calibration=self.calibration, staging=staging,
                       log_dir=log_dir, activations=self.detector.activations, progress=progress,
                       batch=recipe.batch, qat_onnx=qat_onnx, _graphs=self.graphs)
        job = replace(job, keep_float=tuple(check_keep_float(job, recipe.keep_float)))
        return Intake(detector=self.detector, data_path=self.data_path, dataset=self.dataset,
                      calib_paths=self.calib_paths, eval_set=self.eval_set, job=job,
                      skipped_images=self.skipped_images, image_sets=self.image_sets)


def take_in_shared(request: ExportRequest, recipe: Recipe, staging: Path, timer) -> SharedIntake:
    """The model, the data and its subsets under `recipe` (the request's, or a run's first target's), and the FP32
    ONNX pair."""
    from edgeq.model import export_onnx, load_detector

    with timer.stage("load"):
        detector = load_detector(resolve_model(recipe), recipe.imgsz, request.trust_model, recipe.head_branch)
    head, imgsz = detector.head, detector.head.imgsz
    protect_inputs(staging, held=[("model", detector.source), *(("recipe", p) for p in recipe.sources)])
    data_path = resolve_data(recipe, request.progress)
    dataset = load_dataset(data_path)
    protect_dataset(staging, dataset)
    if dataset.names and len(dataset.names) != head.nc:
        raise EdgeqError(f"dataset '{data_path}' has {len(dataset.names)} classes but the model has {head.nc}",
                         "evaluate with the dataset the model was trained on")
    calib = usable_images(subsample(dataset.images(recipe.calibration.split), recipe.calibration.images,
                                    recipe.calibration.seed), recipe.bad_images, log)
    evaluation = usable_images(subsample(dataset.images(recipe.evaluation.split), recipe.evaluation.images,
                                         recipe.evaluation.seed), recipe.bad_images, log)
    calib_paths, skipped = calib.paths, {"calibration": len(calib.skipped), "evaluation": len(evaluation.skipped)}
    if any(skipped.values()):
        log(f"bad_images: skip: left out {skipped['calibration']} calibration and {skipped['evaluation']} "
            "evaluation image(s) that cannot be decoded or are truncated")
    sets = image_sets(calib_paths, evaluation.paths, dataset.root)
    if not recipe.calibration.allow_overlap:
        refuse_overlap(sets, recipe.calibration.split, recipe.evaluation.split)
    elif sets.overlap:
        log(f"allow_overlap: {len(sets.overlap)} of the {len(calib_paths)} calibration images are also evaluation "
            "images (by content); the report says so")
    eval_set = EvalSet(evaluation.paths, head.nc)  # labels validated here, before heavy work
    log(f"data {data_path} (root {dataset.root}), {recipe.evaluation.split} split: {eval_set.label_stats.summary()}")
    log(f"model {detector.source.name}: {head.head_class} head, {head.branch} branch ({head.selection}), "
        f"{head.nc} classes, input {imgsz}, activation {detector.main_activation}"
        f"{'' if detector.trained else ' (untrained YAML: mAP is meaningless)'}")
    with timer.stage("onnx"):
        onnx_models = export_onnx(detector, staging)
    return SharedIntake(detector=detector, data_path=data_path, dataset=dataset, calib_paths=calib_paths,
                        eval_set=eval_set, onnx_models=onnx_models, calibration=ImageBatches(calib_paths, imgsz),
                        skipped_images=skipped, image_sets=sets)


def protect_dataset(staging: Path, dataset) -> None:
    """The output may not be or hold the data.yaml or the dataset root, nor touch a split's image folders."""
    protect_inputs(staging, held=[("dataset", dataset.source), ("dataset root", dataset.root)],
                   listed=[(f"'{split}' split", location) for split, locations in dataset.locations.items()
                           for location in locations])


def check_keep_float(job: Job, names: list[str]) -> list[str]:
    """`--keep-float` names: layers of the FP32 ONNX, on a target that has a higher precision to keep them in."""
    if not names:
        return []
    import difflib

    plan = job.plan
    if plan is None or plan.scheme.higher_precision is None:
        why = plan.scheme.no_higher_precision_why if plan else "its profile describes no quantization scheme"
        raise EdgeqError(f"--keep-float: target {job.target} cannot keep layers out of INT8 ({why})",
                         f"drop --keep-float, or export for a target with float layers ({_targets_with_float()})")
    if (hp := plan.scheme.higher_precision).scope == "model":
        raise EdgeqError(f"--keep-float: target {job.target} has no per-layer higher precision ({hp.scope_why})",
                         f"drop --keep-float and build the whole model in {hp.precision} ({hp.how}), or export for "
                         f"a target with per-layer float layers ({_targets_with_float()})")
    known = [n.name for n in job.graph(job.full_onnx).graph.node if n.name]
    for name in names:
        if name not in known:
            close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
            raise EdgeqError(f"--keep-float: no layer named '{name}' in the model",
                             f"did you mean {', '.join(repr(c) for c in close)}? (`edgeq analyze` lists the layers)"
                             if close else "`edgeq analyze` lists the layers by name")
    return list(dict.fromkeys(names))


def _targets_with_float() -> str:
    """The installed targets whose scheme has a higher precision, named from their profiles."""
    from edgeq.backend import discover

    names = [t for t, b in discover().items()
             if (q := b.profiles[t].quantization) is not None and q.higher_precision is not None
             and q.higher_precision.scope == "layer"]
    return ", ".join(sorted(names)) or "none installed"
