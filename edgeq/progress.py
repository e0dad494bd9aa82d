"""Progress bars on stderr for long work (calibration, evaluation); silent when not a terminal or disabled."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def bar(items: Iterable[T], desc: str, enabled: bool = True, total: int | None = None) -> Iterator[T]:
    if not enabled:
        yield from items
        return
    from tqdm import tqdm

    yield from tqdm(items, desc=desc, total=total, leave=False, file=sys.stderr, dynamic_ncols=True,
                    disable=None)  # None: off when stderr is not a TTY (CI logs stay clean)
