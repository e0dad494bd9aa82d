"""One evaluator for every artifact: same images, same letterbox, same decode, NMS and COCO scoring."""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgeq.data import LabelStats, preprocess, read_image, read_labels
from edgeq.evaluation.decode import select_detections
from edgeq.evaluation.matches import MatchTable
from edgeq.evaluation.metrics import CocoAccumulator
from edgeq.head import HeadLayout, HeadSpec
from edgeq.progress import bar
from edgeq.runners import Runner


@dataclass(frozen=True)
class EvalSettings:
    conf: float = 0.001
    iou: float = 0.7
    max_det: int = 300


@dataclass(frozen=True)
class EvalResult:
    map50_95: float
    map50: float
    images: int
    # per-image matches: intervals, per-class and threshold figures come from them without re-running the model
    matches: MatchTable | None = field(default=None, compare=False, repr=False)


class EvalSet:
    """Evaluation images with their labels, validated up front so a bad label fails before any export work."""

    def __init__(self, images: Sequence[Path], nc: int) -> None:
        self.images = list(images)
        self.label_stats = LabelStats()
        self.labels = [read_labels(p, nc, self.label_stats) for p in self.images]
        self.nc = nc

    def __len__(self) -> int:
        return len(self.images)


def evaluate(runner: Runner, layout: HeadLayout, head: HeadSpec, data: EvalSet,
             settings: EvalSettings = EvalSettings(), desc: str = "eval", progress: bool = True) -> EvalResult:
    coco = CocoAccumulator(nc=head.nc)
    batch = runner.eval_batch  # a static batch-N artifact takes N images per call
    pairs = list(zip(data.images, data.labels))
    for start in bar(range(0, len(pairs), batch), desc=desc, enabled=progress, total=-(-len(pairs) // batch)):
        chunk = pairs[start:start + batch]
        prepared = [preprocess(read_image(path), head.imgsz) for path, _ in chunk]
        images = np.concatenate([x for x, _ in prepared] + [prepared[-1][0]] * (batch - len(chunk)))  # pad last
        outputs = runner.infer(images)
        for i, ((_, labels), (_, box)) in enumerate(zip(chunk, prepared)):
            one = {name: value[i:i + 1] for name, value in outputs.items()}
            dets = select_detections(one, layout, head, settings.conf, settings.iou, settings.max_det)
            dets[:, :4] = box.to_original(dets[:, :4])
            coco.add(box.shape, labels, dets)
    map50_95, map50 = coco.score()
    return EvalResult(map50_95=map50_95, map50=map50, images=len(data), matches=coco.matches())


def median_latency_ms(runner: Runner, batch: np.ndarray, runs: int = 50, warmup: int = 5) -> float:
    """Median wall time of `runner.infer` after warm-up: the model's latency on this machine, host I/O included."""
    for _ in range(warmup):
        runner.infer(batch)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        runner.infer(batch)
        times.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(times)
