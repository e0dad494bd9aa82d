"""PyTorch runner: the source model itself, the FP32 reference every artifact is compared with."""

from __future__ import annotations

import numpy as np

from edgeq.head import OUTPUT_NAME
from edgeq.runners import Runner


class TorchRunner(Runner):
    def __init__(self, module) -> None:
        super().__init__(path=getattr(module, "pt_path", "model.pt"))
        self.module = module

    def load(self) -> None:
        import torch

        self.torch = torch
        self.runtime = f"torch {torch.__version__}"

    def infer(self, images: np.ndarray) -> dict[str, np.ndarray]:
        with self.torch.inference_mode():
            out = self.module(self.torch.from_numpy(images))
        out = out[0] if isinstance(out, (tuple, list)) else out
        return {OUTPUT_NAME: out.numpy()}
