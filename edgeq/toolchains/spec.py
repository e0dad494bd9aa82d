"""A family's toolchain environment as data, where it lives, whether it is ready, and how it is made.

An environment is ready when its interpreter exists and, for one edgeq made, its marker file records the same
requirements the family ships now (a changed pin makes it out of date, not silently stale). One the user
points at with `EDGEQ_<NAME>_PYTHON` is taken as it is: its worker checks the toolchain's version at run time.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from edgeq.env import cache_dir
from edgeq.errors import EdgeqError

MARKER = "edgeq-toolchain.json"


class ToolchainSpec(BaseModel):
    """What a family's vendor toolchain needs, pinned: the interpreter it is made from, the requirements installed
    with their dependencies, those installed without (a toolchain whose own pins are wrong), and a probe."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str  # `edgeq toolchains install <name>`, EDGEQ_<NAME>_PYTHON
    description: str  # one line for `edgeq toolchains`
    python: str = "python3"  # the interpreter the environment is made from
    python_versions: tuple[str, ...] = ()  # major.minor versions the toolchain has wheels for (empty: any)
    requirements: Path  # pip requirements file, installed with dependencies
    no_deps: Path | None = None  # pip requirements file installed afterwards with --no-deps
    probe: str = ""  # Python the environment must run after installing, e.g. "from rknn.api import RKNN"

    @property
    def env_var(self) -> str:
        return f"EDGEQ_{self.name.upper().replace('-', '_')}_PYTHON"

    @property
    def folder(self) -> Path:
        return cache_dir() / "toolchains" / self.name

    def install_line(self) -> str:
        return f"edgeq toolchains install {self.name}"

    def fingerprint(self) -> str:
        """The requirements as shipped now: an environment made from other ones is out of date."""
        digest = hashlib.sha256(self.python.encode())
        for path in (self.requirements, self.no_deps):
            digest.update(path.read_bytes() if path is not None else b"-")
        return digest.hexdigest()[:16]

    def python_path(self) -> Path:
        """The interpreter the worker runs in: the user's (EDGEQ_<NAME>_PYTHON) or the one edgeq installed."""
        chosen = os.environ.get(self.env_var)
        return Path(chosen) if chosen else self.folder / "bin" / "python"

    def not_ready(self) -> str | None:
        """What is missing for the toolchain to run now (a noun phrase, as a missing module's name is), or None."""
        python = self.python_path()
        if os.environ.get(self.env_var):
            return None if _executable(python) else f"{self.env_var}={python} (not an executable interpreter)"
        try:
            marker = json.loads((self.folder / MARKER).read_text())
        except (OSError, ValueError):
            return f"the {self.name} toolchain environment"
        if marker.get("fingerprint") != self.fingerprint() or not _executable(python):
            return f"an up-to-date {self.name} toolchain environment (its pinned requirements changed)"
        return None

    def installed_version(self) -> dict:
        """The marker edgeq wrote when it installed the environment (empty for a user's interpreter)."""
        try:
            return json.loads((self.folder / MARKER).read_text())
        except (OSError, ValueError):
            return {}


def _requirement_lines(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines() if line.strip() and not line.lstrip().startswith("#")]


def _executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def known_toolchains() -> dict[str, tuple[ToolchainSpec, str]]:
    """name -> (spec, family) over every installed family that declares one."""
    from edgeq.backend import families

    found = {}
    for backend in families():
        if backend.toolchain is not None:
            found[backend.toolchain.name] = (backend.toolchain, backend.family)
    return found


def install_toolchain(spec: ToolchainSpec, python: str | None = None, force: bool = False,
                      log: Callable[[str], None] = print) -> Path:
    """Make the environment under edgeq's cache: a venv from `python` (default: the spec's), its requirements,
    the probe, then the marker. It is built beside its final place and moved there only when complete, so a
    failed or interrupted install leaves the previous environment (or none) in place. Returns the interpreter."""
    if spec.not_ready() is None and not force and not os.environ.get(spec.env_var):
        log(f"the {spec.name} toolchain is already installed in {spec.folder} (--force reinstalls it)")
        return spec.python_path()
    base = shutil.which(python or spec.python)
    if base is None:
        raise EdgeqError(f"the {spec.name} toolchain needs the interpreter '{python or spec.python}', which is not "
                         "on PATH", f"install it, or pass --python /path/to/python{'|'.join(spec.python_versions)}")
    version = subprocess.run([base, "-c", "import sys; print(f'{sys.version_info[0]}.{sys.version_info[1]}')"],
                             capture_output=True, text=True, check=False).stdout.strip()
    if spec.python_versions and version not in spec.python_versions:
        raise EdgeqError(f"the {spec.name} toolchain has wheels for Python {', '.join(spec.python_versions)}, "
                         f"not {version} ({base})", f"pass --python with a Python {spec.python_versions[0]}")
    spec.folder.parent.mkdir(parents=True, exist_ok=True)
    building = spec.folder.with_name(f".{spec.name}.installing-{os.getpid()}")
    log_path = spec.folder.with_name(f"{spec.name}-install.log")
    shutil.rmtree(building, ignore_errors=True)
    started = time.perf_counter()
    steps = [("create the environment", [base, "-m", "venv", str(building)])]
    pip = [str(building / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    if _requirement_lines(spec.requirements):
        steps.append(("install its requirements", [*pip, "-r", str(spec.requirements)]))
    if spec.no_deps is not None:
        steps.append(("install the toolchain without its own pins", [*pip, "--no-deps", "-r", str(spec.no_deps)]))
    if spec.probe:
        steps.append(("import it", [str(building / "bin" / "python"), "-c", spec.probe]))
    env = {k: v for k, v in os.environ.items() if k not in ("PIP_CONSTRAINT", "PYTHONPATH", "VIRTUAL_ENV")}
    try:
        with log_path.open("w") as out:
            for what, command in steps:
                log(f"{spec.name}: {what} ...")
                out.write(f"$ {' '.join(command)}\n")
                out.flush()
                code = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, env=env, check=False).returncode
                if code:
                    raise EdgeqError(f"installing the {spec.name} toolchain failed at '{what}' (exit {code}; log: "
                                     f"{log_path})", "read the log; a registry that lacks a pinned version fails here")
        (building / MARKER).write_text(json.dumps({
            "name": spec.name, "fingerprint": spec.fingerprint(), "python": version, "base": base,
            "installed": time.strftime("%Y-%m-%dT%H:%M:%S"), "seconds": round(time.perf_counter() - started, 1),
        }, indent=2) + "\n")
        shutil.rmtree(spec.folder, ignore_errors=True)
        building.rename(spec.folder)
    finally:
        shutil.rmtree(building, ignore_errors=True)
    log(f"{spec.name}: ready in {time.perf_counter() - started:.0f} s ({spec.folder / 'bin' / 'python'}; "
        f"log {log_path})")
    return spec.folder / "bin" / "python"

