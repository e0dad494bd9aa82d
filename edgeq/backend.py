"""The one interface every target family implements, the data that describes each target, and the registry.

Backends are discovered through the `edgeq.backends` entry-point group; edgeq's own (OpenVINO, TFLite,
TensorRT) register there exactly like a third-party plugin would, so adding a target touches only its
folder and one line in pyproject.toml. A backend module must import without its heavy dependency: it
imports that lazily inside `check`/`build`, and `missing()` says which extra to install (or which toolchain
environment, for a vendor toolchain that runs in an interpreter of its own, `edgeq.toolchains`).

What differs between targets of one family (accelerator, whether figures are measured or emulated, the
fallback default, rule tables, kernels) is a `TargetProfile`, read from the family's `profiles.yaml`; the
family class holds only the steps its targets share. Families import this contract from `edgeq.plugin`, the
stable surface; see ARCHITECTURE.md.
"""

from __future__ import annotations

import argparse
import inspect
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from enum import Enum
from functools import cache
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict

from edgeq.analyze.scheme import QuantScheme
from edgeq.baseline.spec import UltralyticsExport
from edgeq.env import importable
from edgeq.errors import EdgeqError, MissingDependencyError
from edgeq.fallback import FallbackPolicy
from edgeq.head import HeadLayout, HeadSpec
from edgeq.rules import Finding, RuleTable
from edgeq.runners import Runner
from edgeq.toolchains import ToolchainSpec

ENTRY_POINT_GROUP = "edgeq.backends"
# how a figure was obtained here: measured by the target's own runtime, simulated by the vendor's own simulator,
# emulated by a reference runtime reproducing the target's integer arithmetic, or not built (no toolchain here)
Status = Literal["measured", "simulated", "emulated", "not-built"]


class BackendOptions(BaseModel):
    """Base of every backend's recipe section: unknown keys are errors, named by their path."""

    model_config = ConfigDict(extra="forbid")


class TargetProfile(BaseModel):
    """One target, as data. Families subclass it for keys only they read (e.g. the TFLite family's kernels)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    description: str  # one line, shown by `edgeq targets`
    accelerator: str  # what runs the model on the device, e.g. "Coral Edge TPU"
    figures: Literal["measured", "simulated", "emulated"]  # how this target's accuracy is obtained here
    latency_meaningful: bool  # whether a latency measured here says anything about the device
    fallback_default: bool  # accept layers that leave the accelerator when the user says nothing
    fallback_to: str = "the host CPU"  # where such layers run, for the refusal's wording
    rules: dict[str, str] = {}  # rule tables by stage ("onnx", "tflite", ...), relative to the family folder
    # the largest static batch this target's artifacts are built at (None: any), and why, for the refusal
    max_batch: int | None = None
    max_batch_why: str = ""
    # the quantization scheme as data (granularity, symmetry, shared scales, calibration methods, higher
    # precision); None: the target offers no analysis, calibration choice or mixed-precision search
    quantization: QuantScheme | None = None
    # Ultralytics' own export for this target (`--baseline ultralytics`); None: Ultralytics has no format for it
    ultralytics: UltralyticsExport | None = None
    # importable modules this target needs beyond its family's `requires` (a compiler only it runs, in the same
    # extra): without them the target alone is unavailable, the family's other targets work
    requires: tuple[str, ...] = ()


def load_profiles(path: Path, model: type[TargetProfile] = TargetProfile) -> dict[str, TargetProfile]:
    """A family's profiles.yaml: target name -> profile. A broken file is the plugin's bug, raised as is."""
    import yaml

    data = yaml.safe_load(Path(path).read_text())
    return {name: model.model_validate(entry) for name, entry in data.items()}


class Role(str, Enum):
    """What an artifact is for. The backend says it; core never guesses it from names or precisions."""

    DEPLOYABLE = "deployable"  # the file the target ships: --max-drop gates it, DEPLOY.md runs it by default
    QAT = "qat"  # built from `edgeq qat`'s trained graph: when present it is gated and shipped instead
    COMPARISON = "comparison"  # another treatment of the same model, reported beside it (head, granularity)
    REFERENCE = "reference"  # the target's float build (FP32 IR): the search's latency baseline
    EMULATION = "emulation-only"  # figures only: reproduces a build the device makes; nothing to ship
    BASELINE = "baseline"  # the default path's own export (Ultralytics'), scored beside edgeq's; not edgeq's build


SHIPPED_ROLES = (Role.QAT, Role.DEPLOYABLE)  # in this order: the first present is what the target ships

PrecisionName = Literal["int8", "int16", "fp16", "fp32"]
_BITS = {"int8": 8, "int16": 16, "fp16": 16, "fp32": 32}


@dataclass(frozen=True)
class Precision:
    """What an artifact computes in: weights, activations, the decode head (wherever it runs: in the graph, or on
    the host for a detached head), and per-layer exceptions (layers kept in a higher precision). Printed by
    `label()` everywhere: "int8", "int8+fp32-head", "w8a16", "int8+fp32-head, 4 fp16 layers"."""

    weights: PrecisionName
    activations: PrecisionName
    head: PrecisionName | None = None  # None: as the activations
    layers: tuple[tuple[str, PrecisionName], ...] = ()  # (layer name, precision) exceptions

    @classmethod
    def int8(cls, head: PrecisionName | None = None, keep: Sequence[str] = (),
             kept_as: PrecisionName = "fp32") -> Precision:
        """The common case: INT8 weights and activations, `keep` layers in `kept_as`."""
        return cls("int8", "int8", head, tuple((name, kept_as) for name in keep))

    @classmethod
    def parse(cls, text: str) -> Precision:
        """The labels with no per-layer part ("fp32", "int8", "int8+fp32-head", "w8a16"), for plugins and tests
        that name a precision as text."""
        base, _, head = text.partition("+")
        if base.startswith("w") and "a" in base:
            bits = {v: k for k, v in _BITS.items() if k.startswith("int")}
            w, a = base[1:].split("a")
            weights, activations = bits.get(int(w)), bits.get(int(a))
        else:
            weights = activations = base
        head_name = head.removesuffix("-head") if head else None
        names = (weights, activations, *(() if head_name is None else (head_name,)))
        if any(n not in _BITS for n in names) or (head and not head.endswith("-head")):
            raise ValueError(f"unknown precision '{text}' (want e.g. fp32, int8, int8+fp32-head, w8a16)")
        return cls(weights, activations, head_name)

    @property
    def quantized(self) -> bool:
        return self.weights.startswith("int") or self.activations.startswith("int")

    def label(self) -> str:
        base = self.weights if self.weights == self.activations else \
            f"w{_BITS[self.weights]}a{_BITS[self.activations]}"
        text = base if self.head in (None, self.activations) else f"{base}+{self.head}-head"
        counts = Counter(precision for _, precision in self.layers)
        extra = ", ".join(f"{n} {p} layer{'s' if n > 1 else ''}" for p, n in counts.items())
        return f"{text}, {extra}" if extra else text

    def describe(self) -> dict[str, Any]:
        """The structured form the reports store beside the label."""
        return {"weights": self.weights, "activations": self.activations, "head": self.head or self.activations,
                "layers": dict(self.layers)}

    def __str__(self) -> str:
        return self.label()


@dataclass
class Artifact:
    """One file a target's build made (or, for `not-built`, the file that would be) and how to run it here."""

    name: str  # unique in the report, e.g. "openvino-int8-fp32head"
    target: str
    variant: str  # e.g. "fp32", "int8", "int8-attached-head"
    path: Path  # inside the staging folder while building; the report shows it relative to the output folder
    precision: Precision | str  # a Precision (a plain label such as "int8+fp32-head" is parsed into one)
    layout: HeadLayout  # what the outputs hold, i.e. how the host decodes them
    status: Status
    role: Role = Role.DEPLOYABLE  # a build has exactly one DEPLOYABLE (and at most one QAT); the rest say theirs
    note: str = ""
    open_runner: Callable[[], Runner] | None = None  # None: nothing here can run it (not-built)
    measure_latency: bool = False  # only where the timing means something for the target (its own runtime)
    slow_evaluation: bool = False  # scoring it takes minutes (reference kernels): `--fast` scores a subset
    extra: dict[str, Any] = field(default_factory=dict)  # backend figures for the report (merged quantizers, ...)
    companions: tuple[Path, ...] = ()  # files deployed with it: host-decoder JSON, calibration cache, build script
    files: tuple[Path, ...] = ()  # what the model itself is made of (OpenVINO: .xml + .bin); empty: `path` alone

    def __post_init__(self) -> None:
        if isinstance(self.precision, str):
            self.precision = Precision.parse(self.precision)
        self.role = Role(self.role)

    @property
    def model_files(self) -> tuple[Path, ...]:
        return self.files or (self.path,)

    def size_mb(self) -> float | None:
        """The model's own files in MB (None when not built here)."""
        existing = [f for f in self.model_files if f.is_file()]
        return round(sum(f.stat().st_size for f in existing) / 1e6, 3) if existing else None


@dataclass(frozen=True)
class QuantPlan:
    """How one job quantizes, for the build, `edgeq analyze` and the search alike: the scheme (the profile's,
    adjusted by options such as OpenVINO's preset or unify_scales), whether the decode head is quantized, and the
    layers the target already keeps out of INT8 (name -> why, e.g. DLA's FP16 last convolutions)."""

    scheme: QuantScheme
    head_quantized: bool = False
    float_layers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Job:
    """Everything a backend needs for one export, prepared by core. Read-only: what a backend finds goes back in
    its `BuildResult`."""

    target: str
    profile: TargetProfile
    options: BackendOptions
    head: HeadSpec
    body_onnx: Path  # FP32, images -> box_i/cls_i
    full_onnx: Path  # FP32, images -> output0 in pixels (decode head nodes named edgeq_head/...)
    calibration: Sequence[np.ndarray]  # preprocessed float32 NCHW batches in [0, 1] (lazy)
    staging: Path  # write artifacts here (into `staging / target`); core moves the folder into place at the end
    activations: dict[str, int]  # activation module types of the source model, with counts
    fallback: FallbackPolicy  # core's decision rule; backends hand it the findings they make while building
    log_dir: Path  # where a stage writes its log: kept for the whole run (trial builds share it), never removed
    progress: bool = True
    batch: int = 1  # static batch of the deployable artifacts (calibration batches stay at 1)
    calibration_method: str = "default"  # a name from edgeq.analyze.scheme.METHODS, or the quantizer's default
    # layers (ONNX node names of body_onnx/full_onnx) to keep in the target's higher precision
    keep_float: tuple[str, ...] = ()
    primary_only: bool = False  # build only the deployable artifact (a search step or a calibration trial)
    qat_onnx: Path | None = None  # what `edgeq qat` trained, as its QuantAwareTraining.export wrote it
    plan: QuantPlan | None = None  # the scheme this job quantizes with (Backend.quant_plan, resolved once by core)
    # ONNX graphs read once per run (path -> ModelProto) and values derived from them, shared by the job's copies;
    # see `graph` and `once`
    _graphs: dict = field(default_factory=dict, repr=False, compare=False)

    def graph(self, path: Path):
        """The ONNX model at `path` (usually body_onnx or full_onnx), read once per run and shared: treat it as
        read-only, and copy it (`onnx.ModelProto.FromString(g.SerializeToString())`) before changing it."""
        if path not in self._graphs:
            import onnx

            self._graphs[path] = onnx.load(str(path))
        return self._graphs[path]

    def once(self, key: tuple, compute: Callable[[], Any]) -> Any:
        """`compute()` the first time `key` is asked for in this run, then the same value: what `check` and
        `build` (and every trial build) both derive from the same graph, such as a rule report."""
        key = ("once", *key)
        if key not in self._graphs:
            self._graphs[key] = compute()
        return self._graphs[key]


@dataclass
class BuildResult:
    """What `Backend.build` returns: the artifacts (not-built ones too) and the findings made while building
    (on the converted model, after calibration), which the report lists beside the check's."""

    artifacts: list[Artifact]
    findings: list[Finding] = field(default_factory=list)

    def shipped(self) -> Artifact:
        """The artifact the target ships (QAT where built, else the deployable one); a build that does not say
        which is a bug of its backend."""
        roles = Counter(a.role for a in self.artifacts)
        if roles[Role.DEPLOYABLE] != 1 or roles[Role.QAT] > 1:
            names = ", ".join(f"{a.name} ({a.role.value})" for a in self.artifacts) or "none"
            raise PluginError(f"a build must return exactly one deployable artifact and at most one QAT artifact; "
                              f"it returned: {names}")
        return next(a for role in SHIPPED_ROLES for a in self.artifacts if a.role is role)


class PluginError(EdgeqError):
    """A backend broke the contract: not the user's mistake, reported in one line all the same."""

    exit_code = 1

    def __init__(self, problem: str) -> None:
        super().__init__(problem, "report it to the backend's authors (`edgeq targets` names the family)")


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
    """A target family. Subclasses are stateless; core calls check -> build, then runs the artifacts."""

    family: ClassVar[str]
    extra: ClassVar[str]  # `pip install edgeq[<extra>]`
    requires: ClassVar[tuple[str, ...]]  # importable modules the family needs in edgeq's own environment
    tools: ClassVar[tuple[str, ...]] = ()  # distributions whose versions the report records
    profiles: ClassVar[dict[str, TargetProfile]]  # target name -> profile (usually load_profiles(...))
    # a vendor toolchain that runs in an interpreter of its own (edgeq.toolchains); None: everything in-process
    toolchain: ClassVar[ToolchainSpec | None] = None

    @property
    def targets(self) -> dict[str, str]:
        """target name -> one-line description."""
        return {name: profile.description for name, profile in self.profiles.items()}

    def install_hint(self) -> str:
        """The one command that makes this family ready: its extra first, then its toolchain environment."""
        if self.toolchain is not None and not self.missing_modules():
            return self.toolchain.install_line()
        return f"pip install 'edgeq[{self.extra}]'"

    def missing_modules(self, target: str | None = None) -> list[str]:
        """The modules of edgeq's own environment the family (and `target`, when given) needs and does not find."""
        wanted = (*self.requires, *(self.profiles[target].requires if target else ()))
        return [m for m in wanted if not importable(m)]

    def missing(self, target: str | None = None) -> list[str]:
        """What is not installed: the extra's modules (and `target`'s own), then the toolchain environment."""
        found = self.missing_modules(target)
        if self.toolchain is not None and (why := self.toolchain.not_ready()):
            found.append(why)
        return found

    def ensure_available(self, target: str) -> None:
        if missing := self.missing(target):
            raise MissingDependencyError(target, self.install_hint(), missing)

    @abstractmethod
    def options_model(self, target: str) -> type[BackendOptions]:
        """The pydantic model of this target's `options:` recipe section."""

    @abstractmethod
    def check(self, job: Job) -> list[Finding]:
        """Rule findings for the source model on this target (before any conversion)."""

    @abstractmethod
    def build(self, job: Job) -> BuildResult:
        """Quantize and emit every artifact of the target into `job.staging / job.target`; return them (not-built
        ones too, each with its role) with the findings made on the way. Findings that must stop the export go
        through `job.fallback.enforce`; logs go into `job.log_dir`."""

    def quant_plan(self, job: Job) -> QuantPlan | None:
        """How `job` quantizes (None: the profile has no `quantization:` block). Families whose options change the
        scheme or the head treatment override it; `build` then reads the result from `job.plan`, so the build and
        the emulation in `analyze` and the search use one scheme."""
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

    def offers_quantization_aware_training(self, target: str) -> bool:
        return type(self).quantization_aware is not Backend.quantization_aware

    def quantization_aware(self, target: str) -> type[QuantAwareTraining]:
        """The target's quantization-aware training; families that offer none keep this refusal."""
        offering = sorted(t for t, b in discover().items() if b.offers_quantization_aware_training(t))
        raise EdgeqError(f"target {target} offers no quantization-aware training",
                         f"train for one that does ({', '.join(offering) or 'none installed'}; see `edgeq targets`)")

    def toolkit_layer_errors(self, job: Job, images: int) -> ToolkitLayerErrors | None:
        """The target toolkit's own per-layer error measurement on `images` calibration images, for `edgeq
        analyze` beside edgeq's emulation (where the vendor's simulator sees what an emulation may not: its
        fused ops, its requantization); None where the toolkit has no such tool. Keys are the ONNX layer names
        the analysis ranks."""
        return None

    def onnx_rules(self, target: str) -> RuleTable | None:
        """The target's rule table for ONNX graphs (profile `rules.onnx`, relative to the family's folder)."""
        relative = self.profiles[target].rules.get("onnx")
        return RuleTable.load(Path(inspect.getfile(type(self))).parent / relative) if relative else None


@dataclass(frozen=True)
class ToolkitLayerErrors:
    """A vendor toolkit's per-layer error of its quantized model against its own float run, by ONNX layer: what
    `Backend.toolkit_layer_errors` returns and `edgeq analyze` reports beside its emulated metrics."""

    tool: str  # e.g. "rknn-toolkit2 2.3.2 accuracy_analysis (simulator)"
    metric: str  # what the figure is, e.g. "single-layer output cosine (golden input)"
    images: int
    cosine: dict[str, float]  # ONNX layer name -> the figure (1.0: identical)


def make_job(backend: Backend, target: str, *, options: BackendOptions | dict | None = None,
             allow_fallback: bool | None = None, fallback_flag: str | None = None, **fields: Any) -> Job:
    """A Job for `target` with its profile, validated options, fallback policy (the user's choice, else the
    profile's default) and quantization plan; `fields` are the remaining Job fields (`log_dir` defaults to the
    staging folder's parent, where core keeps logs)."""
    profile = backend.profiles[target]
    if not isinstance(options, BackendOptions):
        options = backend.options_model(target).model_validate(options or {})
    allowed = profile.fallback_default if allow_fallback is None else allow_fallback
    policy = FallbackPolicy(target=target, allowed=allowed, fallback_to=profile.fallback_to,
                            flag=fallback_flag if allow_fallback is not None else None)
    fields.setdefault("log_dir", Path(fields["staging"]).parent)
    job = Job(target=target, profile=profile, options=options, fallback=policy, **fields)
    return replace(job, plan=backend.quant_plan(job))


@dataclass(frozen=True)
class Registry:
    """Every installed family, found once per process: target name -> backend, the plugins that failed to load
    (entry point -> why) and the target names two distributions both claim (name -> who)."""

    backends: dict[str, Backend]
    broken: dict[str, str]
    conflicts: dict[str, str]


@cache
def registry() -> Registry:
    """The `edgeq.backends` entry-point group, loaded once. A plugin that fails to import is skipped and
    remembered, so one broken third-party package cannot take the others down; a target name claimed by two
    distributions belongs to neither (using it is an error naming both)."""
    found: dict[str, tuple[Backend, str]] = {}
    broken: dict[str, str] = {}
    conflicts: dict[str, str] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        owner = f"{ep.dist.name if ep.dist else '?'} (entry point {ep.name})"
        try:
            backend = ep.load()()
        except Exception as exc:  # a plugin's own bug; reported, not fatal
            broken[ep.name] = f"{type(exc).__name__}: {exc}"
            continue
        for target in backend.targets:
            if target in conflicts:
                conflicts[target] += f" and {owner}"
            elif target in found:
                conflicts[target] = f"{found.pop(target)[1]} and {owner}"
            else:
                found[target] = (backend, owner)
    return Registry({t: b for t, (b, _) in found.items()}, broken, conflicts)


def discover() -> dict[str, Backend]:
    """target name -> backend instance (see `registry`): every lookup of a target goes through here."""
    return registry().backends


def families() -> list[Backend]:
    """Each installed family once."""
    return list({id(b): b for b in discover().values()}.values())


def backend_for(target: str) -> Backend:
    conflicts = registry().conflicts
    if target in conflicts:
        raise EdgeqError(f"target '{target}' is claimed by two installed packages: {conflicts[target]}",
                         "uninstall one of them (pip uninstall ...)")
    backends = discover()
    if target not in backends:
        known = ", ".join(sorted(backends)) or "none (is edgeq installed? pip install .)"
        raise EdgeqError(f"unknown target '{target}'", f"choose one of: {known} (see `edgeq targets`)")
    return backends[target]
