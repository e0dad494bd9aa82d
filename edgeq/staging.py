"""Output folders: one run at a time writes each, its inputs are never inside it, and it changes in one move.

A run takes an exclusive lock on `.<name>.edgeq-lock` beside `--out` for its whole length (flock: released by the
kernel when the process dies, however it dies), writes into the hidden staging folder
`.<name>.edgeq-partial-<pid>` and renames that into place only when everything succeeded. Under the lock:

- a second run into the same folder is refused at once, naming the first (before, both passed the "is it empty?"
  check at their start, the later one replaced the earlier's result without --force, and the newcomer's cleanup
  could remove the other's staging folder mid-run, which is how a finished `--target all` could list target
  folders that were gone);
- the occupied check is repeated at the start and again at the final move, so a folder that filled up meanwhile is
  never replaced without --force;
- every staging folder but this run's own is stale (its owner no longer holds the lock), and is removed;
- `--out` may not be, hold or lie inside what the run reads: the model file, the data.yaml and dataset root, the
  split folders whose files are listed as images, the recipe files (`protect_inputs`). With --force the old
  contents are deleted, and a report.png inside the val folder would be scored as a background image next time.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import re
import shutil
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from edgeq.errors import EdgeqError, StageError

_OWNER = re.compile(r"\.edgeq-(?:partial|old)-\d+$")
_OVERLAP_FIX = "choose an --out outside the model's, the data's and the recipe's folders (e.g. edgeq-out/<name>)"


def work_folder(target: Path, kind: str = "partial") -> Path:
    """The hidden folder this process writes before `target` is complete."""
    return target.parent / f".{target.name}.edgeq-{kind}-{os.getpid()}"


def lock_path(target: Path) -> Path:
    return target.parent / f".{target.name}.edgeq-lock"


@contextmanager
def exclusive(target: Path, wait: bool = False) -> Iterator[None]:
    """Hold the lock beside `target` for the block. Busy: wait for it (`wait`, for caches every run shares) or
    refuse in one line naming the holder. The lock file is removed on release; a run that opened it just before
    re-locks the file that then stands at the path, so two holders can never coexist."""
    import fcntl

    path = lock_path(target)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip()
            os.close(fd)
            raise EdgeqError(f"another edgeq run{f' (pid {holder})' if holder.isdigit() else ''} is writing to "
                             f"'{target}'", "wait for it to finish, or choose another --out") from None
        if _is_current(fd, path):
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)
        os.close(fd)


def _is_current(fd: int, path: Path) -> bool:
    try:
        here, there = os.fstat(fd), os.stat(path)
    except FileNotFoundError:
        return False
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)


def remove_stale(target: Path) -> list[Path]:
    """Remove the staging folders of `target`; call it holding the lock, which proves their owners are gone
    (whether or not a process of that pid runs: pids are reused, and another pid namespace's are not visible).
    Returns what was removed."""
    removed = []
    if not target.parent.is_dir():
        return removed
    for candidate in target.parent.glob(f".{glob.escape(target.name)}.edgeq-*-*"):
        if _OWNER.search(candidate.name) and candidate.is_dir():
            shutil.rmtree(candidate, ignore_errors=True)
            removed.append(candidate)
    return removed


def check_output_folder(out: Path, force: bool) -> None:
    """`--out` must be a folder (or not exist yet, under folders) and empty unless --force."""
    for parent in out.parents:
        if parent.exists():
            if not parent.is_dir():
                raise EdgeqError(f"output '{out}' would be inside '{parent}', which is a file",
                                 "choose a folder for --out")
            break
    if out.exists() and not out.is_dir():
        raise EdgeqError(f"output '{out}' is a file", "choose a folder for --out")
    if out.exists() and any(out.iterdir()) and not force:
        raise EdgeqError(f"output folder '{out}' already holds {_previous_run(out)}",
                         "choose another --out, or pass --force to replace its contents")


def _previous_run(out: Path) -> str:
    """What is in an output folder, in words: a previous export (and for which target), or just files."""
    try:
        report = json.loads((out / "report.json").read_text())
    except (OSError, ValueError):
        return "files"
    if not isinstance(report, dict):
        return "files"
    target = (report.get("recipe") or {}).get("target") or report.get("targets_requested")
    return f"a previous export (target {target})" if target else "a previous export"


@dataclass
class _Run:
    """An output being staged: where, whether it may replace, and the inputs it must keep clear of."""

    out: Path
    force: bool
    root: Path  # the staging folder's parent, the run's private area
    inputs: list[tuple[str, Path, bool]] = field(default_factory=list)  # (what, path, files listed under it)


_RUNS: list[_Run] = []


def protect_inputs(staging: Path, held: Iterable[tuple[str, Path]] = (),
                   listed: Iterable[tuple[str, Path]] = ()) -> None:
    """Refuse now, and again at the final move, an output that is or holds one of the `held` inputs (files and
    folders read), or is, holds or lies inside one of the `listed` folders (read by listing their files).
    `staging` is the folder `staged_output` gave, or one inside it."""
    inside = [r for r in _RUNS if Path(staging).resolve().is_relative_to(r.root)]
    if not inside:
        return
    run = max(inside, key=lambda r: len(r.root.parts))  # the innermost (adapt's export runs inside adapt's)
    run.inputs += [(what, Path(p), False) for what, p in held] + [(what, Path(p), True) for what, p in listed]
    _refuse_overlap(run)


def _refuse_overlap(run: _Run) -> None:
    out = run.out.resolve()
    for what, path, is_listed in run.inputs:
        if not path.exists():
            continue
        real = path.resolve()
        if real == out or real.is_relative_to(out):
            raise EdgeqError(f"--out '{run.out}' {'is' if real == out else 'holds'} the {what} '{path}'; "
                             f"{'--force would delete it' if run.force else 'the run would write over it'}",
                             _OVERLAP_FIX)
        if is_listed and out.is_relative_to(real):
            raise EdgeqError(f"--out '{run.out}' lies inside the {what} '{path}', whose files are read as images: "
                             "the next run would score report.png and throughput.png", _OVERLAP_FIX)


@contextmanager
def staged_output(out: Path, log: Callable[[str], None], force: bool = False) -> Iterator[Path]:
    """A staging folder for everything `out` will hold, under the output lock: renamed into place (replacing
    `out`'s old contents only with `force`) when the block succeeds; on failure only the logs written beside it
    (`*.log` in its parent) are kept, in `out/logs/`, and a StageError is re-pointed at its kept log."""
    with exclusive(out):
        check_output_folder(out, force)  # again, under the lock: another run may have finished meanwhile
        for stale in remove_stale(out):
            log(f"removed '{stale}', left by an export that no longer runs")
        staging_root = work_folder(out)
        staging = staging_root / "artifacts"
        staging.mkdir(parents=True)
        run = _Run(out=out, force=force, root=staging_root.resolve())
        _RUNS.append(run)
        try:
            yield staging
            _refuse_overlap(run)
            _promote(staging_root, staging, out, force)
        except StageError as exc:
            kept = _keep_logs(staging_root, out)
            raise (exc.moved_log(str(kept / Path(exc.log_path).name)) if exc.log_path and kept else exc) from None
        except BaseException:
            _keep_logs(staging_root, out)
            raise
        finally:
            _RUNS.remove(run)
            shutil.rmtree(staging_root, ignore_errors=True)


def _promote(staging_root: Path, staging: Path, out: Path, force: bool) -> None:
    logs = [p for p in staging_root.glob("*.log")]
    if logs:
        (staging / "logs").mkdir(exist_ok=True)
        for p in logs:
            p.rename(staging / "logs" / p.name)
    if out.exists() and any(out.iterdir()) and not force:  # filled while this run worked (not by edgeq: the lock)
        kept = out.with_name(f"{out.name}.unplaced-{os.getpid()}")
        staging.rename(kept)
        raise EdgeqError(f"output folder '{out}' was filled by something else while this run worked; nothing in it "
                         f"was touched", f"this run's results are in '{kept}': move them, or rerun with --force")
    if out.exists():  # empty, or --force: swap, then delete the old contents
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
