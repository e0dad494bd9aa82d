"""Where edgeq keeps caches, and the offline settings Ultralytics needs before it is imported.

Nothing edgeq runs may reach the network or write outside the output folder and this cache, which the
user moves with `--cache-dir` or `EDGEQ_CACHE`.
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    return Path(os.environ.get("EDGEQ_CACHE") or Path.home() / ".cache" / "edgeq")


def set_cache_dir(path: Path) -> None:
    os.environ["EDGEQ_CACHE"] = str(Path(path).resolve())


def offline_ultralytics():
    """Import ultralytics with downloads, auto-installs and its settings file pointed into our cache."""
    root = cache_dir()
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_AUTOINSTALL", "false")
    os.environ.setdefault("YOLO_VERBOSE", "false")
    os.environ.setdefault("YOLO_CONFIG_DIR", str(root / "ultralytics"))
    os.environ.setdefault("MPLCONFIGDIR", str(root / "matplotlib"))
    import ultralytics

    return ultralytics
