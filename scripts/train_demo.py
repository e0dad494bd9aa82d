#!/usr/bin/env python3
"""Train edgeq's demo detectors (YOLOv8n, 6 shape classes, 320 px) with Ultralytics' own trainer.

The training data are `edgeq.synthetic` images of seed 1000; the exporter's demo calibration / validation
sets are seed 0, so the figures printed at the end (Ultralytics val on a seed-0 val split) are measured on
images the weights have never seen. Two variants, from the model YAMLs in edgeq/assets:

    silu   demo-yolov8n-silu.yaml   -> demo-yolov8n-silu-320.pt   (Ultralytics' default activation)
    relu6  demo-yolov8n-relu6.yaml  -> demo-yolov8n-relu6-320.pt  (activation: nn.ReLU6(), INT8-friendly)

`--variant both` generates the data once, then trains the two variants concurrently in two subprocesses.
Nothing is downloaded: no pretrained weights, no AMP check model, no plot fonts.

    python scripts/train_demo.py --variant both --epochs 100 --train-images 6000 --val-images 300 \\
        --imgsz 320 --batch 64 --device 0 --workdir /tmp/edgeq-train --out edgeq/assets
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ASSETS = REPO / "edgeq" / "assets"
VARIANTS = ("silu", "relu6")
TRAIN_SEED = 1000  # data the weights learn from (and pick best.pt on)
EVAL_SEED = 0  # edgeq's demo val set: held out from training
EVAL_IMAGES = 300


def _offline_env(workdir: Path) -> None:
    """Ultralytics must not touch the network; call before importing it."""
    os.environ["YOLO_OFFLINE"] = "1"
    os.environ["YOLO_AUTOINSTALL"] = "false"
    cfg = workdir / "yolo-config"
    cfg.mkdir(parents=True, exist_ok=True)
    os.environ["YOLO_CONFIG_DIR"] = str(cfg)


def _datasets(args: argparse.Namespace) -> tuple[Path, Path]:
    """(training data.yaml, held-out evaluation data.yaml) under the workdir, generating them unless told not to."""
    train_root = args.workdir / "data" / f"train-seed{TRAIN_SEED}-{args.imgsz}"
    eval_root = args.workdir / "data" / f"eval-seed{EVAL_SEED}-{args.imgsz}"
    if args.data_ready:
        return train_root / "data.yaml", eval_root / "data.yaml"
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from edgeq.synthetic import generate_dataset

    t = time.time()
    train_yaml = generate_dataset(
        train_root, train=args.train_images, val=args.val_images, imgsz=args.imgsz, seed=TRAIN_SEED, progress=True
    )
    eval_yaml = generate_dataset(eval_root, train=0, val=EVAL_IMAGES, imgsz=args.imgsz, seed=EVAL_SEED, progress=True)
    print(f"data: {args.train_images}+{args.val_images} images (seed {TRAIN_SEED}), {EVAL_IMAGES} eval images "
          f"(seed {EVAL_SEED}) in {time.time() - t:.1f}s", flush=True)
    return train_yaml, eval_yaml


def _train_one(args: argparse.Namespace, variant: str, train_yaml: Path, eval_yaml: Path) -> dict:
    from ultralytics import YOLO
    from ultralytics.nn.modules import Conv, Detect

    name = f"demo-yolov8n-{variant}"
    project = args.workdir / "runs"
    model = YOLO(str(ASSETS / f"{name}.yaml"), task="detect")
    t0 = time.time()
    model.train(
        data=str(train_yaml),
        epochs=args.epochs,
        imgsz=args.imgsz,
        batch=args.batch,
        device=args.device,
        workers=args.workers,
        cache="ram",
        pretrained=False,
        amp=False,  # the AMP check downloads yolo11n.pt
        plots=False,  # plotting downloads a font
        val=True,
        exist_ok=True,
        project=str(project),
        name=name,
        seed=0,
        deterministic=True,
        verbose=True,
    )
    train_s = time.time() - t0
    best = project / name / "weights" / "best.pt"
    if not best.is_file():
        raise SystemExit(f"{name}: no best.pt under {best.parent}")

    import torch

    ckpt = torch.load(best, map_location="cpu", weights_only=False)
    if ckpt.get("optimizer") is not None:  # Ultralytics strips best.pt after training; make sure of it
        from ultralytics.utils.torch_utils import strip_optimizer

        strip_optimizer(best)
    args.out.mkdir(parents=True, exist_ok=True)
    dst = args.out / f"{name}-{args.imgsz}.pt"
    shutil.copyfile(best, dst)

    m = YOLO(str(dst))
    head = m.model.model[-1]
    acts = {type(x.act).__name__ for x in m.model.modules() if isinstance(x, Conv)}
    assert isinstance(head, Detect) and head.nc == 6, head
    metrics = m.val(data=str(eval_yaml), split="val", imgsz=args.imgsz, batch=args.batch, device=args.device,
                    plots=False, workers=args.workers, verbose=True, project=str(project), name=f"{name}-eval",
                    exist_ok=True)
    res = {
        "variant": variant,
        "weights": str(dst),
        "size_bytes": dst.stat().st_size,
        "epochs": args.epochs,
        "train_images": args.train_images,
        "train_seconds": round(train_s, 1),
        "conv_activations": sorted(acts),
        "eval": f"seed {EVAL_SEED} val, {EVAL_IMAGES} images, imgsz {args.imgsz}",
        "mAP50-95": round(float(metrics.box.map), 4),
        "mAP50": round(float(metrics.box.map50), 4),
        "per_class_mAP50-95": {m.names[i]: round(float(v), 4) for i, v in enumerate(metrics.box.maps)},
    }
    (args.workdir / f"summary-{variant}.json").write_text(json.dumps(res, indent=2))
    print(f"FINAL {name}: mAP50-95 {res['mAP50-95']:.4f}  mAP50 {res['mAP50']:.4f}  "
          f"({res['eval']}; {res['size_bytes'] / 1e6:.1f} MB; trained {train_s:.0f}s)", flush=True)
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variant", choices=(*VARIANTS, "both"), default="both")
    ap.add_argument("--epochs", type=int, default=100)
    ap.add_argument("--train-images", type=int, default=6000)
    ap.add_argument("--val-images", type=int, default=300, help="seed-1000 val split used during training")
    ap.add_argument("--imgsz", type=int, default=320)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--device", default="0")
    ap.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1))
    ap.add_argument("--workdir", type=Path, default=Path("runs/train-demo"))
    ap.add_argument("--out", type=Path, default=ASSETS)
    ap.add_argument("--data-ready", action="store_true", help=argparse.SUPPRESS)  # set by the `both` parent
    args = ap.parse_args(argv)
    args.workdir = args.workdir.resolve()
    args.out = args.out.resolve()
    _offline_env(args.workdir)
    train_yaml, eval_yaml = _datasets(args)

    if args.variant != "both":
        _train_one(args, args.variant, train_yaml, eval_yaml)
        return 0

    procs = {}
    for v in VARIANTS:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--variant", v, "--data-ready"]
        for k in ("epochs", "train_images", "val_images", "imgsz", "batch", "device", "workers", "workdir", "out"):
            cmd += [f"--{k.replace('_', '-')}", str(getattr(args, k))]
        log = open(args.workdir / f"train-{v}.log", "w")
        procs[v] = (subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT), log)
        print(f"started {v}: pid {procs[v][0].pid}, log {log.name}", flush=True)
    rc = 0
    for v, (p, log) in procs.items():
        rc |= p.wait()
        log.close()
        print(f"{v} exited with {p.returncode}", flush=True)
    for v in VARIANTS:
        s = args.workdir / f"summary-{v}.json"
        if s.is_file():
            r = json.loads(s.read_text())
            print(f"FINAL demo-yolov8n-{v}: mAP50-95 {r['mAP50-95']:.4f}  mAP50 {r['mAP50']:.4f}  "
                  f"({r['eval']}; {r['size_bytes'] / 1e6:.1f} MB; trained {r['train_seconds']:.0f}s)")
    return rc


if __name__ == "__main__":
    sys.exit(main())
