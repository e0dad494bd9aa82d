"""The fine-tuning loop of `edgeq qat`: Ultralytics' detection loss on the student's head outputs plus
distillation from the FP32 teacher, AdamW with a cosine schedule, on whatever device the graph is on."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch

from edgeq.progress import bar
from edgeq.train.distill import decoded_distillation, head_distillation


@dataclass(frozen=True)
class LoopSettings:
    epochs: int
    lr: float
    distill_weight: float
    reg_max: int
    decoded: bool  # the graph ends in output0 too (head quantized): distil the decoded boxes and scores
    progress: bool = True


def detection_criterion(detector, device: str, end2end: bool):
    """Ultralytics' v8 detection loss for the exported branch (one-to-one heads assign one anchor per object)."""
    from edgeq.env import offline_ultralytics

    offline_ultralytics()
    from ultralytics.cfg import get_cfg
    from ultralytics.utils.loss import v8DetectionLoss

    model = detector.module
    model.args = get_cfg()  # Ultralytics' default box/cls/dfl gains
    criterion = v8DetectionLoss(model.to(device), tal_topk=1 if end2end else 10)
    return criterion


def fine_tune(student, teacher, loader, criterion, strides: torch.Tensor, settings: LoopSettings,
              device: str, log) -> list[dict]:
    params = [p for p in student.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=settings.lr, weight_decay=0.0)
    total = max(1, settings.epochs * len(loader))
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * step / total)))
    history = []
    teacher.eval()
    for epoch in range(settings.epochs):
        student.train()
        sums, count, start = {"detection": 0.0, "distillation": 0.0}, 0, time.perf_counter()
        for batch in bar(loader, desc=f"qat epoch {epoch + 1}/{settings.epochs}", enabled=settings.progress,
                         total=len(loader)):
            images = batch["img"].to(device, non_blocking=True).float() / 255
            with torch.no_grad():
                target = teacher(images)
            outputs = student(images)
            logits = outputs[:-1] if settings.decoded else outputs
            detection = _detection_loss(criterion, logits, batch, settings.reg_max)
            distill = head_distillation(list(logits), list(target[:len(logits)]), settings.reg_max)
            if settings.decoded:
                distill = distill + decoded_distillation(outputs[-1], target[-1], strides)
            loss = detection + settings.distill_weight * distill
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 10.0)
            optimizer.step()
            schedule.step()
            sums["detection"] += float(detection.detach())
            sums["distillation"] += float(distill.detach())
            count += 1
        row = {"epoch": epoch + 1, **{k: round(v / max(count, 1), 5) for k, v in sums.items()},
               "seconds": round(time.perf_counter() - start, 1)}
        history.append(row)
        log(f"qat epoch {row['epoch']}: detection loss {row['detection']:.4f}, distillation {row['distillation']:.4f}"
            f" ({row['seconds']:.0f} s)")
    student.eval()
    return history


def _detection_loss(criterion, logits, batch, reg_max: int) -> torch.Tensor:
    boxes, classes = logits[0::2], logits[1::2]
    size = boxes[0].shape[0]
    preds = {"boxes": torch.cat([b.reshape(size, 4 * reg_max, -1) for b in boxes], 2),
             "scores": torch.cat([c.reshape(size, c.shape[1], -1) for c in classes], 2), "feats": list(boxes)}
    loss, _ = criterion(preds, batch)
    return loss.sum() / size
