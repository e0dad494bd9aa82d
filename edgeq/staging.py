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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from edgeq.errors import StageError

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


@contextmanager
def staged_output(out: Path, log: Callable[[str], None]) -> Iterator[Path]:
    """A staging folder for everything `out` will hold: renamed into place (replacing `out`'s old contents) when
    the block succeeds; on failure only the logs written beside it (`*.log` in its parent) are kept, in
    `out/logs/`, and a StageError is re-pointed at its kept log."""
    for stale in remove_stale(out):
        log(f"removed '{stale}', left by an export that no longer runs")
    staging_root = work_folder(out)
    shutil.rmtree(staging_root, ignore_errors=True)
    staging = staging_root / "artifacts"
    staging.mkdir(parents=True)
    try:
        yield staging
        _promote(staging_root, staging, out)
    except StageError as exc:
        kept = _keep_logs(staging_root, out)
        raise (exc.moved_log(str(kept / Path(exc.log_path).name)) if exc.log_path and kept else exc) from None
    except BaseException:
        _keep_logs(staging_root, out)
        raise
    finally:
        shutil.rmtree(staging_root, ignore_errors=True)


def _promote(staging_root: Path, staging: Path, out: Path) -> None:
    logs = [p for p in staging_root.glob("*.log")]
    if logs:
        (staging / "logs").mkdir(exist_ok=True)
        for p in logs:
            p.rename(staging / "logs" / p.name)
    if out.exists():  # --force: swap, then delete the old contents
        old = work_folder(out, "old")
        out.rename(old)
        staging.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        staging.rename(out)


def _keep_logs(staging_root: Path, out: Path) -> Path | None:
    logs = list(staging_root.glob("*.log"))
    if not logs:
        return None
    kept = out / "logs"
    kept.mkdir(parents=True, exist_ok=True)
    for p in logs:
        shutil.move(str(p), kept / p.name)
    return kept
