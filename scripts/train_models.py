#!/usr/bin/env python3
"""Train the detectors edgeq ships or benchmarks with, using Ultralytics' own trainer (GPU machine).

Every model is a row of JOBS: an Ultralytics architecture (packaged YAML name or a file), an optional activation
swap, the data it learns from, its input size and its training recipe (optimizer, lr0, seed, AMP, close_mosaic,
cosine LR, batch, epochs). Several jobs train concurrently, one subprocess each, on one GPU (nano models leave it
mostly idle; the CPU data loaders are the limit, so `--hours` bounds each job's training time through
Ultralytics' `time=` argument, which re-plans the epochs and the LR schedule to fit; the plan never exceeds the
job's own epochs, so a fast machine trains exactly the recipe and a slow one fewer epochs, each with its whole
schedule and its close_mosaic epochs at the end).

    demo-yolov8n-silu / -relu6   the embedded demo detectors (edgeq/assets), synthetic shapes, 320 px
    demo-yolo26n / -yolo11n / -yolov10n
                                 today's heads on the same shapes (end-to-end YOLO26, YOLOv10; YOLO11)
    hardhat-yolov8n-silu / -relu6, hardhat-yolo26n, hardhat-yolo11n
                                 real photographs (../shared/datasets/hardhat, Roboflow labels as exported), 640 px
    shapes2-yolo26n-a / -b / -c / -d
                                 YOLO26n "trained elsewhere" (issue 23): scripts/shapes_v2.py's other shapes and
                                 rendering; -a is the issue's recipe, -b the same with other data and seed, -c
                                 another recipe, -d SGD with cosine LR; -e (the issue's recipe, other data
                                 and seed), -f and -g (other schedules) are held out: never used to choose a default
    shapes-yolo26n-sgd           YOLO26n on edgeq's shapes, other images (seed 2000), SGD, cosine LR
The benchmark ones (all but demo-yolov8n-*) are kept out of the wheel (benchmarks/models).

Synthetic data: each job learns from its own data seed's images (edgeq's demo detectors: seed 1000) and picks
best.pt on that seed's val split; it is scored at the end on seed-0 val images of its generator (for edgeq's
shapes, the demo data edgeq calibrates and evaluates on), which it never saw. The hard-hat models learn from
the train split, pick best.pt on val (Ultralytics' default) and are scored on val.

Nothing is downloaded: no pretrained weights, no plot fonts (plots=False; edgeq's training environment, as for
`edgeq adapt`), and no AMP check model: Ultralytics' check_amp compares a downloaded yolo26n.pt in FP32 and AMP,
which offline cannot run; a job with amp=True has it replaced by its device rule alone (AMP on CUDA only), so the
recipe does not depend on how the download fails. Ultralytics imports polars only to copy results.csv into the
checkpoint; where polars is missing (the GPU machine), a stand-in that makes that step store nothing is
registered, and nothing else changes.

    python scripts/train_models.py --jobs shapes2-yolo26n-a hardhat-yolo11n --hours 0.12 --device 0 \\
        --hardhat ../shared/datasets/hardhat/data.yaml --workdir /tmp/edgeq-train --out /tmp/models

--epochs, --batch, --train-images, --imgsz and --fraction override every chosen job's own (tests on the CPU).
The embedded demo detectors (edgeq/assets) came from
    python scripts/train_models.py --jobs demo-yolov8n-silu demo-yolov8n-relu6 --epochs 100 --device 0
benchmarks/models/README.md gives the commands of the others.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "scripts")]  # the GPU machine runs this from a checkout, edgeq not installed

from edgeq.train.swap import SWAPS  # the YAML spelling of each swap, shared with `edgeq adapt`)
from edgeq.train.ultralytics_env import training_environment

ASSETS = REPO / "edgeq" / "assets"
TRAIN_SEED = 1000  # edgeq's demo detectors learn from (and pick best.pt on) these synthetic images
EVAL_SEED = 0  # each generator's held-out evaluation images (for edgeq's shapes, the demo calibration/val data)
SYNTHETIC_IMGSZ = 320
TRAIN_VAL_IMAGES = 300  # the data seed's val split, on which best.pt is picked
EVAL_IMAGES = {"shapes": 300, "shapes_v2": 500}


@dataclass(frozen=True)
class TrainJob:
    model: str  # Ultralytics packaged YAML name (yolo26n.yaml) or a path relative to the repository
    data: str  # "shapes" (edgeq.synthetic) or "shapes_v2" (scripts/shapes_v2.py), generated; or "hardhat" (--hardhat)
    imgsz: int
    activation: str | None = None  # "relu6": nn.ReLU6() in every Conv (Ultralytics' top-level `activation` key)
    epochs: int = 65  # the recipe's epochs; with --hours, the most that the re-planned schedule may take
    batch: int = 64
    data_seed: int = TRAIN_SEED  # synthetic data only
    train_images: int = 6000  # synthetic data only
    optimizer: str = "auto"  # Ultralytics' names; "auto" picks SGD or AdamW (and its own lr0) from the iterations
    lr0: float = 0.01  # Ultralytics' default
    seed: int = 0
    amp: bool = False
    close_mosaic: int = 10  # Ultralytics' default
    cos_lr: bool = False


_V2_RECIPE = dict(data_seed=1, train_images=4000, epochs=40, batch=64, optimizer="AdamW", lr0=0.001, seed=0, amp=True,
                  close_mosaic=5)  # issue 23's "trained elsewhere" YOLO26n, item 7
JOBS: dict[str, TrainJob] = {
    "demo-yolov8n-silu": TrainJob("edgeq/assets/demo-yolov8n-silu.yaml", "shapes", 320),
    "demo-yolov8n-relu6": TrainJob("edgeq/assets/demo-yolov8n-relu6.yaml", "shapes", 320),
    "demo-yolo26n": TrainJob("yolo26n.yaml", "shapes", 320, train_images=4000),
    "demo-yolo11n": TrainJob("yolo11n.yaml", "shapes", 320, train_images=4000),
    "demo-yolov10n": TrainJob("yolov10n.yaml", "shapes", 320, train_images=4000),
    "hardhat-yolov8n-silu": TrainJob("yolov8n.yaml", "hardhat", 640, epochs=300, batch=32),
    "hardhat-yolov8n-relu6": TrainJob("yolov8n.yaml", "hardhat", 640, activation="relu6", epochs=300, batch=32),
    "hardhat-yolo26n": TrainJob("yolo26n.yaml", "hardhat", 640, epochs=300, batch=32, amp=True),
    "hardhat-yolo11n": TrainJob("yolo11n.yaml", "hardhat", 640, epochs=300, batch=32, amp=True),
    "shapes2-yolo26n-a": TrainJob("yolo26n.yaml", "shapes_v2", 320, **_V2_RECIPE),
    "shapes2-yolo26n-b": TrainJob("yolo26n.yaml", "shapes_v2", 320, **{**_V2_RECIPE, "data_seed": 2, "seed": 1}),
    "shapes2-yolo26n-c": TrainJob("yolo26n.yaml", "shapes_v2", 320, data_seed=3, train_images=4000, epochs=40, batch=32,
                                  optimizer="AdamW", lr0=0.002, seed=5, cos_lr=True),
    "shapes2-yolo26n-d": TrainJob("yolo26n.yaml", "shapes_v2", 320, data_seed=4, train_images=4000, epochs=40, batch=64,
                                  optimizer="SGD", lr0=0.01, seed=3, amp=True, cos_lr=True),
    # held out for issue 23 part 7: not looked at while the DLA default was chosen (a-d were)
    "shapes2-yolo26n-e": TrainJob("yolo26n.yaml", "shapes_v2", 320, **{**_V2_RECIPE, "data_seed": 5, "seed": 7}),
    "shapes2-yolo26n-f": TrainJob("yolo26n.yaml", "shapes_v2", 320, data_seed=6, train_images=4000, epochs=40, batch=48,
                                  optimizer="AdamW", lr0=0.0015, seed=11, amp=True, close_mosaic=8, cos_lr=True),
    "shapes2-yolo26n-g": TrainJob("yolo26n.yaml", "shapes_v2", 320, data_seed=7, train_images=4000, epochs=40, batch=64,
                                  optimizer="auto", seed=13, amp=True),
    "shapes-yolo26n-sgd": TrainJob("yolo26n.yaml", "shapes", 320, data_seed=2000, train_images=4000, epochs=60,
                                   optimizer="SGD", lr0=0.01, seed=2, amp=True, cos_lr=True),
}
OVERRIDES = ("epochs", "batch", "train_images", "imgsz")  # command-line options that replace a job's own value


def _ultralytics_settings(workdir: Path) -> None:
    """Ultralytics' settings file in the work folder, and its training log on (edgeq's training environment, which
    does the rest of the offline setup, silences it by default). Call before importing Ultralytics."""
    cfg = workdir / "yolo-config"
    cfg.mkdir(parents=True, exist_ok=True)
    os.environ["YOLO_CONFIG_DIR"] = str(cfg)
    os.environ.setdefault("YOLO_VERBOSE", "true")


def _generator(data: str):
    """The function that writes `data`'s synthetic set: (root, *, train, val, imgsz, seed) -> data.yaml."""
    if data == "shapes_v2":
        from shapes_v2 import generate  # scripts/shapes_v2.py, a benchmark input beside this file

        return generate
    from edgeq.synthetic import generate_dataset

    return generate_dataset


def _synthetic_data(workdir: Path, job: TrainJob) -> tuple[Path, Path]:
    """(training data.yaml, held-out evaluation data.yaml) of a synthetic job, generated once. data.yaml is
    written last, so a set cut short by a killed run is generated again."""
    generate = _generator(job.data)
    train_root = workdir / "data" / f"{job.data}-train-seed{job.data_seed}-{job.train_images}"
    eval_root = workdir / "data" / f"{job.data}-eval-seed{EVAL_SEED}"
    if not (train_root / "data.yaml").exists():
        generate(train_root, train=job.train_images, val=TRAIN_VAL_IMAGES, imgsz=SYNTHETIC_IMGSZ, seed=job.data_seed)
    if not (eval_root / "data.yaml").exists():
        generate(eval_root, train=0, val=EVAL_IMAGES[job.data], imgsz=SYNTHETIC_IMGSZ, seed=EVAL_SEED)
    return train_root / "data.yaml", eval_root / "data.yaml"


def resolved(name: str, args: argparse.Namespace) -> TrainJob:
    """The job's row with the command line's overrides (OVERRIDES) applied."""
    given = {key: getattr(args, key) for key in OVERRIDES if getattr(args, key) is not None}
    return dataclasses.replace(JOBS[name], **given)


def _amp_check_offline(model) -> bool:
    """Stands in for Ultralytics' check_amp, which runs a downloaded yolo26n.pt in FP32 and AMP and compares
    them. Offline it cannot: under YOLO_OFFLINE 8.4.190 raises ConnectionError at once, which check_amp catches
    and keeps AMP on (seen here), but any other failure of the download (a machine that reaches nothing, a
    partial file) ends in an error it does not catch or in AMP turned off, and the job would silently train
    another recipe. Kept: its device rule (AMP on CUDA only, as on the H200); skipped: the download."""
    device = next(model.parameters()).device
    print(f"AMP: Ultralytics' check_amp replaced (offline): AMP {'on' if device.type == 'cuda' else 'off'} on "
          f"{device}", flush=True)
    return device.type == "cuda"


def _epochs_at_most(cap: int):
    """A callback for on_pretrain_routine_start: Ultralytics' time= mode re-plans the epoch count after every
    epoch to fill the budget, unbounded; this keeps each plan at most `cap` (the job's epochs), before the LR
    schedule and the close_mosaic point are derived from it."""

    def install(trainer) -> None:
        plan = trainer._setup_scheduler

        def capped_plan() -> None:
            trainer.epochs = trainer.args.epochs = min(trainer.epochs, cap)
            plan()

        trainer._setup_scheduler = capped_plan

    return install


def _model_yaml(name: str, job: TrainJob, workdir: Path) -> str:
    """The architecture file Ultralytics builds; an activation swap is the packaged YAML plus `activation:`.
    The written file keeps the scale letter in its name (yolov8n-...) because Ultralytics reads the scale from it."""
    if job.activation is None:
        return str(REPO / job.model) if job.model.startswith("edgeq/") else job.model
    import yaml
    from ultralytics.nn.tasks import yaml_model_load

    cfg = yaml_model_load(job.model)
    cfg["activation"] = SWAPS[job.activation]
    for key in ("yaml_file", "scale"):
        cfg.pop(key, None)
    path = workdir / "cfg" / f"{Path(job.model).stem}-{job.activation}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return str(path)


def train_one(name: str, args: argparse.Namespace) -> dict:
    """Train, copy best.pt to the out folder, score it on the held-out images and write the job's JSON; offline
    (edgeq's training environment: no downloads, no fonts, the polars stand-in, torchvision only where it loads)."""
    with training_environment(args.workdir):
        return _train(name, args)


def _train(name: str, args: argparse.Namespace) -> dict:
    from ultralytics import YOLO

    job = resolved(name, args)
    if job.data == "hardhat":
        train_yaml = eval_yaml = args.hardhat.resolve()
        eval_desc = ("hardhat val split (Ultralytics scores 186 of its 204 images: it skips label files that mix "
                     "boxes and polygons); best.pt picked on it")
    else:
        train_yaml, eval_yaml = _synthetic_data(args.workdir, job)
        eval_desc = f"{job.data} seed {EVAL_SEED} val, {EVAL_IMAGES[job.data]} images (never trained on)"
    if job.amp:
        from ultralytics.engine import trainer as ultralytics_trainer

        ultralytics_trainer.check_amp = _amp_check_offline
    project = args.workdir / "runs"
    model = YOLO(_model_yaml(name, job, args.workdir), task="detect")
    model.add_callback("on_pretrain_routine_start", _epochs_at_most(job.epochs))
    recipe = dict(epochs=job.epochs, time=args.hours, imgsz=job.imgsz, batch=job.batch, optimizer=job.optimizer,
                  lr0=job.lr0, seed=job.seed, amp=job.amp, close_mosaic=job.close_mosaic, cos_lr=job.cos_lr,
                  fraction=args.fraction, pretrained=False, deterministic=True, cache="ram", plots=False, val=True)
    start = time.time()
    model.train(data=str(train_yaml), device=args.device, workers=args.workers, exist_ok=True, project=str(project),
                name=name, verbose=False, **recipe)
    train_s = time.time() - start
    amp_used = bool(model.trainer.amp)
    best = project / name / "weights" / "best.pt"
    if not best.is_file():
        raise SystemExit(f"{name}: no best.pt under {best.parent}")
    args.out.mkdir(parents=True, exist_ok=True)
    dst = args.out / f"{name}-{job.imgsz}.pt"
    shutil.copyfile(best, dst)

    trained = YOLO(str(dst))
    scoring = dict(data=str(eval_yaml), split="val", imgsz=job.imgsz, batch=job.batch, device=args.device, plots=False,
                   workers=args.workers, verbose=False, project=str(project), exist_ok=True)
    metrics = trained.val(name=f"{name}-eval", **scoring)
    end_to_end = None
    if getattr(trained.model.model[-1], "one2one_cv2", None) is not None:  # also the NMS-free branch (nms=False)
        e2e = YOLO(str(dst)).val(name=f"{name}-eval-e2e", nms=False, **scoring)
        end_to_end = {"ultralytics_e2e_map50_95": round(float(e2e.box.map) * 100, 2),
                      "ultralytics_e2e_map50": round(float(e2e.box.map50) * 100, 2)}
    results = project / name / "results.csv"  # one row per epoch; best.pt's own 'epoch' is -1 once stripped
    epochs_run = len(results.read_text().splitlines()) - 1 if results.is_file() else None
    first_line = train_yaml.read_text().splitlines()[0]
    data_note = first_line.lstrip("# ") if first_line.startswith("#") else ""  # the generator's seed and counts
    summary = {
        "job": name, "weights": dst.name, "size_bytes": dst.stat().st_size, "model": job.model,
        "activation": job.activation or "default", "imgsz": job.imgsz, "epochs_run": epochs_run, "batch": job.batch,
        "hours_budget": args.hours, "train_seconds": round(train_s, 1), "head": type(trained.model.model[-1]).__name__,
        "data": job.data, "data_note": data_note, "eval": eval_desc,
        "ultralytics_map50_95": round(float(metrics.box.map) * 100, 2),
        "ultralytics_map50": round(float(metrics.box.map50) * 100, 2), **(end_to_end or {}),
        "training": {"job_row": dataclasses.asdict(job), "train_args": recipe, "amp_used": amp_used,
                     "amp_check": "check_amp replaced by its device rule (offline)" if job.amp else "not run (amp off)",
                     "ultralytics": _version("ultralytics"), "torch": _version("torch")},
    }
    (args.out / f"{name}.json").write_text(json.dumps(summary, indent=2))
    print(f"FINAL {name}: mAP50-95 {summary['ultralytics_map50_95']:.2f} mAP50 {summary['ultralytics_map50']:.2f} "
          f"({eval_desc}; {summary['epochs_run']} epochs in {train_s:.0f} s, AMP {amp_used})", flush=True)
    return summary


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", nargs="+", choices=sorted(JOBS), required=True, help="models to train (concurrently)")
    ap.add_argument("--hours", type=float, default=None, help="training time per job (Ultralytics time=)")
    ap.add_argument("--epochs", type=int, help="epochs of every job (default: each job's own)")
    ap.add_argument("--batch", type=int, help="batch of every job (default: each job's own)")
    ap.add_argument("--train-images", type=int, help="synthetic training images of every job (default: each job's own)")
    ap.add_argument("--imgsz", type=int, help="input size of every job (default: each job's own)")
    ap.add_argument("--fraction", type=float, default=1.0, help="share of the training split used (Ultralytics)")
    ap.add_argument("--hardhat", type=Path, default=REPO.parent / "shared" / "datasets" / "hardhat" / "data.yaml")
    ap.add_argument("--device", default="0")
    ap.add_argument("--workers", type=int, default=3, help="data-loader workers per job")
    ap.add_argument("--workdir", type=Path, default=Path("runs/train"))
    ap.add_argument("--out", type=Path, default=Path("runs/train/models"))
    args = ap.parse_args(argv)
    args.workdir, args.out = args.workdir.resolve(), args.out.resolve()
    _ultralytics_settings(args.workdir)
    for name in args.jobs:  # every synthetic set once, before the jobs start
        job = resolved(name, args)
        if job.data != "hardhat":
            start = time.time()
            _synthetic_data(args.workdir, job)
            print(f"data for {name}: {time.time() - start:.1f} s", flush=True)
    if len(args.jobs) == 1:
        train_one(args.jobs[0], args)
        return 0
    procs = {}
    for name in args.jobs:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--jobs", name, "--fraction", str(args.fraction),
               "--hardhat", str(args.hardhat), "--device", args.device, "--workers", str(args.workers),
               "--workdir", str(args.workdir), "--out", str(args.out)]
        for key in ("hours", *OVERRIDES):
            if getattr(args, key) is not None:
                cmd += [f"--{key.replace('_', '-')}", str(getattr(args, key))]
        log = open(args.workdir / f"train-{name}.log", "w")
        procs[name] = (subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT), log)
        print(f"started {name}: pid {procs[name][0].pid}, log {log.name}", flush=True)
    failed = 0
    for name, (proc, log) in procs.items():
        failed |= proc.wait()
        log.close()
        print(f"{name} exited with {proc.returncode}", flush=True)
    return failed


if __name__ == "__main__":
    sys.exit(main())
