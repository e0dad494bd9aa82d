"""Hidden work folders beside an output, named after the process that owns them.

Work is written into `.<name>.edgeq-<kind>-<pid>` and renamed into place only when complete. A process killed
with SIGKILL cannot clean up, so each new run removes the folders whose owner no longer runs; a folder whose
owner is alive (a concurrent export) is left alone.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
from pathlib import Path

_OWNER = re.compile(r"\.edgeq-(?:partial|old)-(\d+)$")


def work_folder(target: Path, kind: str = "partial") -> Path:
    """The hidden folder this process writes before `target` is complete."""
    return target.parent / f".{target.name}.edgeq-{kind}-{os.getpid()}"


def remove_stale(target: Path) -> list[Path]:
    """Remove work folders for `target` left by processes that no longer run; return what was removed."""
    removed = []
    if not target.parent.is_dir():
        return removed
    for candidate in target.parent.glob(f".{glob.escape(target.name)}.edgeq-*-*"):
        match = _OWNER.search(candidate.name)
        if match and candidate.is_dir() and not _running(int(match.group(1))):
            shutil.rmtree(candidate, ignore_errors=True)
            removed.append(candidate)
    return removed


def _running(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True
