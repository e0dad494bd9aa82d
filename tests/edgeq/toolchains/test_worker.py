"""The worker protocol: a job in, a result out, every failure one line naming a log that exists, the child killed
on timeout and on Ctrl-C, and no network inside."""

import os
import signal
import sys
import textwrap
import threading
import time

import pytest

from edgeq.errors import StageError
from edgeq.toolchains import WorkerCall, run_worker

SCRIPT = """
import os, socket, sys, time
from pathlib import Path
from edgeq_worker import Failure, log

def run(job):
    Path(job["pidfile"]).write_text(str(os.getpid()))
    mode = job["mode"]
    log(f"mode {mode}")
    if mode == "fail":
        raise Failure("compile", "layer 7 is not supported")
    if mode == "exit":
        os._exit(3)
    if mode == "sleep":
        time.sleep(60)
    if mode == "network":
        socket.create_connection(("10.255.255.1", 9), timeout=1)
    return {"doubled": job["value"] * 2, "python": sys.executable}
"""


@pytest.fixture
def call(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(textwrap.dedent(SCRIPT))

    def make(mode, timeout_s=60.0):
        return WorkerCall(script=script, job={"mode": mode, "value": 21, "pidfile": str(tmp_path / "pid")},
                          workdir=tmp_path / "work", log=tmp_path / "logs" / "worker.log", stage="convert",
                          timeout_s=timeout_s)

    return make


def _gone(pid_file) -> bool:
    pid = int(pid_file.read_text())
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_a_result_comes_back(call):
    assert run_worker(sys.executable, call("ok"))["doubled"] == 42


@pytest.mark.parametrize("mode, stage, detail", [
    ("fail", "compile", "layer 7 is not supported"),
    ("exit", "convert", "exited with status 3"),
    ("network", "convert", "edgeq refused a network connection to 10.255.255.1:9"),
])
def test_failures_are_one_line_naming_the_kept_log(call, mode, stage, detail):
    with pytest.raises(StageError) as err:
        run_worker(sys.executable, call(mode))
    line = err.value.one_line()
    assert err.value.stage == stage and detail in line and "\n" not in line
    assert err.value.log_path and f"mode {mode}" in open(err.value.log_path).read()


def test_a_hung_worker_is_killed_at_its_timeout(call, tmp_path):
    started = time.perf_counter()
    with pytest.raises(StageError, match="timed out after 1 s"):
        run_worker(sys.executable, call("sleep", timeout_s=1))
    assert time.perf_counter() - started < 30 and _gone(tmp_path / "pid")


@pytest.fixture
def ctrl_c_handled():
    """Python's own Ctrl-C handler for the test: a test run started in the background by a non-interactive shell
    inherits SIGINT ignored (Python then installs no handler), and the signal would never reach the wait."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_ctrl_c_kills_the_child(call, tmp_path, ctrl_c_handled):
    def interrupt():
        while not (tmp_path / "pid").exists():
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=interrupt, daemon=True).start()
    with pytest.raises(KeyboardInterrupt):
        run_worker(sys.executable, call("sleep"))
    assert _gone(tmp_path / "pid")
