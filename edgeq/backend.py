"""The one interface every target family implements, and the registry that finds them.

Backends are discovered through the `edgeq.backends` entry-point group; edgeq's own (OpenVINO, TFLite,
TensorRT) register there exactly like a third-party plugin would, so adding a target touches only its
folder and one line in pyproject.toml. A backend module must import without its heavy dependency: it
imports that lazily inside `check`/`build`, and `missing()` says which extra to install.
"""

from __future__ import annotations

import argparse
import importlib.util
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict

from edgeq.errors import EdgeqError, MissingDependencyError
from edgeq.head import HeadLayout, HeadSpec
from edgeq.rules import Finding
from edgeq.runners import Runner

ENTRY_POINT_GROUP = "edgeq.backends"
Status = Literal["measured", "emulated", "not-built"]


class BackendOptions(BaseModel):
    """Base of every backend's recipe section: unknown keys are errors, named by their path."""

    model_config = ConfigDict(extra="forbid")


@dataclass
class Artifact:
    """One deployable file (or, for `not-built`, the file that would be) and how to run it here."""

    name: str  # unique in the report, e.g. "openvino-int8-fp32head"
    target: str
    variant: str  # e.g. "fp32", "int8", "int8-attached-head"
    path: Path  # inside the staging folder while building; the report shows it relative to the output folder
    precision: str  # "fp32", "int8", "int8+fp32-head", "int8+fp16"
    layout: HeadLayout  # what the outputs hold, i.e. how the host decodes them
    status: Status
    note: str = ""
    open_runner: Callable[[], Runner] | None = None  # None: nothing here can run it (not-built)
    measure_latency: bool = False  # only where the timing means something for the target (its own runtime)
    extra: dict[str, Any] = field(default_factory=dict)  # backend figures for the report (merged quantizers, ...)
    companions: tuple[Path, ...] = ()  # files deployed with it: host-decoder JSON, calibration cache, build script


@dataclass
class Job:
    """Everything a backend needs for one export, prepared by the pipeline."""

    target: str
    options: BackendOptions
    head: HeadSpec
    body_onnx: Path  # FP32, images -> box_i/cls_i
    full_onnx: Path  # FP32, images -> output0 in pixels (decode head nodes named edgeq_head/...)
    calibration: Sequence[np.ndarray]  # preprocessed float32 NCHW batches in [0, 1] (lazy)
    staging: Path  # write artifacts here; the pipeline moves the folder into place when all succeeded
    activations: dict[str, int]  # activation module types of the source model, with counts
    allow_fallback: bool = True  # resolved: --allow-cpu-fallback / --no-gpu-fallback, else the target's default
    progress: bool = True
    findings: list[Finding] = field(default_factory=list)  # found while building (e.g. after calibration)


@dataclass(frozen=True)
class Command:
    """An extra `edgeq <name>` subcommand a backend contributes (e.g. the TensorRT family's `translate`)."""

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]  # raises EdgeqError for user mistakes, like every command


class Backend(ABC):
    """A target family. Subclasses are stateless; the pipeline calls check -> build, then runs artifacts."""

    family: ClassVar[str]
    extra: ClassVar[str]  # `pip install edgeq[<extra>]`
    requires: ClassVar[tuple[str, ...]]  # importable modules the family needs
    targets: ClassVar[dict[str, str]]  # target name -> one-line description
    # Whether ops falling back off the accelerator are accepted when the user says nothing. The pipeline stops
    # on any `error` finding, and on `fallback` findings when fallback is not allowed.
    fallback_by_default: ClassVar[dict[str, bool]] = {}

    def missing(self) -> list[str]:
        return [m for m in self.requires if importlib.util.find_spec(m) is None]

    def ensure_available(self, target: str) -> None:
        if missing := self.missing():
            raise MissingDependencyError(target, self.extra, missing)

    @abstractmethod
    def options_model(self, target: str) -> type[BackendOptions]:
        """The pydantic model of this target's `options:` recipe section."""

    @abstractmethod
    def check(self, job: Job) -> list[Finding]:
        """Rule findings for the source model on this target (before any conversion)."""

    @abstractmethod
    def build(self, job: Job) -> list[Artifact]:
        """Quantize and emit every artifact of the target into `job.staging`; return them (not-built ones too)."""

    def commands(self) -> list[Command]:
        """Subcommands this family adds to the `edgeq` CLI."""
        return []

    def runner_for(self, path: Path) -> Runner | None:
        """A runner for a file this family runs (used by `edgeq eval` on artifacts made elsewhere)."""
        return None


BROKEN_PLUGINS: dict[str, str] = {}  # entry point -> why it failed to load (shown by `edgeq targets`)


def discover() -> dict[str, Backend]:
    """target name -> backend instance, from the entry-point group. A plugin that fails to import is
    skipped and remembered, so one broken third-party package cannot take the others down."""
    found: dict[str, Backend] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            backend = ep.load()()
        except Exception as exc:  # a plugin's own bug; reported, not fatal
            BROKEN_PLUGINS[ep.name] = f"{type(exc).__name__}: {exc}"
            continue
        for target in backend.targets:
            found[target] = backend
    return found


def backend_for(target: str) -> Backend:
    backends = discover()
    if target not in backends:
        known = ", ".join(sorted(backends)) or "none (is edgeq installed? pip install .)"
        raise EdgeqError(f"unknown target '{target}'", f"choose one of: {known} (see `edgeq targets`)")
    return backends[target]
