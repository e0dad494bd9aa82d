"""edgeq's CLI in a fresh process with the small ONNX Runtime test targets (ort_testlib) registered, optionally
inside a mount namespace with a file system of the test's choosing (a read-only or a full one)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent
_DRIVER = ("import sys, edgeq.backend as registry; from ort_testlib import toy_plugins; "
           "registry.discover = toy_plugins; from edgeq.cli import main; sys.exit(main(sys.argv[1:]))")


def edgeq_process(*args, env: dict | None = None, mount: str | None = None, timeout: float = 300):
    """Run `edgeq ARGS`; `mount`: shell commands run first in a private mount namespace (`unshare -m`)."""
    environment = dict(os.environ, **(env or {}))
    environment["PYTHONPATH"] = os.pathsep.join([str(HERE), environment.get("PYTHONPATH", "")])
    command = [sys.executable, "-c", _DRIVER, *map(str, args)]
    if mount:
        command = ["unshare", "-m", "sh", "-c", f'{mount} && exec "$@"', "sh", *command]
    return subprocess.run(command, capture_output=True, text=True, env=environment, timeout=timeout, check=False)


def mount_namespaces_work(tmp_path: Path) -> bool:
    """Whether this machine lets the tests mount a tmpfs in a private mount namespace (root, unshare)."""
    if shutil.which("unshare") is None:
        return False
    probe = tmp_path / "mount-probe"
    probe.mkdir(exist_ok=True)
    done = subprocess.run(["unshare", "-m", "sh", "-c", f"mount -t tmpfs -o size=64k tmpfs {probe}"],
                          capture_output=True, check=False)
    return done.returncode == 0


def one_line_error(result, *fragments, code: int = 2) -> str:
    """The process printed exactly one `edgeq: error:` line with a fix, no traceback, and exited `code`."""
    err = result.stderr
    lines = [line for line in err.splitlines() if line.startswith("edgeq: error:")]
    assert result.returncode == code and len(lines) == 1 and "Fix:" in lines[0] and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]
