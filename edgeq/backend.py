"""The one interface every target family implements, the data that describes each target, and the registry.

Backends are discovered through the `edgeq.backends` entry-point group; edgeq's own (OpenVINO, TFLite,
TensorRT) register there exactly like a third-party plugin would, so adding a target touches only its
folder and one line in pyproject.toml. A backend module must import without its heavy dependency: it
imports that lazily inside `check`/`build`, and `missing()` says which extra to install.

What differs between targets of one family (accelerator, whether figures are measured or emulated, the
fallback default, rule tables, kernels) is a `TargetProfile`, read from the family's `profiles.yaml`; the
family class holds only the steps its targets share. See ARCHITECTURE.md for the contract.
"""

from __future__ import annotations

import argparse
import importlib.util
import inspect
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict

from edgeq.analyze.scheme import QuantScheme
from edgeq.errors import EdgeqError, MissingDependencyError
from edgeq.fallback import FallbackPolicy
from edgeq.head import HeadLayout, HeadSpec
from edgeq.rules import Finding, RuleTable
from edgeq.runners import Runner

ENTRY_POINT_GROUP = "edgeq.backends"
Status = Literal["measured", "emulated", "not-built"]


class BackendOptions(BaseModel):
    """Base of every backend's recipe section: unknown keys are errors, named by their path."""

    model_config = ConfigDict(extra="forbid")


class TargetProfile(BaseModel):
    """One target, as data. Families subclass it for keys only they read (e.g. the TFLite family's kernels)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    description: str  # one line, shown by `edgeq targets`
    accelerator: str  # what runs the model on the device, e.g. "Coral Edge TPU"
    figures: Literal["measured", "emulated"]  # how this target's accuracy is obtained on this machine
    latency_meaningful: bool  # whether a latency measured here says anything about the device
    fallback_default: bool  # accept layers that leave the accelerator when the user says nothing
    fallback_to: str = "the host CPU"  # where such layers run, for the refusal's wording
    rules: dict[str, str] = {}  # rule tables by stage ("onnx", "tflite", ...), relative to the family folder
    # the largest static batch this target's artifacts are built at (None: any), and why, for the refusal
    max_batch: int | None = None
    max_batch_why: str = ""
    # the INT8 scheme as data (granularity, symmetry, calibration methods, higher precision); None: the target
    # offers no analysis, calibration choice or mixed-precision search
    quantization: QuantScheme | None = None


def load_profiles(path: Path, model: type[TargetProfile] = TargetProfile) -> dict[str, TargetProfile]:
    """A family's profiles.yaml: target name -> profile. A broken file is the plugin's bug, raised as is."""
    import yaml

    data = yaml.safe_load(Path(path).read_text())
    return {name: model.model_validate(entry) for name, entry in data.items()}


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
    slow_evaluation: bool = False  # scoring it takes minutes (reference kernels): `--fast` scores a subset
    extra: dict[str, Any] = field(default_factory=dict)  # backend figures for the report (merged quantizers, ...)
    companions: tuple[Path, ...] = ()  # files deployed with it: host-decoder JSON, calibration cache, build script
    files: tuple[Path, ...] = ()  # what the model itself is made of (OpenVINO: .xml + .bin); empty: `path` alone

    @property
    def model_files(self) -> tuple[Path, ...]:
        return self.files or (self.path,)

    def size_mb(self) -> float | None:
        """The model's own files in MB (None when not built here)."""
        existing = [f for f in self.model_files if f.is_file()]
        return round(sum(f.stat().st_size for f in existing) / 1e6, 3) if existing else None


@dataclass(frozen=True)
class Job:
    """Everything a backend needs for one export, prepared by the pipeline. Read-only: what a backend finds
    goes back in its `BuildResult`."""

    target: str
    profile: TargetProfile
    options: BackendOptions
    head: HeadSpec
    body_onnx: Path  # FP32, images -> box_i/cls_i
    full_onnx: Path  # FP32, images -> output0 in pixels (decode head nodes named edgeq_head/...)
    calibration: Sequence[np.ndarray]  # preprocessed float32 NCHW batches in [0, 1] (lazy)
    staging: Path  # write artifacts here; the pipeline moves the folder into place when all succeeded
    activations: dict[str, int]  # activation module types of the source model, with counts
    fallback: FallbackPolicy  # core's decision rule; backends hand it the findings they make while building
    progress: bool = True
    batch: int = 1  # static batch of the deployable artifacts (calibration batches stay at 1)
    calibration_method: str = "default"  # a name from edgeq.analyze.scheme.METHODS, or the quantizer's default
    # layers (ONNX node names of body_onnx/full_onnx) to keep in the target's higher precision
    keep_float: tuple[str, ...] = ()
    primary_only: bool = False  # build only the default INT8 artifact (a mixed-precision search step)
    qat_onnx: Path | None = None  # what `edgeq qat` trained, as its QuantAwareTraining.export wrote it


@dataclass(frozen=True)
class QuantPlan:
    """How one job quantizes, for `edgeq analyze` and the search: the scheme (the profile's, adjusted by options
    such as OpenVINO's preset), whether the decode head is quantized, and the layers the target already keeps
    out of INT8 (name -> why, e.g. DLA's FP16 last convolutions)."""

    scheme: QuantScheme
    head_quantized: bool = False
    float_layers: dict[str, str] = field(default_factory=dict)


@dataclass
class BuildResult:
    """What `Backend.build` returns: the artifacts (not-built ones too) and the findings made while building
    (on the converted model, after calibration), which the report lists beside the check's."""

    artifacts: list[Artifact]
    findings: list[Finding] = field(default_factory=list)


@dataclass(frozen=True)
class DeploySteps:
    """What a target's deploy kit (edgeq.deploy) says beyond the host side every kit shares: which runtime runs
    the artifact on the device, what to do there before it runs, and the family's inference script."""

    runtime: str  # what runs the artifact on the device, e.g. "OpenVINO Runtime (pip install openvino)"
    device_needs: str  # what the device must have installed
    script: Path  # the family's inference script (a file of the backend), shipped as infer.py
    build: tuple[str, ...] = ()  # commands to run on the device (or its build host) before inference
    input_note: str = ""  # how the runtime takes the input beyond the shared letterbox (quantized, formats)
    run_example: str = "python3 infer.py image.jpg"  # the command that runs the default artifact
    # artifact file (relative to the target folder) -> the files the device runs instead, made by `build`
    # (the Edge TPU's *_edgetpu.tflite, a TensorRT engine)
    device_files: dict[str, tuple[str, ...]] = field(default_factory=dict)


class QuantAwareTraining(ABC):
    """How a target fine-tunes under its own fake quantization (`edgeq qat`). Its backend's quantizer library
    instruments a torch graph with the placement, granularity and symmetry the target's PTQ uses, calibrated the
    way that PTQ calibrates on the same images (so training starts from the PTQ result), and writes the trained
    graph as the ONNX its `build` reads back through `Job.qat_onnx`."""

    library: ClassVar[str]  # for the report, e.g. "NNCF (PyTorch)"
    requires: ClassVar[tuple[str, ...]]  # importable modules training needs (fewer than the whole build)

    def __init__(self, job: Job) -> None:
        self.job = job

    @property
    def head_quantized(self) -> bool:
        """The target quantizes the decode head too: the trained graph must contain it."""
        return False

    @abstractmethod
    def prepare(self, graph, calibration: list) -> Any:
        """Insert fake quantization into `graph` (edgeq.train.graph.TrainingGraph, already on its device) and
        calibrate it on `calibration` (tensors on that device); returns the module to train."""

    @abstractmethod
    def export(self, trained, path: Path) -> Path:
        """Write the trained module as the ONNX `build` takes as `Job.qat_onnx`; returns the path."""

    def describe(self) -> str:
        """One line for the report: what is quantized and how the ranges start."""
        return self.library


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
    tools: ClassVar[tuple[str, ...]] = ()  # distributions whose versions the report records
    profiles: ClassVar[dict[str, TargetProfile]]  # target name -> profile (usually load_profiles(...))

    @property
    def targets(self) -> dict[str, str]:
        """target name -> one-line description."""
        return {name: profile.description for name, profile in self.profiles.items()}

    def install_hint(self) -> str:
        return f"pip install 'edgeq[{self.extra}]'"

    def missing(self) -> list[str]:
        return [m for m in self.requires if importlib.util.find_spec(m) is None]

    def ensure_available(self, target: str) -> None:
        if missing := self.missing():
            raise MissingDependencyError(target, self.install_hint(), missing)

    @abstractmethod
    def options_model(self, target: str) -> type[BackendOptions]:
        """The pydantic model of this target's `options:` recipe section."""

    @abstractmethod
    def check(self, job: Job) -> list[Finding]:
        """Rule findings for the source model on this target (before any conversion)."""

    @abstractmethod
    def build(self, job: Job) -> BuildResult:
        """Quantize and emit every artifact of the target into `job.staging`; return them (not-built ones too)
        with the findings made on the way. Findings that must stop the export go through `job.fallback.enforce`."""

    def quant_plan(self, job: Job) -> QuantPlan | None:
        """How `job` quantizes (None: the profile has no `quantization:` block). Families whose options change the
        scheme or the head treatment override it."""
        return QuantPlan(job.profile.quantization) if job.profile.quantization else None

    def commands(self) -> list[Command]:
        """Subcommands this family adds to the `edgeq` CLI."""
        return []

    def runner_for(self, path: Path) -> Runner | None:
        """A runner for a file this family runs (used by `edgeq eval` on artifacts made elsewhere)."""
        return None

    def deploy_steps(self, job: Job, artifacts: list[Artifact]) -> DeploySteps | None:
        """How `job`'s artifacts are deployed; None: the family ships no deploy kit."""
        return None

    def quantization_aware(self, target: str) -> type[QuantAwareTraining]:
        """The target's quantization-aware training; families that offer none keep this refusal."""
        raise EdgeqError(f"target {target} offers no quantization-aware training",
                         "see `edgeq targets` for the targets that do (openvino, tensorrt, dla)")

    def onnx_rules(self, target: str) -> RuleTable | None:
        """The target's rule table for ONNX graphs (profile `rules.onnx`, relative to the family's folder)."""
        relative = self.profiles[target].rules.get("onnx")
        return RuleTable.load(Path(inspect.getfile(type(self))).parent / relative) if relative else None


def make_job(backend: Backend, target: str, *, options: BackendOptions | dict | None = None,
             allow_fallback: bool | None = None, fallback_flag: str | None = None, **fields: Any) -> Job:
    """A Job for `target` with its profile, validated options and fallback policy (the user's choice, else
    the profile's default); `fields` are the remaining Job fields."""
    profile = backend.profiles[target]
    if not isinstance(options, BackendOptions):
        options = backend.options_model(target).model_validate(options or {})
    allowed = profile.fallback_default if allow_fallback is None else allow_fallback
    policy = FallbackPolicy(target=target, allowed=allowed, fallback_to=profile.fallback_to,
                            flag=fallback_flag if allow_fallback is not None else None)
    return Job(target=target, profile=profile, options=options, fallback=policy, **fields)


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
