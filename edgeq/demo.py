"""The embedded default: a small detector trained on synthetic shapes, and the generator of its data.

With no --model/--data, `edgeq export` uses these, so a new user sees the whole job with nothing to download.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from edgeq.env import cache_dir
from edgeq.staging import exclusive, remove_stale, work_folder

ASSETS = Path(__file__).parent / "assets"
DEMO_IMGSZ = 320
DEMO_SEED = 0  # the demo weights were trained on seed-1000 images, so seed-0 data is unseen
DEMO_TRAIN_SEED = 1000  # what fine-tuning the demo detectors learns from (never the seed-0 evaluation images)
DEMO_TRAIN_IMAGES = 2000


DEMO_ACTIVATIONS = ("silu", "relu6")


def demo_model(activation: str = "silu") -> Path:
    if activation not in DEMO_ACTIVATIONS:
        from edgeq.errors import EdgeqError

        raise EdgeqError(f"there is no demo detector 'demo:{activation}'",
                         f"use one of: {', '.join('demo:' + a for a in DEMO_ACTIVATIONS)}")
    return ASSETS / f"demo-yolov8n-{activation}-{DEMO_IMGSZ}.pt"


def demo_training_dataset(progress: bool = True) -> Path:
    """Synthetic shapes to fine-tune the demo detectors on (`edgeq adapt`, `edgeq qat` without --data): seed-1000
    images, like the ones they were trained on, never the seed-0 images exports calibrate and score on."""
    return demo_dataset(train=DEMO_TRAIN_IMAGES, val=100, progress=progress, seed=DEMO_TRAIN_SEED)


def demo_dataset(train: int, val: int, progress: bool = True, seed: int = DEMO_SEED) -> Path:
    """Generate (once, into the cache) the synthetic dataset; returns its data.yaml."""
    from edgeq.synthetic import generate_dataset

    root = cache_dir() / "demo-data" / f"seed{seed}-{DEMO_IMGSZ}px-train{train}-val{val}"
    if (root / "data.yaml").exists():
        return root / "data.yaml"
    with exclusive(root, wait=True):  # two runs needing the same data: one generates, the other waits for it
        if not (root / "data.yaml").exists():
            remove_stale(root)
            shutil.rmtree(root, ignore_errors=True)  # a folder without its data.yaml is not a finished dataset
            partial = work_folder(root)
            generate_dataset(partial, train=train, val=val, imgsz=DEMO_IMGSZ, seed=seed, progress=progress)
            partial_yaml = partial / "data.yaml"
            config = yaml.safe_load(partial_yaml.read_text())  # edgeq's own file
            config["path"] = str(root)  # the generator wrote the partial folder's absolute path
            partial_yaml.write_text(yaml.safe_dump(config, sort_keys=False))
            partial.rename(root)  # atomic: a killed run never leaves a half-generated dataset behind
    return root / "data.yaml"
