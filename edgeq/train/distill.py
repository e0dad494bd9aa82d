"""Distillation from the FP32 model at the head outputs, for quantization-aware fine-tuning (seed 002: QAT
recovers what PTQ loses when the student also learns to match the float teacher).

Per scale: class logits against the teacher's probabilities (BCE with soft targets) and each box side's DFL
distribution against the teacher's (KL), both weighted by how sure the teacher is that an object is there, so
the background that dominates the anchors does not drown the objects. When the target quantizes the decode head
too, the decoded boxes (in strides) and scores are matched as well: that is where its INT8 error lands.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F


def head_distillation(student: list[torch.Tensor], teacher: list[torch.Tensor], reg_max: int) -> torch.Tensor:
    """student/teacher: the body outputs box_0, cls_0, box_1, cls_1, ... (B, C, H, W)."""
    total = student[0].new_zeros(())
    for s_box, s_cls, t_box, t_cls in zip(student[0::2], student[1::2], teacher[0::2], teacher[1::2]):
        weight = t_cls.sigmoid().amax(1, keepdim=True)  # (B, 1, H, W) teacher's object confidence
        norm = weight.sum().clamp(min=1.0)
        cls = F.binary_cross_entropy_with_logits(s_cls, t_cls.sigmoid(), reduction="none")
        total = total + (cls.mean(1, keepdim=True) * weight).sum() / norm
        if reg_max > 1:
            b, _, h, w = s_box.shape
            s_dist = s_box.reshape(b, 4, reg_max, h, w).log_softmax(2)
            t_dist = t_box.reshape(b, 4, reg_max, h, w).softmax(2)
            kl = (t_dist * (t_dist.clamp(min=1e-9).log() - s_dist)).sum(2).mean(1, keepdim=True)
        else:
            kl = (s_box - t_box).abs().mean(1, keepdim=True)
        total = total + (kl * weight).sum() / norm
    return total


def decoded_distillation(student: torch.Tensor, teacher: torch.Tensor, strides: torch.Tensor) -> torch.Tensor:
    """output0 (B, 4 + nc, A): boxes in pixels compared in stride units, scores by BCE; teacher-weighted."""
    t_scores = teacher[:, 4:]
    weight = t_scores.amax(1)  # (B, A)
    norm = weight.sum().clamp(min=1.0)
    box = ((student[:, :4] - teacher[:, :4]).abs() / strides).mean(1)
    score = F.binary_cross_entropy(student[:, 4:].clamp(1e-6, 1 - 1e-6), t_scores, reduction="none").mean(1)
    return ((box + score) * weight).sum() / norm
