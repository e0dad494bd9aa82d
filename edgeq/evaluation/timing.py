"""Latency and throughput of a report's artifacts at several batch sizes, timed interleaved.

Timing one artifact after another lets a background load (another export, a browser) land on one of them and
not the next: a report once put an OpenVINO INT8 IR at 65 ms against its FP32 IR at 51 ms, while the same two
files timed in turns gave 53 ms against 103 ms. Here every (artifact, batch) runner is loaded first, warmed up
the same number of times, then timed in rounds: one call of each per round, the order rotating every round, so
a slow spell spreads over all of them and their ratios hold. A batch of b images gets 1/b of the rounds (at
least 5), so every batch size times about the same number of images. Each figure is a median with its
interquartile range; throughput is the batch over the median call time.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass

import numpy as np

from edgeq.progress import bar
from edgeq.runners import BatchNotSupported, Runner


@dataclass
class Timing:
    artifact: str
    batch: int
    median_ms: float | None = None  # one call of `batch` images
    q1_ms: float | None = None
    q3_ms: float | None = None
    runtime: str = ""
    note: str = ""  # why there is no figure

    @property
    def images_per_s(self) -> float | None:
        return None if not self.median_ms else round(1000.0 * self.batch / self.median_ms, 1)


@dataclass(frozen=True)
class TimedArtifact:
    name: str
    open_runner: Callable[[], Runner]


def time_interleaved(artifacts: Sequence[TimedArtifact], sample: np.ndarray, batches: Sequence[int], runs: int,
                     warmup: int, progress: bool = True) -> list[Timing]:
    """`sample` is one preprocessed (1, 3, S, S) image; batch b feeds it b times."""
    timings: list[Timing] = []
    with ExitStack() as stack:
        live: list[tuple[Timing, Runner, np.ndarray]] = []
        for artifact in artifacts:
            for batch in batches:
                timing = Timing(artifact.name, batch)
                timings.append(timing)
                runner = stack.enter_context(artifact.open_runner())
                timing.runtime = runner.runtime
                try:
                    if batch != (runner.input_shape or (1,))[0]:
                        runner.resize(batch)
                except BatchNotSupported as exc:
                    timing.note = str(exc)
                    continue
                live.append((timing, runner, np.repeat(sample, batch, axis=0)))
        for _ in range(warmup):
            for _, runner, images in live:
                runner.infer(images)
        samples: list[list[float]] = [[] for _ in live]
        # a batch of b images gets runs / b rounds (at least 5): about the same images timed for every batch size
        rounds = [max(5, -(-runs // timing.batch)) for timing, _, _ in live]
        for round_ in bar(range(max(rounds, default=0)), desc=f"timing {len(live)} runners",
                          enabled=progress and bool(live)):
            for k in range(len(live)):
                i = (k + round_) % len(live)
                if round_ >= rounds[i]:
                    continue
                _, runner, images = live[i]
                start = time.perf_counter()
                runner.infer(images)
                samples[i].append((time.perf_counter() - start) * 1000.0)
        for (timing, _, _), times in zip(live, samples):
            if times:
                q1, median, q3 = statistics.quantiles(times, n=4) if len(times) > 1 else (times[0],) * 3
                timing.median_ms, timing.q1_ms, timing.q3_ms = round(median, 3), round(q1, 3), round(q3, 3)
    return timings
