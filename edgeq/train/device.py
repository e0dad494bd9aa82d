"""Where training runs: a CUDA device when there is one; the CPU for smoke-sized jobs, or when asked.

A fine-tune that would take hours on a CPU is refused up front with an estimate measured on this machine (one
forward+backward pass of the model at the job's input size), so nobody waits half a day by accident.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from edgeq.errors import EdgeqError

SMOKE_IMAGE_EPOCHS = 64  # images x epochs a CPU runs without --device cpu (a wiring check, minutes at most)


@dataclass(frozen=True)
class TrainSize:
    images: int
    epochs: int
    imgsz: int

    @property
    def image_epochs(self) -> int:
        return self.images * self.epochs


def resolve_device(requested: str | None, size: TrainSize, model) -> str:
    """'0' (first CUDA device), another CUDA index, or 'cpu'. Raises a one-line EdgeqError for a CUDA device that
    is not there, or a large job with no GPU and no explicit --device cpu."""
    import torch

    if requested is not None and requested.lower() != "cpu":
        if not torch.cuda.is_available():
            raise EdgeqError(f"--device {requested}: this machine has no CUDA device",
                             "run on a machine with an NVIDIA GPU, or pass --device cpu (slow)")
        count = torch.cuda.device_count()
        if any(int(d) >= count for d in requested.split(",") if d.strip().isdigit()):
            raise EdgeqError(f"--device {requested}: this machine has {count} CUDA device(s)",
                             f"use --device 0{'' if count == 1 else f' .. {count - 1}'}")
        return requested
    if requested is None and torch.cuda.is_available():
        return "0"
    if requested is None and size.image_epochs > SMOKE_IMAGE_EPOCHS:
        hours = cpu_seconds_per_image(model, size.imgsz) * size.image_epochs / 3600
        raise EdgeqError(f"no CUDA device here, and {size.images} images x {size.epochs} epochs at {size.imgsz} px "
                         f"would take about {_duration(hours)} on this CPU",
                         "run on a machine with a GPU (--device 0), pass --device cpu to run it here anyway, or "
                         "shrink it (--epochs, --train-images) for a smoke run")
    return "cpu"


def cpu_seconds_per_image(model, imgsz: int) -> float:
    """One training step's cost per image on this CPU, measured (forward + backward, batch 2)."""
    import copy

    import torch

    probe = copy.deepcopy(model).float().train()
    for p in probe.parameters():
        p.requires_grad_(True)
    x = torch.rand(2, 3, imgsz, imgsz)
    start = time.perf_counter()
    out = probe(x)
    tensors = out.values() if isinstance(out, dict) else out if isinstance(out, (list, tuple)) else [out]
    sum(t.float().mean() for t in _flatten(tensors)).backward()
    return (time.perf_counter() - start) / 2 * 1.5  # data loading and augmentation add about half again


def _flatten(items):
    for item in items:
        if isinstance(item, dict):
            yield from _flatten(item.values())
        elif isinstance(item, (list, tuple)):
            yield from _flatten(item)
        elif hasattr(item, "backward"):
            yield item


def _duration(hours: float) -> str:
    return f"{hours:.1f} h" if hours >= 1 else f"{max(1, round(hours * 60))} min"
