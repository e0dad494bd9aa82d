"""The conditions Ultralytics' trainer runs under inside edgeq: offline, no font downloads, without polars where it
is missing (Ultralytics imports it only to copy results.csv into the checkpoint), and without torchvision where
torchvision cannot be imported (a build for another torch: its C++ ops fail to register). Ultralytics' validator
imports torchvision only so its import time is not counted, AutoBackend's warmup (Ultralytics' own scoring of a
checkpoint, as scripts/train_models.py runs it) only to switch its NMS to torchvision's, and that NMS uses its own
torch implementation when torchvision is not loaded, which is what edgeq's evaluation does too."""

from __future__ import annotations

import contextlib
import importlib.util
import sys
import types
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def training_environment(work: Path) -> Iterator[None]:
    from edgeq.env import offline_ultralytics

    offline_ultralytics()
    install_polars_stand_in()
    from ultralytics.data import utils as data_utils
    from ultralytics.utils import checks

    patched = [(data_utils, "check_font"), (checks, "check_font")]
    originals = [(module, name, getattr(module, name)) for module, name in patched if hasattr(module, name)]
    for module, name, _ in originals:
        setattr(module, name, lambda *args, **kwargs: None)  # the plot font is a download; edgeq plots nothing
    from ultralytics.engine import validator
    from ultralytics.nn import autobackend

    validator_init, warmup = validator.BaseValidator.__init__, autobackend.AutoBackend.warmup
    if not _torchvision_loads():
        validator.BaseValidator.__init__ = _without_torchvision(validator_init)
        autobackend.AutoBackend.warmup = _without_torchvision(warmup)
    work.mkdir(parents=True, exist_ok=True)
    try:
        yield
    finally:
        for module, name, original in originals:
            setattr(module, name, original)
        validator.BaseValidator.__init__, autobackend.AutoBackend.warmup = validator_init, warmup


def _torchvision_loads() -> bool:
    try:
        import torchvision  # noqa: F401
    except (ImportError, RuntimeError, OSError):  # a torch/torchvision mismatch raises RuntimeError
        return False
    return True


def _without_torchvision(method):
    """`method` (the validator's constructor, AutoBackend's warmup) with its bare `import torchvision` answered by
    a placeholder that is removed again at once, so nothing later (Ultralytics' NMS checks sys.modules) mistakes
    it for the real package."""

    def wrapped(self, *args, **kwargs):
        sys.modules["torchvision"] = types.ModuleType("torchvision")
        try:
            return method(self, *args, **kwargs)
        finally:
            sys.modules.pop("torchvision", None)

    return wrapped


def install_polars_stand_in() -> None:
    """Where polars is missing, a module whose read_csv raises: Ultralytics then stores no results table in the
    checkpoint, and nothing else changes. Call before importing Ultralytics' trainer."""
    if importlib.util.find_spec("polars") is not None or "polars" in sys.modules:
        return
    stand_in = types.ModuleType("polars")

    def read_csv(*_args, **_kwargs):
        raise RuntimeError("polars is not installed: results.csv is not copied into the checkpoint")

    stand_in.read_csv = read_csv
    sys.modules["polars"] = stand_in
