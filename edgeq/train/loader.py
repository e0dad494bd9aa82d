"""Training batches as Ultralytics makes them (its dataset, label handling and augmentation), for the
quantization-aware fine-tune, which runs its own loop around a fake-quantized graph Ultralytics' trainer cannot
hold (a quantizer library's wrapped module, with edgeq's decode head inside when the target quantizes it)."""

from __future__ import annotations

from pathlib import Path


def train_loader(data_yaml: Path, imgsz: int, batch: int, workers: int, *, mosaic: float = 0.0):
    """An Ultralytics dataloader over the train split. Mosaic is off by default: a short fine-tune should see
    images like the deployment's (Ultralytics also closes mosaic for its last epochs)."""
    from edgeq.data.dataset import _ultralytics_resolve
    from edgeq.env import offline_ultralytics

    offline_ultralytics()
    from ultralytics.cfg import get_cfg
    from ultralytics.data import build_dataloader, build_yolo_dataset

    data = _ultralytics_resolve(data_yaml)
    cfg = get_cfg(overrides={"imgsz": imgsz, "mosaic": mosaic, "mixup": 0.0, "cache": False, "task": "detect",
                             "data": str(data_yaml)})
    dataset = build_yolo_dataset(cfg, data["train"], batch, data, mode="train", stride=32)
    return build_dataloader(dataset, batch, workers, shuffle=True, rank=-1)
