"""Parent side of the worker protocol: one call of a family's worker script in a toolchain's interpreter.

A job file in, a result file out (`child.py` runs in the child), stdout and stderr into a log the caller keeps,
a timeout, and the child killed with its whole process group on Ctrl-C or timeout. Every failure becomes one
`StageError` naming the stage and the log, never a traceback.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from edgeq.errors import StageError

CHILD = Path(__file__).with_name("child.py")


@dataclass(frozen=True)
class WorkerCall:
    """One run of a worker script: what it is given and where its traces go."""

    script: Path  # defines `run(job: dict) -> dict`; runs in the toolchain's interpreter, without edgeq
    job: dict  # JSON-serialisable input
    workdir: Path  # the child's working directory and scratch space
    log: Path  # stdout and stderr of the child; the caller keeps it (a job's log_dir)
    stage: str  # names the step in errors when the worker does not name one itself
    timeout_s: float = 3600.0
    env: Mapping[str, str] = field(default_factory=dict)  # variables added to the child's environment


def run_worker(python: Path | str, call: WorkerCall) -> dict:
    """Run `call.script` in `python`; return what its `run` returned, or raise StageError."""
    call.workdir.mkdir(parents=True, exist_ok=True)
    call.log.parent.mkdir(parents=True, exist_ok=True)
    job_path, result_path = call.workdir / "job.json", call.workdir / "result.json"
    job_path.write_text(json.dumps(call.job))
    result_path.unlink(missing_ok=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "NO_COLOR": "1", **call.env}
    started = time.perf_counter()
    with call.log.open("w") as log:
        log.write(f"$ {python} {CHILD.name} {call.script} {job_path.name}\n")
        log.flush()
        child = subprocess.Popen([str(python), str(CHILD), str(call.script), str(job_path), str(result_path)],
                                 stdout=log, stderr=subprocess.STDOUT, cwd=call.workdir, env=env,
                                 start_new_session=True)  # its own group: killed whole, untouched by the tty
        try:
            code = child.wait(timeout=call.timeout_s)
        except subprocess.TimeoutExpired:
            _kill(child)
            raise StageError(call.stage, f"timed out after {call.timeout_s:.0f} s", str(call.log)) from None
        except BaseException:  # Ctrl-C (or any error here): the child must not outlive us
            _kill(child)
            raise
    try:
        outcome = json.loads(result_path.read_text())
    except (OSError, ValueError):
        seconds = time.perf_counter() - started
        why = f"killed by signal {-code}" if code < 0 else f"exited with status {code}"
        raise StageError(call.stage, f"the worker {why} after {seconds:.0f} s without a result (out of memory?)",
                         str(call.log)) from None
    if not outcome.get("ok"):
        raise StageError(outcome.get("stage") or call.stage, outcome.get("detail") or "no detail", str(call.log))
    return outcome["result"]


def _kill(child: subprocess.Popen) -> None:
    try:
        os.killpg(child.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    child.wait()
