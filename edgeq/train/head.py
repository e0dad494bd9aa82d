"""edgeq's decode head (`edgeq.head.build_decode_head`, pixel layout) as a torch module, op for op.

Quantization-aware training of a target that quantizes the decode head too (OpenVINO with
`options.detach_head: false`) must train through that head's fake quantization, so the head has to be in the
torch graph the quantizer instruments, with the same ops the deployed ONNX has: reshape, concat, sigmoid, DFL
softmax, the bin-index convolution, the box arithmetic on anchor points and the stride multiply.
"""

from __future__ import annotations

import torch
from torch import nn

from edgeq.head import HeadSpec


class DecodeHead(nn.Module):
    """Per-scale logits (box_0, cls_0, box_1, ...) -> output0 (1, 4 + nc, anchors): xywh in pixels, scores."""

    def __init__(self, spec: HeadSpec) -> None:
        super().__init__()
        self.spec = spec
        anchors, strides = spec.anchors()
        self.register_buffer("anchor_points", torch.from_numpy(anchors.T[None].copy()), persistent=False)
        self.register_buffer("strides", torch.from_numpy(strides[None, None].copy()), persistent=False)
        self.register_buffer("bins", torch.arange(spec.reg_max, dtype=torch.float32).view(1, spec.reg_max, 1, 1),
                             persistent=False)

    def forward(self, *logits: torch.Tensor) -> torch.Tensor:
        r, nc = self.spec.reg_max, self.spec.nc
        boxes, classes = logits[0::2], logits[1::2]
        batch = boxes[0].shape[0]
        box = torch.cat([b.reshape(batch, 4 * r, -1) for b in boxes], 2)
        scores = torch.cat([c.reshape(batch, nc, -1) for c in classes], 2).sigmoid()
        if r > 1:
            dist = box.reshape(batch, 4, r, -1).transpose(1, 2).softmax(1)
            dist = nn.functional.conv2d(dist, self.bins).reshape(batch, 4, -1)
        else:
            dist = box
        lt, rb = dist[:, :2], dist[:, 2:4]
        centre = (rb - lt) * 0.5 + self.anchor_points
        xywh = torch.cat([centre, lt + rb], 1) * self.strides
        return torch.cat([xywh, scores], 1)
