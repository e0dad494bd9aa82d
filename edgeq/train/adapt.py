"""`edgeq adapt`: swap a trained detector's activations for ones the target runs well, and win the accuracy back
by fine-tuning with Ultralytics' own trainer (its losses, augmentation, schedule and EMA) plus its knowledge
distillation from the original model as the teacher (score-weighted L2 on the feature maps entering the head).

Output: `<stem>-<activation>.pt`, an Ultralytics checkpoint that loads with `YOLO(...)` and with edgeq's
weights-only reader; `adapt.md` / `adapt.json` (FP32 mAP50-95 before and after on the same evaluator, epochs,
wall time, and with `--target` the INT8 figures of the export that ends the run, in `export-<target>/`).
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from edgeq.errors import EdgeqError
from edgeq.intake import check_output_folder, log, protect_dataset
from edgeq.staging import protect_inputs, staged_output
from edgeq.train.device import TrainSize, resolve_device
from edgeq.train.source import load_training_source, training_split, write_sanitized_copy
from edgeq.train.swap import SWAPS, activation_counts, check_activation, swap_activations

DEFAULT_EPOCHS = 40  # YOLOv8n, a few thousand 640 px images: about 10 minutes on one H200 (README)


@dataclass(frozen=True)
class AdaptRequest:
    activation: str
    out: Path
    model: str | None = None  # None: the embedded SiLU demo detector
    data: str | None = None  # None: synthetic shapes (train seed 1000, scored on the seed-0 demo images)
    target: str | None = None  # export for it at the end and report its INT8 figures
    epochs: int = DEFAULT_EPOCHS
    batch: int = 16
    imgsz: int | None = None
    device: str | None = None
    workers: int = 4
    distill_weight: float = 6.0  # Ultralytics' `dis`; 0 turns distillation off
    train_fraction: float = 1.0  # Ultralytics' `fraction` of the train split
    lr: float = 0.0005  # AdamW, cosine schedule: a fine-tune of converged weights, not a training from scratch
    validate: bool = True  # per-epoch validation picks best.pt; off: the last weights
    val_images: int | None = None  # edgeq's evaluation subset (all of val when None)
    force: bool = False
    trust_model: bool = False
    progress: bool = True


@dataclass
class AdaptReport:
    model: str
    activation: str
    replaced_modules: int
    activations_after: dict[str, int]
    data: str
    eval_images: int
    device: str
    epochs: int
    train_seconds: float
    fp32_before: float
    fp32_after: float
    checkpoint: str
    export: dict | None = None  # target, INT8 rows, findings off the accelerator
    notes: list[str] = field(default_factory=list)

    @property
    def change(self) -> float:
        return self.fp32_after - self.fp32_before

    def markdown(self) -> str:
        lines = [f"# edgeq adapt: {self.model} -> {self.activation}", "",
                 (f"Activation modules replaced: {self.replaced_modules}; after: "
                 f"{', '.join(f'{k} {v}' for k, v in self.activations_after.items())}."),
                 (f"Fine-tuned {self.epochs} epochs on {self.device} in {self.train_seconds / 60:.1f} min "
                 "(Ultralytics trainer, distillation from the original model)."), "",
                 "| model | mAP50-95 (FP32) | change |", "|---|---:|---:|",
                 f"| original | {self.fp32_before:.2f} | |",
                 f"| {self.checkpoint} | {self.fp32_after:.2f} | {self.change:+.2f} |", "",
                 f"Same evaluator, same {self.eval_images} images of {self.data} (val split)."]
        if self.export:
            lines += ["", f"## INT8 on {self.export['target']}", "",
                      "| artifact | precision | status | mAP50-95 | drop vs adapted FP32 |", "|---|---|---|---:|---:|"]
            lines += [f"| {r['name']} | {r['precision']} | {r['status']} | {r['map']} | {r['drop']} |"
                      for r in self.export["rows"]]
            lines += ["", (f"Findings off the accelerator or refused: {self.export['off_accelerator']} "
                          f"(full report: {self.export['folder']}/report.md)")]
        lines += [f"- {note}" for note in self.notes]
        return "\n".join(lines) + "\n"


def run_adapt(request: AdaptRequest) -> AdaptReport:
    check_activation(request.activation)
    out = request.out.resolve()
    check_output_folder(out, request.force)
    if request.target:
        refuse_if_target_refuses(request.target, request.activation)
    from edgeq import demo

    model_path = Path(request.model) if request.model else demo.demo_model("silu")
    source = load_training_source(model_path, request.imgsz, request.trust_model)
    if request.data:
        train_yaml = eval_yaml = training_split(Path(request.data))
    else:
        log("no --data: fine-tuning on synthetic shapes (seed 1000), scoring on the demo's seed-0 images")
        train_yaml = demo.demo_training_dataset(request.progress)
        eval_yaml = demo.demo_dataset(train=1, val=request.val_images or 300, progress=request.progress)
    from edgeq.data import load_dataset

    train_images = round(len(load_dataset(train_yaml).images("train")) * request.train_fraction)
    device = resolve_device(request.device, TrainSize(train_images, request.epochs, source.imgsz), source.model)
    with staged_output(out, log, request.force) as staging:
        protect_inputs(staging, held=[("model", source.path)])
        for yaml_path in {train_yaml, eval_yaml}:
            protect_dataset(staging, load_dataset(yaml_path))
        report = _adapt(request, source, train_yaml, eval_yaml, device, staging)
    return report


def refuse_if_target_refuses(target: str, activation: str) -> None:
    """The swap must give the target an activation its own rule table accepts (data, not a list kept here)."""
    from edgeq.backend import backend_for
    from edgeq.rules import Layer, Severity

    layer = {"relu": Layer(name="activation", op="Relu"),
             "relu6": Layer(name="activation", op="Clip", attrs={"min": 0.0, "max": 6.0})}[activation]
    table = backend_for(target).onnx_rules(target)
    blocking = [f for f in (table.evaluate([layer]) if table else []) if f.severity is not Severity.WARNING]
    if blocking:
        others = [a for a in SWAPS if a != activation]
        raise EdgeqError(f"--activation {activation}: target {target} still refuses it ({blocking[0].message})",
                         f"use --activation {others[0]}" if others else blocking[0].fix)


def _adapt(request: AdaptRequest, source, train_yaml: Path, eval_yaml: Path, device: str,
           staging: Path) -> AdaptReport:
    import copy

    work = staging / "train"
    teacher_copy = write_sanitized_copy(source, source.model, work / "teacher.pt")
    student = copy.deepcopy(source.model)
    replaced = swap_activations(student, request.activation)
    student_copy = write_sanitized_copy(source, student, work / "student.pt")
    log(f"{replaced} activation modules -> {request.activation}; fine-tuning {request.epochs} epochs on "
        f"{'cuda:' + device if device != 'cpu' else 'cpu'}")
    start = time.perf_counter()
    best = _train(request, student_copy, teacher_copy, train_yaml, source.imgsz, device, work)
    train_seconds = time.perf_counter() - start
    stem = source.path.stem.replace("-silu", "")
    checkpoint = staging / f"{stem}-{request.activation}.pt"
    shutil.copyfile(best, checkpoint)
    from edgeq.model import load_detector

    adapted = load_detector(checkpoint, source.imgsz)  # weights-only: what every edgeq command will read
    before, after, images = _fp32_maps(source.path, checkpoint, eval_yaml, source.imgsz, request)
    report = AdaptReport(model=source.path.name, activation=request.activation, replaced_modules=replaced,
                         activations_after=activation_counts(adapted.module), data=str(eval_yaml),
                         eval_images=images, device="cpu" if device == "cpu" else f"cuda:{device}",
                         epochs=request.epochs,
                         train_seconds=round(train_seconds, 1), fp32_before=before, fp32_after=after,
                         checkpoint=checkpoint.name)
    if request.target:
        report.export = _export_adapted(request, checkpoint, eval_yaml, staging)
    shutil.rmtree(work / "run" / "weights", ignore_errors=True)  # best.pt is the checkpoint above
    for stale in ("teacher.pt", "student.pt"):
        (work / stale).unlink(missing_ok=True)
    (staging / "adapt.json").write_text(json.dumps(asdict(report), indent=2))
    (staging / "adapt.md").write_text(report.markdown())
    return report


def _train(request: AdaptRequest, student: Path, teacher: Path, data: Path, imgsz: int, device: str,
           work: Path) -> Path:
    """Ultralytics' trainer on the swapped student, its distillation from the teacher; returns best.pt."""
    from edgeq.train.ultralytics_env import training_environment

    with training_environment(work):
        from ultralytics import YOLO
        from ultralytics.nn.modules import Conv

        from edgeq.train.trainer import trainer_class

        default_act = Conv.default_act  # the swapped YAML sets this class attribute for the whole process
        try:
            YOLO(str(student), task="detect").train(
                trainer=trainer_class(request.activation), data=str(data), epochs=request.epochs, imgsz=imgsz,
                batch=request.batch, device=device, workers=request.workers, project=str(work), name="run",
                exist_ok=True, pretrained=True, amp=False, plots=False, val=request.validate, seed=0,
                deterministic=False, fraction=request.train_fraction,
                distill_model=str(teacher) if request.distill_weight > 0 else None, dis=request.distill_weight,
                warmup_epochs=min(1.0, request.epochs / 4), close_mosaic=min(10, request.epochs // 4),
                optimizer="AdamW", lr0=request.lr, cos_lr=True, verbose=False,
                cache="ram" if device != "cpu" else False)  # a GPU waits on JPEG decoding otherwise
        finally:
            Conv.default_act = default_act
    best = work / "run" / "weights" / "best.pt"
    if not best.is_file():
        best = work / "run" / "weights" / "last.pt"
    if not best.is_file():
        raise EdgeqError(f"training wrote no checkpoint under {best.parent}", "see the training log above")
    return best


def _fp32_maps(original: Path, adapted: Path, eval_yaml: Path, imgsz: int, request: AdaptRequest):
    from edgeq.artifacts import open_any
    from edgeq.data import load_dataset, subsample
    from edgeq.evaluation.evaluator import EvalSet, evaluate
    from edgeq.head import HeadLayout

    dataset = load_dataset(eval_yaml)
    results, eval_set = [], None
    for path in (original, adapted):
        runner, head, layout = open_any(path, HeadLayout.PIXEL, imgsz, None, dataset, request.trust_model
                                        and path == original)
        eval_set = eval_set or EvalSet(subsample(dataset.images("val"), request.val_images), head.nc)
        with runner:
            results.append(evaluate(runner, layout, head, eval_set, desc=f"FP32 {path.name}",
                                    progress=request.progress).map50_95)
    return round(results[0], 2), round(results[1], 2), len(eval_set)


def _export_adapted(request: AdaptRequest, checkpoint: Path, data: Path, staging: Path) -> dict:
    """The export that ends `adapt --target T`: the adapted checkpoint through the target's whole pipeline."""
    from edgeq.pipeline import ExportRequest, run_export
    from edgeq.recipe import load_recipe
    from edgeq.rules import Severity

    recipe = load_recipe(None, target=request.target, overrides={"model": str(checkpoint), "data": str(data),
                                                                 "evaluation.images": request.val_images})
    folder = f"export-{request.target}"
    report = run_export(ExportRequest(recipe=recipe, out=staging / folder, progress=request.progress))
    rows = report.brief_rows()
    off = [f for f in report.findings if f.get("severity") in (Severity.FALLBACK.value, Severity.ERROR.value)]
    return {"target": request.target, "folder": folder, "rows": rows, "off_accelerator": len(off)}
