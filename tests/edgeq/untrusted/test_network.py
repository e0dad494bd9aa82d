"""Nothing is fetched at run time, and the checkpoint loaded is the file named (issue 20, case 2)."""

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgeq.errors import as_user_error
from edgeq.untrusted.network import NetworkRefused, forget_attempts, refuse_network, refused_attempts


@pytest.fixture
def guard():
    refuse_network()
    forget_attempts()
    yield
    forget_attempts()


@pytest.fixture
def v5_folder():
    """A folder whose path has no 'u': Ultralytics renames `yolov5s.pt` only then (it skips any path with a u)."""
    folder = Path("/tmp") / f"edgeq-v5-{os.getpid()}-{time.monotonic_ns()}"  # digits only: no u
    assert "u" not in str(folder)
    folder.mkdir()
    yield folder
    shutil.rmtree(folder)


def test_connections_off_this_machine_are_refused_and_named(guard):
    with pytest.raises(NetworkRefused, match="refused a network connection to 192.0.2.1:443"):
        socket.create_connection(("192.0.2.1", 443), timeout=1)
    with pytest.raises(NetworkRefused, match="github.com:443"):
        socket.getaddrinfo("github.com", 443)
    assert refused_attempts()[0].startswith("192.0.2.1:443 (by ")


def test_loopback_stays_allowed(guard):
    server = socket.create_server(("127.0.0.1", 0))
    with socket.create_connection(server.getsockname(), timeout=1):
        pass
    server.close()
    assert refused_attempts() == []


def test_a_wrapped_refusal_still_reads_as_the_network_in_one_line(guard):
    """Libraries wrap the refusal in their own error (urllib's URLError here); the CLI's line names the attempt."""
    import urllib.request

    with pytest.raises(Exception) as caught:
        urllib.request.urlopen("https://github.com/ultralytics/assets/releases/download/v8.4.0/yolov5su.pt", timeout=1)
    line = as_user_error(caught.value).one_line()
    assert "a network connection was refused (github.com:443" in line and "pass local files only" in line


def test_a_checkpoint_named_yolov5s_loads_that_file_not_the_u_one_beside_it(v5_folder, demo_pt):
    """Ultralytics turned yolov5s.pt into yolov5su.pt and loaded that file instead, when one sat beside it."""
    from edgeq.model import load_detector

    shutil.copy(demo_pt, v5_folder / "yolov5s.pt")
    (v5_folder / "yolov5su.pt").write_bytes(b"a different file")
    detector = load_detector(v5_folder / "yolov5s.pt")
    assert detector.head.nc == 6 and detector.source == v5_folder / "yolov5s.pt"


def test_a_checkpoint_named_yolov3_loads_offline_without_the_network(v5_folder, demo_pt, small_data):
    """With no yolov3u.pt beside it, Ultralytics tried to download one ("Download failure"); here the process runs
    with its network namespace removed, and loads the file named."""
    if shutil.which("unshare") is None or subprocess.run(["unshare", "-n", "true"], check=False).returncode:
        pytest.skip("unshare -n is not available here (needs root or user namespaces)")
    shutil.copy(demo_pt, v5_folder / "yolov3.pt")
    result = subprocess.run(["unshare", "-n", sys.executable, "-m", "edgeq.cli", "eval", v5_folder / "yolov3.pt",
                             "--data", small_data, "--val-images", "4", "--no-progress"],
                            capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0 and "| yolov3.pt | torch" in result.stdout, result.stderr
    assert "Traceback" not in result.stderr and not (v5_folder / "yolov3u.pt").exists()
