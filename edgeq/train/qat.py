"""`edgeq qat --target T`: quantization-aware fine-tuning under the target's own fake quantization, then the
target's emitters on the result, PTQ and QAT side by side in one report.

The flow: the same intake as `edgeq export` (model, data, calibration images, FP32 ONNX, Job) -> the target's
QuantAwareTraining (its backend's library) instruments edgeq's training graph and calibrates it exactly as the
target's PTQ does -> fine-tune with Ultralytics' loss and augmentation plus distillation from the FP32 model ->
export the trained graph -> `edgeq export` of the same recipe with that graph (`Job.qat_onnx`), inside this
run's output folder. Where the target's full toolchain is missing (training on a GPU machine without OpenVINO),
the run stops after the trained ONNX and says the `edgeq export --qat-onnx` line that finishes it.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from edgeq.backend import backend_for
from edgeq.errors import EdgeqError
from edgeq.intake import ExportRequest, check_output_folder, take_in, validated_options
from edgeq.progress import StageTimer, log
from edgeq.staging import staged_output
from edgeq.train.device import TrainSize, resolve_device
from edgeq.train.source import training_split

DEFAULT_EPOCHS = 5  # a fine-tune from the PTQ starting point, not a training run


@dataclass(frozen=True)
class QatRequest:
    intake: ExportRequest  # the export's intake (recipe, images, Job); `out` is where the QAT run writes
    epochs: int = DEFAULT_EPOCHS
    batch: int = 16
    lr: float = 1e-5
    device: str | None = None
    workers: int = 4
    distill_weight: float = 1.0
    export: bool = True  # run the target's emitters on the result where its toolchain is installed
    export_args: tuple[str, ...] = ()  # the job's CLI arguments, for the `edgeq export --qat-onnx` line


@dataclass
class QatReport:
    target: str
    model: str
    library: str
    scheme: str
    device: str
    epochs: int
    train_images: int
    calibration_images: int
    train_seconds: float
    qat_onnx: str
    history: list[dict]
    export: dict | None = None  # rows of the export report (PTQ and QAT side by side)
    finish_with: str | None = None  # the command that emits the artifacts where the toolchain is
    export_error: str | None = None  # the export after training failed; the trained graph is kept
    notes: list[str] = field(default_factory=list)

    def markdown(self) -> str:
        lines = [f"# edgeq qat: {self.model} on {self.target}", "",
                 f"{self.scheme}.",
                 (f"Fine-tuned {self.epochs} epochs ({self.train_images} train images) on {self.device} in "
                 f"{self.train_seconds / 60:.1f} min from the PTQ calibration on {self.calibration_images} "
                 "images, with distillation from the FP32 model."), "",
                 "| epoch | detection loss | distillation loss | seconds |", "|---:|---:|---:|---:|"]
        lines += [f"| {h['epoch']} | {h['detection']:.4f} | {h['distillation']:.4f} | {h['seconds']} |"
                  for h in self.history]
        if self.export:
            lines += ["", "## PTQ and QAT, same evaluator, same images", "",
                      "| artifact | precision | status | mAP50-95 | drop vs FP32 |", "|---|---|---|---:|---:|"]
            lines += [f"| {r['name']} | {r['precision']} | {r['status']} | {r['map']} | {r['drop']} |"
                      for r in self.export["rows"]]
            lines += ["", f"Full report: {self.export['folder']}/report.md"]
        if self.finish_with:
            lines += ["", ("Not emitted in this run; emit and evaluate where the target's toolchain is installed "
                           f"with: `{self.finish_with}`")]
        return "\n".join(lines + [f"- {n}" for n in self.notes]) + "\n"


def run_qat(request: QatRequest) -> QatReport:
    recipe = request.intake.recipe
    out = request.intake.out.resolve()
    check_output_folder(out, request.intake.force)
    backend = backend_for(recipe.target)
    training_class = backend.quantization_aware(recipe.target)
    missing = [m for m in training_class.requires if _missing(m)]
    if missing:
        raise EdgeqError(f"quantization-aware training for {recipe.target} needs {', '.join(missing)}",
                         f"{backend.install_hint()}")
    if recipe.keep_float:
        raise EdgeqError("--keep-float does not apply to quantization-aware training",
                         "drop it: QAT trains every quantized layer; keep layers in float in the export instead")
    options = validated_options(backend, recipe)
    from edgeq import demo

    if recipe.data:
        train_yaml = training_split(Path(recipe.data))
    else:
        log("no --data: fine-tuning on synthetic shapes (seed 1000); calibration and scoring on the demo's seed-0 "
            "images, as an export does")
        train_yaml = demo.demo_training_dataset(request.intake.progress)
    with staged_output(out, log, request.intake.force) as staging:
        report = _qat(request, backend, options, training_class, train_yaml, staging)
    if report.export_error:  # training is not lost to a failing emitter: its result is in place, then the error
        raise EdgeqError(f"the export after training failed: {report.export_error}",
                         f"the trained graph is in {out}; after fixing that, run: {report.finish_with}")
    return report


def _missing(module: str) -> bool:
    from edgeq.env import importable

    return not importable(module)


def _qat(request: QatRequest, backend, options, training_class, train_yaml: Path, staging: Path) -> QatReport:
    import torch

    from edgeq.train.graph import TrainingGraph
    from edgeq.train.loader import train_loader
    from edgeq.train.loop import LoopSettings, detection_criterion, fine_tune

    recipe = request.intake.recipe
    timer = StageTimer()
    intake = take_in(request.intake, backend, options, staging / "intake", timer, log_dir=staging.parent)
    job, detector = intake.job, intake.detector
    training = training_class(job)
    loader = train_loader(train_yaml, job.head.imgsz, request.batch, request.workers)
    device_index = resolve_device(request.device, TrainSize(len(loader.dataset), request.epochs, job.head.imgsz),
                                  detector.module)
    device = "cpu" if device_index == "cpu" else f"cuda:{device_index.split(',')[0]}"
    head = training.head_quantized
    log(f"qat for {recipe.target}: {training.describe()}; {len(job.calibration)} calibration images, "
        f"{len(loader.dataset)} train images, {request.epochs} epochs on {device}")
    teacher = TrainingGraph(detector, head).to(device).eval()
    calibration = [torch.from_numpy(batch).to(device) for batch in job.calibration]
    student = training.prepare(TrainingGraph(detector, head).to(device), calibration)
    criterion = detection_criterion(detector, device, job.head.end2end)
    strides = teacher.head.strides if head else None
    settings = LoopSettings(epochs=request.epochs, lr=request.lr, distill_weight=request.distill_weight,
                            reg_max=job.head.reg_max, decoded=head, progress=job.progress)
    start = time.perf_counter()
    history = fine_tune(student, teacher, loader, criterion, strides, settings, device, log)
    train_seconds = time.perf_counter() - start
    qat_onnx = training.export(student, staging / f"{detector.source.stem}-qat-{recipe.target}.onnx")
    report = QatReport(target=recipe.target, model=detector.source.name, library=training.library,
                       scheme=training.describe(), device=device, epochs=request.epochs,
                       train_images=len(loader.dataset), calibration_images=len(job.calibration),
                       train_seconds=round(train_seconds, 1), qat_onnx=qat_onnx.name, history=history)
    shutil.rmtree(staging / "intake", ignore_errors=True)
    if request.export and not backend.missing(recipe.target):
        try:
            report.export = _export_with_qat(request, qat_onnx, staging)
        except EdgeqError as exc:
            report.export_error = exc.one_line()
            report.finish_with = _finish_command(request, qat_onnx)
    else:
        report.finish_with = _finish_command(request, qat_onnx)
    (staging / "qat.json").write_text(json.dumps(asdict(report), indent=2))
    (staging / "qat.md").write_text(report.markdown())
    return report


def _finish_command(request: QatRequest, qat_onnx: Path) -> str:
    import shlex

    recipe = request.intake.recipe
    job = list(request.export_args) or ["--target", recipe.target]
    parts = ["edgeq", "export", *job, "--qat-onnx", str(request.intake.out / qat_onnx.name)]
    return " ".join(shlex.quote(p) for p in parts)


def _export_with_qat(request: QatRequest, qat_onnx: Path, staging: Path) -> dict:
    from edgeq.pipeline import run_export

    recipe = request.intake.recipe
    folder = f"export-{recipe.target}"
    report = run_export(ExportRequest(recipe=recipe, out=staging / folder, progress=request.intake.progress,
                                      trust_model=request.intake.trust_model, qat_onnx=qat_onnx))
    return {"folder": folder, "rows": report.brief_rows()}
