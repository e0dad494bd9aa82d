"""Progress bars on stderr for long work (calibration, evaluation); silent when not a terminal or disabled."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TypeVar

T = TypeVar("T")


def bar(items: Iterable[T], desc: str, enabled: bool = True, total: int | None = None) -> Iterator[T]:
    if not enabled:
        yield from items
        return
    from tqdm import tqdm

    yield from tqdm(items, desc=desc, total=total, leave=False, file=sys.stderr, dynamic_ncols=True,
                    disable=None)  # None: off when stderr is not a TTY (CI logs stay clean)


class StageTimer:
    """Wall time per named stage, for the reports' timings line: `with timer.stage("build"): ...`."""

    def __init__(self) -> None:
        self.timings: dict[str, float] = {}

    def stage(self, name: str):
        timer = self

        class _Stage:
            def __enter__(self):
                self.start = time.perf_counter()

            def __exit__(self, *exc):
                timer.timings[name] = round(time.perf_counter() - self.start, 2)

        return _Stage()


_SILENT = [False]
_PREFIX = [""]  # a --jobs worker's target, so interleaved lines say whose they are


def log(message: str) -> None:
    """One line of what edgeq is doing, on stderr (stdout carries the tables a user may pipe)."""
    if not _SILENT[0]:
        print(f"edgeq: {_PREFIX[0]}{message}", file=sys.stderr, flush=True)


def is_silent() -> bool:
    return _SILENT[0]


@contextmanager
def log_context(prefix: str, silent: bool) -> Iterator[None]:
    """`log` lines prefixed (a worker's target), or none at all (`silent`), inside the block."""
    before = _PREFIX[0], _SILENT[0]
    _PREFIX[0], _SILENT[0] = prefix, silent
    try:
        yield
    finally:
        _PREFIX[0], _SILENT[0] = before


@contextmanager
def silenced() -> Iterator[None]:
    """No `log` lines inside the block (the Python API's default)."""
    before, _SILENT[0] = _SILENT[0], True
    try:
        yield
    finally:
        _SILENT[0] = before
