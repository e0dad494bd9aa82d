"""What a fine-tune starts from: the user's checkpoint (read weights-only, as every edgeq command reads it), its
training arguments, and a dataset with a train split.

Ultralytics' trainer unpickles the checkpoints it is given in full. So edgeq never hands it the user's file:
it reads that file weights-only (`--trust-model` opts out), then writes the loaded modules, which are only
allow-listed Ultralytics and torch classes, into a fresh file of the run folder and trains from that copy. The
trainer also rebuilds the model from the checkpoint's `model.yaml`, evaluating its activation string, so that
config is checked like a model YAML (`edgeq.untrusted.model_yaml`) first.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgeq.errors import EdgeqError

NO_TRAIN_ARGS_FIX = "give --imgsz (the size it was trained at) and --data (its data.yaml with a train split)"


@dataclass
class TrainingSource:
    path: Path
    model: object  # ultralytics DetectionModel, float, unfused, eval mode
    train_args: dict
    imgsz: int


def load_training_source(path: str | Path, imgsz: int | None, trust_model: bool) -> TrainingSource:
    import torch

    from edgeq.env import offline_ultralytics
    from edgeq.model import read_checkpoint

    path = Path(path)
    if path.suffix.lower() != ".pt":
        raise EdgeqError(f"model '{path}' is not a .pt checkpoint; training starts from trained weights",
                         "pass --model PATH to an Ultralytics detection checkpoint (.pt)")
    if not path.is_file():
        raise EdgeqError(f"model file '{path}' does not exist",
                         "pass --model PATH to an Ultralytics detection checkpoint (.pt)")
    offline_ultralytics()
    ckpt = read_checkpoint(path, trust_model)
    model = ckpt.get("ema") or ckpt.get("model")
    if not isinstance(model, torch.nn.Module):
        raise EdgeqError(f"'{path}' holds no model", "pass an Ultralytics detection checkpoint (.pt)")
    if not trust_model and isinstance(getattr(model, "yaml", None), dict):
        from edgeq.untrusted.model_yaml import check_model_config

        model.yaml = check_model_config(model.yaml, f"{path} (its model.yaml)")
    head = model.model[-1] if hasattr(model, "model") else None
    if type(head).__name__ not in ("Detect", "v10Detect"):
        raise EdgeqError(f"'{path}' is not a detection model (head {type(head).__name__})",
                         "edgeq fine-tunes YOLO detection checkpoints (YOLOv8, YOLO11, YOLO12, YOLO26, YOLOv10)")
    train_args = ckpt.get("train_args") or {}
    if not train_args and imgsz is None:
        raise EdgeqError(f"'{path}' carries no training arguments (train_args), so its input size and "
                         "hyperparameters are unknown", NO_TRAIN_ARGS_FIX)
    size = imgsz or train_args.get("imgsz")
    if not isinstance(size, int) or size <= 0 or size % 32:
        raise EdgeqError(f"input size {size!r} is not a positive multiple of 32", "pass --imgsz 640 (or 320, ...)")
    return TrainingSource(path=path, model=model.float().eval(), train_args=dict(train_args), imgsz=size)


def write_sanitized_copy(source: TrainingSource, model, dst: Path) -> Path:
    """A checkpoint Ultralytics can train from, holding only what edgeq loaded weights-only (see module doc)."""
    import copy

    import torch

    dst.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": copy.deepcopy(model).half(), "train_args": source.train_args, "epoch": -1,
                "date": None, "version": None}, dst)
    return dst


def training_split(data_yaml: Path) -> Path:
    """The data.yaml, checked for a train split that holds images (Ultralytics' trainer needs one)."""
    from edgeq.data import load_dataset

    if data_yaml.suffix.lower() not in (".yaml", ".yml"):
        raise EdgeqError(f"dataset '{data_yaml}' is a folder without a data.yaml, so it has no train split",
                         "pass --data a data.yaml with train: and val: entries (as Roboflow exports it)")
    from edgeq.data import DATA_FIX
    from edgeq.untrusted.safe_yaml import load_file

    entries = load_file(data_yaml, "dataset file", DATA_FIX) if data_yaml.is_file() else None
    if isinstance(entries, dict) and not entries.get("train"):
        splits = [s for s in ("val", "test") if entries.get(s)]
        raise EdgeqError(f"dataset '{data_yaml}' has no train split (it has: {', '.join(splits) or 'none'})",
                         "add 'train: images/train' (a folder of training images with labels) to the data.yaml")
    dataset = load_dataset(data_yaml)
    dataset.images("train")  # one line if the folder holds no images
    if "val" not in dataset.locations:
        raise EdgeqError(f"dataset '{data_yaml}' has no val split, which the report scores on",
                         "add 'val: images/val' to the data.yaml")
    return data_yaml
