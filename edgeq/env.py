"""Where edgeq keeps caches, and the offline settings Ultralytics needs before it is imported.

Nothing edgeq runs may reach the network or write outside the output folder and this cache, which the
user moves with `--cache-dir` or `EDGEQ_CACHE`.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path


def importable(module: str) -> bool:
    """Whether `module` (dotted names too) can be imported here, without importing it.

    `importlib.util.find_spec("ethosu.vela")` imports the parent `ethosu` and raises when that is absent, so a
    check for one target's optional package took `edgeq targets` down on a machine without it."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package absent, or a module whose __spec__ is unset
        return False


def cpus() -> int:
    """The CPUs this process may use: a `--jobs` worker's share (`EDGEQ_CPUS`), else the affinity mask (a
    container's or taskset's limit, which `os.cpu_count()` ignores). Thread pools and process pools size to it."""
    share = os.environ.get("EDGEQ_CPUS", "")
    if share.isdigit() and int(share) > 0:
        return int(share)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def cache_dir() -> Path:
    return Path(os.environ.get("EDGEQ_CACHE") or Path.home() / ".cache" / "edgeq")


def set_cache_dir(path: Path) -> None:
    os.environ["EDGEQ_CACHE"] = str(Path(path).resolve())


def contain_caches() -> None:
    """Point every HOME-like cache the toolchain writes (Ultralytics settings, matplotlib, Keras, ONNX
    Runtime's ~/.cache/Microsoft) into our cache, unless the user already chose a place."""
    root = cache_dir()
    for variable, folder in (("YOLO_CONFIG_DIR", "ultralytics"), ("MPLCONFIGDIR", "matplotlib"),
                             ("KERAS_HOME", "keras"), ("XDG_CACHE_HOME", "xdg")):
        os.environ.setdefault(variable, str(root / folder))


def offline_ultralytics():
    """Import ultralytics with downloads and auto-installs off, its settings file in our cache, its YAML reads
    through edgeq's loader and checkpoint names kept as given (`edgeq.untrusted.ultralytics_io`)."""
    contain_caches()
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_AUTOINSTALL", "false")
    os.environ.setdefault("YOLO_VERBOSE", "false")
    import ultralytics
    import ultralytics.utils
    import ultralytics.utils.checks

    from edgeq.untrusted.ultralytics_io import harden

    harden(ultralytics.utils, ultralytics.utils.checks)
    return ultralytics
