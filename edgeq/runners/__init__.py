"""Runners execute one artifact: load once, infer many times, close (Polygraphy's activate/infer/deactivate).

Every runner takes the same input, a float32 NCHW batch in [0, 1] produced by `edgeq.data.preprocess`, and
returns float32 outputs keyed by the canonical output names (`output0`, or `box_0`, `cls_0`, ... for a
detached head). Quantized I/O is the runner's business: it quantizes inputs and dequantizes outputs itself.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np


class BatchNotSupported(Exception):
    """The artifact cannot run at another batch size here; the message says what fixes its batch."""


class Runner(ABC):
    runtime: str = "?"  # shown in reports: "onnxruntime 1.31", "openvino 2026.4", ...
    input_shape: tuple[int, ...] | None = None  # the (1, 3, S, S) batch `infer` expects, known after load()

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    @abstractmethod
    def load(self) -> None: ...

    @abstractmethod
    def infer(self, images: np.ndarray) -> dict[str, np.ndarray]: ...

    @property
    def eval_batch(self) -> int:
        """Images the evaluator hands `infer` at once: the static batch, or more where the runner runs several
        copies of the model side by side (LiteRT's single-threaded reference kernels)."""
        return (self.input_shape or (1,))[0]

    def resize(self, batch: int) -> None:
        """From now on `infer` takes `batch` images per call (after `load`). A runtime that can re-plan a graph
        built at batch 1 implements it (OpenVINO, LiteRT); it is how throughput is timed at batch 4 and 8."""
        raise BatchNotSupported(f"{self.runtime} runs '{self.path.name}' only at the batch it was built for")

    def close(self) -> None:
        """Release the runtime's resources (most runtimes need nothing)."""

    def __enter__(self) -> Runner:
        self.load()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
