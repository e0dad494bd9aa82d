"""The stable surface a target family is written against: import everything a backend needs from here, and
nothing else from edgeq (a test holds edgeq's own families to that). The rest of core is private to it and may
change between releases; what is named here changes only with a note in ARCHITECTURE.md.

    the interface      Backend, BackendOptions, TargetProfile, load_profiles, Command, QuantAwareTraining
    one build          Job, QuantPlan, BuildResult, Artifact, Role, Precision, Status, DeploySteps
    rules              Finding, Severity, RuleTable, Layer, TensorInfo, predicate, onnx_layers, tensor_infos
    the scheme         QuantScheme, HigherPrecision, ScaleTie, tied_groups, METHODS, WHOLE_MODEL, collect_histograms
    the model          HeadSpec, HeadLayout, attach_head, HEAD_PREFIX, INPUT_NAME, OUTPUT_NAME, Detector,
                       export_onnx
    running            Runner, BatchNotSupported, OnnxRuntimeRunner
    toolchains         ToolchainSpec, WorkerCall, run_worker (edgeq.toolchains: the worker protocol),
                       ToolkitLayerErrors (a toolkit's own per-layer error, for `edgeq analyze`)
    errors             EdgeqError, StageError, MissingDependencyError, PluginError
    plumbing           bar, log, cache_dir, cpus (the CPUs this process may use: a --jobs worker's share),
                       importable (whether a dotted module can be imported, without importing it)
"""

from edgeq.analyze.ranges import collect_histograms
from edgeq.analyze.scheme import METHODS, WHOLE_MODEL, HigherPrecision, QuantScheme, ScaleTie, tied_groups
from edgeq.backend import (
    Artifact,
    Backend,
    BackendOptions,
    BuildResult,
    Command,
    DeploySteps,
    Job,
    PluginError,
    Precision,
    QuantAwareTraining,
    QuantPlan,
    Role,
    Status,
    TargetProfile,
    ToolkitLayerErrors,
    load_profiles,
)
from edgeq.env import cache_dir, cpus, importable
from edgeq.errors import EdgeqError, MissingDependencyError, StageError
from edgeq.graph import onnx_layers, tensor_infos
from edgeq.head import HEAD_PREFIX, INPUT_NAME, OUTPUT_NAME, HeadLayout, HeadSpec, attach_head
from edgeq.model import Detector, export_onnx
from edgeq.progress import bar, log
from edgeq.rules import Finding, Layer, RuleTable, Severity, TensorInfo, predicate
from edgeq.runners import BatchNotSupported, Runner
from edgeq.runners.onnxruntime import OnnxRuntimeRunner
from edgeq.toolchains import ToolchainSpec, WorkerCall, run_worker

__all__ = [
    "HEAD_PREFIX", "INPUT_NAME", "METHODS", "OUTPUT_NAME", "Artifact", "Backend", "BackendOptions",
    "BatchNotSupported", "BuildResult", "Command", "DeploySteps", "Detector", "EdgeqError", "Finding",
    "HeadLayout", "HeadSpec", "HigherPrecision", "Job", "Layer", "MissingDependencyError", "OnnxRuntimeRunner",
    "PluginError", "Precision", "QuantAwareTraining", "QuantPlan", "QuantScheme", "Role", "RuleTable", "Runner",
    "ScaleTie",
    "Severity", "WHOLE_MODEL", "StageError", "Status", "TargetProfile", "TensorInfo", "ToolchainSpec",
    "ToolkitLayerErrors", "WorkerCall",
    "attach_head", "bar", "cache_dir", "collect_histograms", "cpus", "importable", "export_onnx", "load_profiles", "log",
    "onnx_layers", "predicate", "run_worker", "tensor_infos", "tied_groups",
]
