"""The targets of a run side by side (`--jobs N`): after the shared part, each target's check -> build ->
evaluate runs in a worker process of its own.

Workers are *spawned*, never forked: the parent has run PyTorch (the FP32 reference) by then, and a forked child
deadlocks in PyTorch's OpenMP pool at its first convolution. A spawned worker imports edgeq afresh and gets its
task by pickle (the model, the ONNX pair, the calibration and evaluation sets, the shared reference). Each worker
may use its share of the CPUs (`EDGEQ_CPUS`, read by `edgeq.env.cpus`), so N workers with their own thread
pools and reference-kernel processes do not oversubscribe the machine N times over.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import TypeVar

from edgeq.env import cpus

T = TypeVar("T")
R = TypeVar("R")

_MEMORY_PER_WORKER_GIB = 4.0  # a worker holding PyTorch, TensorFlow/LiteRT and a 640 px model peaks near this


def _available_memory_gib() -> float | None:
    try:
        with open("/proc/meminfo") as f:
            fields = dict(line.split(":", 1) for line in f)
        return int(fields["MemAvailable"].split()[0]) / 2**20
    except (OSError, KeyError, ValueError):
        return None


def default_jobs(targets: int) -> int:
    """`EDGEQ_JOBS` when set, else one worker per CPU, as many as the memory holds; never more than there are
    targets. (The test suite sets EDGEQ_JOBS=1: its stand-in plugins are patched into this process, where a
    spawned worker cannot see them.)"""
    chosen = os.environ.get("EDGEQ_JOBS", "")
    if chosen.isdigit() and int(chosen) > 0:
        return min(targets, int(chosen))
    memory = _available_memory_gib()
    by_memory = max(1, int(memory // _MEMORY_PER_WORKER_GIB)) if memory is not None else 1
    return max(1, min(targets, cpus(), by_memory))


def run_in_workers(function: Callable[[T], R], tasks: list[T], jobs: int) -> Iterator[tuple[T, R]]:
    """(task, function(task)) as each finishes, from `jobs` spawned workers; an exception in a worker is raised
    here (the caller turns it into the run's internal-error report)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    share = max(1, cpus() // jobs)
    before = os.environ.get("EDGEQ_CPUS")
    os.environ["EDGEQ_CPUS"] = str(share)  # inherited by the workers when they are spawned
    try:
        with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = {pool.submit(function, task): task for task in tasks}
            for future in as_completed(futures):
                yield futures[future], future.result()
    finally:
        if before is None:
            os.environ.pop("EDGEQ_CPUS", None)
        else:
            os.environ["EDGEQ_CPUS"] = before
