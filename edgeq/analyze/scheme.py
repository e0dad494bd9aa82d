"""A target's INT8 scheme as data (the `quantization:` block of a family's profiles.yaml).

It says what edgeq needs to emulate the target's quantizer layer by layer and to drive its calibration and
mixed precision: weight granularity, activation symmetry, which ops have their inputs quantized, which share
one range across their inputs, the calibration methods the target's quantizer offers (natively or through
ranges edgeq supplies), and what "higher precision" means there. Like NNCF's hardware configs, the facts live
in data files, not in code.
"""

from __future__ import annotations

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


class HigherPrecision(BaseModel):
    """What keeping a layer out of INT8 gives on this target, and how edgeq asks the quantizer for it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    precision: Literal["fp32", "fp16"]
    how: str  # e.g. "NNCF ignored scope", shown in the report


class QuantScheme(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    weights: Literal["per-channel", "per-tensor"]
    activations: Literal["symmetric", "asymmetric"]
    # op types whose float activation inputs are quantized; ["*"]: every op (full-integer targets)
    ops: tuple[str, ...]
    fused_silu: bool = True  # SiLU (x * sigmoid(x)) runs as one op: nothing inside it is stored in INT8
    unified: tuple[str, ...] = ("Concat",)  # ops whose inputs share one range (one scale, no requantization)
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
