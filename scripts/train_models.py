#!/usr/bin/env python3
"""Train the detectors edgeq ships or benchmarks with, using Ultralytics' own trainer (GPU machine).

Every model is a row of JOBS: an Ultralytics architecture (packaged YAML name or a file), an optional activation
swap, the data it learns from and its input size. Several jobs train concurrently, one subprocess each, on one
GPU (nano models leave it mostly idle; the CPU data loaders are the limit, so `--hours` bounds each job's
training time through Ultralytics' `time=` argument, which re-plans the epochs and the LR schedule to fit).

    demo-yolov8n-silu / -relu6   the embedded demo detectors (edgeq/assets), synthetic shapes, 320 px
    demo-yolo26n / -yolo11n / -yolov10n
                                 today's heads on the same shapes (end-to-end YOLO26, YOLOv10; YOLO11)
    hardhat-yolov8n-silu / -relu6
                                 real photographs (../shared/datasets/hardhat, Roboflow labels as exported), 640 px;
                                 benchmark inputs kept out of the wheel (benchmarks/models)

Synthetic data: the weights learn from seed-1000 images and are scored at the end on seed-0 images, which is
the demo data edgeq calibrates and evaluates on, so those figures are on images the weights never saw. The
hard-hat models learn from the train split, pick best.pt on val (Ultralytics' default) and are scored on val.

Nothing is downloaded: no pretrained weights, no AMP check model (amp=False), no plot fonts (plots=False).
Ultralytics imports polars only to copy results.csv into the checkpoint; where polars is missing (the GPU
machine), a stand-in that makes that step store nothing is registered, and nothing else changes.

    python scripts/train_models.py --jobs demo-yolo26n hardhat-yolov8n-silu --hours 0.25 --device 0 \\
        --hardhat ../shared/datasets/hardhat/data.yaml --workdir /tmp/edgeq-train --out /tmp/models

The embedded demo detectors (edgeq/assets) came from
    python scripts/train_models.py --jobs demo-yolov8n-silu demo-yolov8n-relu6 --epochs 100 --device 0
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the GPU machine runs this from a checkout, edgeq not installed

from edgeq.train.swap import SWAPS  # the YAML spelling of each swap, shared with `edgeq adapt`)
from edgeq.train.ultralytics_env import install_polars_stand_in

ASSETS = REPO / "edgeq" / "assets"
TRAIN_SEED = 1000  # synthetic data the weights learn from (and pick best.pt on)
EVAL_SEED = 0  # edgeq's demo calibration/val data: held out from training
EVAL_IMAGES = 300


@dataclass(frozen=True)
class TrainJob:
    model: str  # Ultralytics packaged YAML name (yolo26n.yaml) or a path relative to the repository
    data: str  # "shapes" (synthetic, generated) or "hardhat" (--hardhat)
    imgsz: int
    activation: str | None = None  # "relu6": nn.ReLU6() in every Conv (Ultralytics' top-level `activation` key)
    epochs: int = 65  # an upper bound when --hours is given


JOBS: dict[str, TrainJob] = {
    "demo-yolov8n-silu": TrainJob("edgeq/assets/demo-yolov8n-silu.yaml", "shapes", 320),
    "demo-yolov8n-relu6": TrainJob("edgeq/assets/demo-yolov8n-relu6.yaml", "shapes", 320),
    "demo-yolo26n": TrainJob("yolo26n.yaml", "shapes", 320),
    "demo-yolo11n": TrainJob("yolo11n.yaml", "shapes", 320),
    "demo-yolov10n": TrainJob("yolov10n.yaml", "shapes", 320),
    "hardhat-yolov8n-silu": TrainJob("yolov8n.yaml", "hardhat", 640, epochs=300),
    "hardhat-yolov8n-relu6": TrainJob("yolov8n.yaml", "hardhat", 640, activation="relu6", epochs=300),
}


def _offline_env(workdir: Path) -> None:
    """Ultralytics must not touch the network; call before importing it."""
    os.environ["YOLO_OFFLINE"] = "1"
    os.environ["YOLO_AUTOINSTALL"] = "false"
    cfg = workdir / "yolo-config"
    cfg.mkdir(parents=True, exist_ok=True)
    os.environ["YOLO_CONFIG_DIR"] = str(cfg)
    install_polars_stand_in()


def _shapes_data(workdir: Path, train_images: int) -> tuple[Path, Path]:
    """(training data.yaml, held-out evaluation data.yaml) of the synthetic shapes, generated once."""
    from edgeq.synthetic import generate_dataset

    train_root = workdir / "data" / f"shapes-train-seed{TRAIN_SEED}-{train_images}"
    eval_root = workdir / "data" / f"shapes-eval-seed{EVAL_SEED}"
    if not (train_root / "data.yaml").exists():
        generate_dataset(train_root, train=train_images, val=300, imgsz=320, seed=TRAIN_SEED, progress=False)
    if not (eval_root / "data.yaml").exists():
        generate_dataset(eval_root, train=0, val=EVAL_IMAGES, imgsz=320, seed=EVAL_SEED, progress=False)
    return train_root / "data.yaml", eval_root / "data.yaml"


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
    from ultralytics import YOLO

    job = JOBS[name]
    if job.data == "shapes":
        train_yaml, eval_yaml = _shapes_data(args.workdir, args.train_images)
        eval_split, eval_desc = "val", f"synthetic seed {EVAL_SEED} val, {EVAL_IMAGES} images (never trained on)"
    else:
        train_yaml = eval_yaml = args.hardhat.resolve()
        eval_split, eval_desc = "val", ("hardhat val split (Ultralytics scores 186 of its 204 images: it skips label "
                                          "files that mix boxes and polygons); best.pt picked on it")
    project = args.workdir / "runs"
    model = YOLO(_model_yaml(name, job, args.workdir), task="detect")
    start = time.time()
    model.train(data=str(train_yaml), epochs=args.epochs or job.epochs, time=args.hours, imgsz=job.imgsz, batch=args.batch,
                device=args.device, workers=args.workers, cache="ram", pretrained=False, amp=False, plots=False,
                val=True, exist_ok=True, project=str(project), name=name, seed=0, deterministic=True,
                verbose=False)
    train_s = time.time() - start
    best = project / name / "weights" / "best.pt"
    if not best.is_file():
        raise SystemExit(f"{name}: no best.pt under {best.parent}")
    args.out.mkdir(parents=True, exist_ok=True)
    dst = args.out / f"{name}-{job.imgsz}.pt"
    shutil.copyfile(best, dst)

    trained = YOLO(str(dst))
    metrics = trained.val(data=str(eval_yaml), split=eval_split, imgsz=job.imgsz, batch=args.batch,
                          device=args.device, plots=False, workers=args.workers, verbose=False,
                          project=str(project), name=f"{name}-eval", exist_ok=True)
    end_to_end = None
    if getattr(trained.model.model[-1], "one2one_cv2", None) is not None:  # also the NMS-free branch (nms=False)
        e2e = YOLO(str(dst)).val(data=str(eval_yaml), split=eval_split, imgsz=job.imgsz, batch=args.batch,
                                 device=args.device, plots=False, workers=args.workers, verbose=False, nms=False,
                                 project=str(project), name=f"{name}-eval-e2e", exist_ok=True)
        end_to_end = {"ultralytics_e2e_map50_95": round(float(e2e.box.map) * 100, 2),
                      "ultralytics_e2e_map50": round(float(e2e.box.map50) * 100, 2)}
    results = project / name / "results.csv"  # one row per epoch; best.pt's own 'epoch' is -1 once stripped
    epochs_run = len(results.read_text().splitlines()) - 1 if results.is_file() else None
    summary = {
        "job": name, "weights": dst.name, "size_bytes": dst.stat().st_size, "model": job.model,
        "activation": job.activation or "default", "imgsz": job.imgsz, "epochs_run": epochs_run, "batch": args.batch,
        "hours_budget": args.hours, "train_seconds": round(train_s, 1), "head": type(trained.model.model[-1]).__name__,
        "eval": eval_desc, "ultralytics_map50_95": round(float(metrics.box.map) * 100, 2),
        "ultralytics_map50": round(float(metrics.box.map50) * 100, 2), **(end_to_end or {}),
    }
    (args.out / f"{name}.json").write_text(json.dumps(summary, indent=2))
    print(f"FINAL {name}: mAP50-95 {summary['ultralytics_map50_95']:.2f} mAP50 {summary['ultralytics_map50']:.2f} "
          f"({eval_desc}; {summary['epochs_run']} epochs in {train_s:.0f} s)", flush=True)
    return summary


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", nargs="+", choices=sorted(JOBS), required=True, help="models to train (concurrently)")
    ap.add_argument("--hours", type=float, default=None, help="training time per job (Ultralytics time=)")
    ap.add_argument("--epochs", type=int, help="epochs per job (default: the job's own)")
    ap.add_argument("--train-images", type=int, default=6000, help="synthetic training images (seed 1000)")
    ap.add_argument("--hardhat", type=Path, default=REPO.parent / "shared" / "datasets" / "hardhat" / "data.yaml")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--device", default="0")
    ap.add_argument("--workers", type=int, default=3, help="data-loader workers per job")
    ap.add_argument("--workdir", type=Path, default=Path("runs/train"))
    ap.add_argument("--out", type=Path, default=Path("runs/train/models"))
    args = ap.parse_args(argv)
    args.workdir, args.out = args.workdir.resolve(), args.out.resolve()
    _offline_env(args.workdir)
    if any(JOBS[j].data == "shapes" for j in args.jobs):
        _shapes_data(args.workdir, args.train_images)  # once, before the jobs start
    if len(args.jobs) == 1:
        train_one(args.jobs[0], args)
        return 0
    procs = {}
    for name in args.jobs:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--jobs", name, "--train-images", str(args.train_images),
               "--hardhat", str(args.hardhat), "--batch", str(args.batch), "--device", args.device,
               "--workers", str(args.workers), "--workdir", str(args.workdir), "--out", str(args.out)]
        if args.hours:
            cmd += ["--hours", str(args.hours)]
        if args.epochs:
            cmd += ["--epochs", str(args.epochs)]
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
