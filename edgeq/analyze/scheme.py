"""A target's INT8 scheme as data (the `quantization:` block of a family's profiles.yaml).

It says what edgeq needs to emulate the target's quantizer layer by layer and to drive its calibration and
mixed precision: weight granularity, activation symmetry, which ops have their inputs quantized, which share
one range across their inputs, the calibration methods the target's quantizer offers (natively or through
ranges edgeq supplies), and what "higher precision" means there. Like NNCF's hardware configs, the facts live
in data files, not in code.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

# Calibration methods, by the names recipes use. `default` is the target quantizer's own choice.
METHODS = ("minmax", "percentile-99.99", "percentile-99.999", "entropy", "mse")
METHOD_HELP = {
    "minmax": "the full observed range of each tensor",
    "percentile-99.99": "the range holding 99.99% of the values (outliers clipped)",
    "percentile-99.999": "the range holding 99.999% of the values",
    "entropy": "the clip threshold minimising the KL divergence of the quantized histogram (TensorRT's)",
    "mse": "the clip range minimising the expected quantization error on the histogram",
}
CHOOSABLE = ("default", "auto", *METHODS)
WHOLE_MODEL = "*"  # a kept-layer list naming every layer: the whole model in the higher precision (as `ops: ["*"]`)


class HigherPrecision(BaseModel):
    """What keeping a layer out of INT8 gives on this target, and how edgeq asks the quantizer for it. `int16`
    is 16-bit activations with 8-bit weights (a target's w8a16 / 16x8 mode): the emulation treats a kept layer
    as float either way, its error being 256 times smaller than INT8's. `scope: model`: the quantizer gives it to
    the whole model or to nothing (the TFLite converter's 16x8 mode), so the search's one step is the whole model
    in it, and `--keep-float` has no per-layer meaning there."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    precision: Literal["fp32", "fp16", "int16"]
    how: str  # e.g. "NNCF ignored scope", shown in the report
    scope: Literal["layer", "model"] = "layer"
    scope_why: str = ""  # for scope model: why no single layer can be kept (the report and the refusal say it)

    @property
    def bits(self) -> int:
        return {"fp32": 32, "fp16": 16, "int16": 16}[self.precision]


class ScaleTie(BaseModel):
    """Ops whose tensors the target quantizes with one shared scale (no requantization between them), and which
    of each such node's activation tensors tie: `all` its activation inputs and outputs (Concat), `through` its
    first input and its outputs (pooling, data movement), `inputs` its activation inputs when it has at least two
    (a residual Add). `modes`: only nodes whose `mode` attribute is one of these (nearest Resize)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ops: tuple[str, ...]
    tie: Literal["all", "through", "inputs"]
    modes: tuple[str, ...] = ()

    def members(self, node, activations: list[str]) -> list[str]:
        """The tensors of `node` (an ONNX NodeProto) this rule ties; `activations` are its non-constant inputs."""
        if node.op_type not in self.ops or not activations:
            return []
        if self.modes:
            mode = next((a.s.decode() for a in node.attribute if a.name == "mode"), "nearest")
            if mode not in self.modes:
                return []
        outputs = [o for o in node.output if o]
        if self.tie == "all":
            return [*activations, *outputs]
        if self.tie == "through":
            return [activations[0], *outputs]
        return activations if len(activations) >= 2 else []


def tied_groups(nodes: Iterable, ties: Iterable[ScaleTie], activations_of: Callable[[object], list[str]],
                skip: Callable[[object], bool] = lambda node: False) -> list[set[str]]:
    """The groups of tensors sharing one scale under `ties`, over `nodes` (ONNX nodes): connected components of
    the tie rules, so a chain (SPPF's three pools into one Concat) is one group. `activations_of(node)` lists a
    node's activation inputs as float tensor names (a Q/DQ graph maps them back through its DequantizeLinear);
    `skip(node)` leaves nodes out (Q/DQ nodes themselves, the decode head). The one function both the build (the
    TensorRT family's scale unification) and the emulation (`edgeq analyze`, the search) compute groups with."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    rules = tuple(ties)
    for node in nodes:
        if skip(node):
            continue
        activations = activations_of(node)
        for rule in rules:
            members = rule.members(node, activations)
            for other in members[1:]:
                parent[find(other)] = find(members[0])
    groups: dict[str, set[str]] = {}
    for tensor in parent:
        groups.setdefault(find(tensor), set()).add(tensor)
    return [g for g in groups.values() if len(g) > 1]


class QuantScheme(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    weights: Literal["per-channel", "per-tensor"]
    activations: Literal["symmetric", "asymmetric"]
    # op types whose float activation inputs are quantized; ["*"]: every op (full-integer targets)
    ops: tuple[str, ...]
    fused_silu: bool = True  # SiLU (x * sigmoid(x)) runs as one op: nothing inside it is stored in INT8
    # op types whose outputs are quantized too (ONNX Runtime's QDQ quantizer puts a Q/DQ after each Conv, so its
    # integer kernel writes INT8); empty: only inputs are quantized, as NNCF and ModelOpt do
    outputs: tuple[str, ...] = ()
    # which tensors share one scale (no requantization between them); Concat's inputs and output everywhere
    unified: tuple[ScaleTie, ...] = (ScaleTie(ops=("Concat",), tie="all"),)
    # the layers a sensitivity sweep ranks (and the search may keep in higher precision)
    candidates: tuple[str, ...] = ("Conv", "ConvTranspose", "MatMul", "Gemm")
    default_method: str  # what `calibration.method: default` is, in the quantizer's words
    default_emulated_as: Literal[METHODS] = "minmax"  # the method edgeq's emulation uses for the default
    # method -> how the target's quantizer gets it ("native: NNCF MEAN_QUANTILE", "edgeq-supplied ranges")
    methods: dict[Literal[METHODS], str] = Field(default_factory=dict)
    not_offered: str = ""  # why the other methods are not offered, for the refusal
    higher_precision: HigherPrecision | None = None  # None: a full-integer target, no float layers on the chip
    no_higher_precision_why: str = ""
    # accelerators that run integer ops only: what one float layer costs. cut: the compiler cuts the graph there,
    # everything downstream runs on the host (Edge TPU); op: the op alone runs on the host, plus a
    # dequantize/quantize pair (NXP); None: no accelerator to leave (TFLite on a CPU)
    float_layer_cost: Literal["cut", "op"] | None = None
    training_remedy: str = ""  # the training-side fix the search recommends when mixed precision cannot help
    # the edgeq command that runs it (`{command: qat}`, `{command: adapt, activation: relu6}`), quoted with the
    # user's model and data when the budget is missed
    training_command: dict[str, str] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> QuantScheme:
        if self.higher_precision is None and not self.no_higher_precision_why:
            raise ValueError("a scheme without higher_precision needs no_higher_precision_why")
        return self

    @property
    def symmetric(self) -> bool:
        return self.activations == "symmetric"

    def offered(self) -> tuple[str, ...]:
        """The methods a recipe may name for this target (besides default and auto)."""
        return tuple(m for m in METHODS if m in self.methods)

    def emulated_method(self, method: str) -> str:
        return self.default_emulated_as if method == "default" else method
