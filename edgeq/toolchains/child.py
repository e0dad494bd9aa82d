"""Child side of edgeq's worker protocol, run by a toolchain's own interpreter, where edgeq is not installed:
standard library only.

    python child.py WORKER_SCRIPT JOB_JSON RESULT_JSON

It refuses network connections for the whole process (edgeq's own guard, `edgeq/untrusted/network.py`, which is
standard library only and loaded here by its path), loads the worker script, calls its `run(job) -> dict` and
writes `{"ok": true, "result": ...}`, or `{"ok": false, "stage": ..., "detail": ...}` with the traceback in the
log (stdout and stderr are the log). A worker script signals a failure it understands by raising
`edgeq_worker.Failure(stage, detail)`; `edgeq_worker.log(message)` prints a line to the log.
"""

import importlib.util
import json
import sys
import traceback
import types
from pathlib import Path

GUARD = Path(__file__).resolve().parents[1] / "untrusted" / "network.py"


class Failure(Exception):
    """A failure the worker understands: `stage` names the step, `detail` is one line for the user."""

    def __init__(self, stage, detail):
        super().__init__(detail)
        self.stage, self.detail = stage, detail


def log(message):
    print(message, flush=True)


def _load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _one_line(exc):
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[-1][:300] if text else 'no detail'}"


def main(argv):
    script, job_path, result_path = argv
    _load("edgeq_network_guard", GUARD).refuse_network()
    protocol = types.ModuleType("edgeq_worker")
    protocol.Failure, protocol.log = Failure, log
    sys.modules["edgeq_worker"] = protocol
    with open(job_path) as f:
        job = json.load(f)
    try:
        outcome = {"ok": True, "result": _load("edgeq_worker_script", script).run(job)}
    except Failure as exc:
        traceback.print_exc()
        outcome = {"ok": False, "stage": exc.stage, "detail": exc.detail}
    except BaseException as exc:  # noqa: BLE001  (a crash inside the toolchain: still one line for the user)
        traceback.print_exc()
        outcome = {"ok": False, "stage": None, "detail": _one_line(exc)}
    with open(result_path, "w") as f:
        json.dump(outcome, f)
    sys.stdout.flush()
    return 0 if outcome["ok"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
