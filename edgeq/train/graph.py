"""The torch graph quantization-aware training instruments: the same body edgeq exports (input to the per-scale
head convolutions), with edgeq's decode head appended when the target quantizes the head too, so the
quantizer library sees the ops the deployed model has."""

from __future__ import annotations

import copy

import torch
from torch import nn

from edgeq.model import Detector, _Body
from edgeq.train.head import DecodeHead


class TrainingGraph(nn.Module):
    """images -> (box_0, cls_0, box_1, ...) and, with the decode head, output0 last."""

    def __init__(self, detector: Detector, with_head: bool) -> None:
        super().__init__()
        self.body = _Body(copy.deepcopy(detector.module).float())
        for parameter in self.body.parameters():
            parameter.requires_grad_(True)  # Ultralytics' fuse() freezes the convolutions it folds BN into
        self.head = DecodeHead(detector.head) if with_head else None

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        logits = tuple(self.body(images))
        return (*logits, self.head(*logits)) if self.head is not None else logits

    def detection_model(self):
        """The Ultralytics DetectionModel inside (its trained weights are what an export reads)."""
        return self.body.m
