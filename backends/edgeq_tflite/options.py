"""Recipe `options:` of the TFLite-family targets (unknown keys are errors, named by their path)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, field_validator

from edgeq.plugin import BackendOptions

Granularity = Literal["per-channel", "per-tensor"]
Head = Literal["detached", "normalized", "pixel"]
Activations = Literal["int8", "int16"]
ALL_HEADS: tuple[Head, ...] = ("detached", "normalized", "pixel")


def _as_list(value):
    return [value] if isinstance(value, str) else value


class TFLiteFamilyOptions(BackendOptions):
    # Weight quantization granularity; a list builds one variant per entry (the report compares them).
    granularity: list[Granularity] = Field(default_factory=lambda: ["per-channel"])
    # Head treatments to emit, each its own artifact. detached: INT8 body, DFL/box decode/sigmoid on the host in
    # FP32; normalized: head inside with boxes in 0..1 (normalized scaling factors); pixel: naive, boxes in pixels.
    heads: list[Head] = Field(default_factory=lambda: ["detached"])
    # Activation type of the whole model; a list builds one file per entry (the first is the deployable one).
    # int8: full-integer INT8. int16: TFLite's 16x8 mode, int16 activations with int8 weights and int64 biases, for
    # every op of the file (the converter has no per-op choice); its I/O is int16 (the converter takes no other
    # integer type for it), so io_dtype applies to the INT8 files.
    activations: list[Activations] = Field(default_factory=lambda: ["int8"])
    # Integer I/O type of the INT8 files. int8 is TFLite's native scheme (no extra op); uint8 adds a QUANTIZE op at
    # each end so a camera's 0..255 pixels feed in unchanged (input scale 1/255, zero point 0).
    io_dtype: Literal["int8", "uint8"] = "int8"
    # LiteRT kernels that score the artifact here: reference = the plain INT8 reference kernels (the integer
    # arithmetic accelerators implement; slow), optimized = XNNPACK / optimized builtins (what a CPU deploys).
    kernels: Literal["reference", "optimized"] = "optimized"
    # reference kernels: calibration images on which LiteRT's optimized kernels are compared with them, element by
    # element; bit-identical on all of them, the optimized kernels score the file (0: always the reference ones).
    kernel_check_images: int = Field(4, ge=0)

    # why the target's device cannot run 16x8 files; None: it can (LiteRT's CPU kernels, Ethos-U)
    no_int16_why: ClassVar[str | None] = None

    _listify = field_validator("granularity", "heads", "activations", mode="before")(_as_list)

    @field_validator("granularity", "heads", "activations")
    @classmethod
    def _unique_nonempty(cls, value: list) -> list:
        if not value:
            raise ValueError("must name at least one")
        if len(set(value)) != len(value):
            raise ValueError("lists a value twice")
        return value

    @field_validator("activations")
    @classmethod
    def _int16_offered(cls, value: list) -> list:
        if "int16" in value and cls.no_int16_why:
            raise ValueError(f"int16 (16x8) is not offered here: {cls.no_int16_why}; the tflite and ethos-u "
                             "targets build it")
        return value


class TFLiteOptions(TFLiteFamilyOptions):
    """INT8 on this CPU: per-channel (XNNPACK's signed per-channel kernels), all three heads for the report."""

    heads: list[Head] = Field(default_factory=lambda: list(ALL_HEADS))
    kernels: Literal["optimized"] = "optimized"  # measured figures: the kernels a CPU deployment runs


class EdgeTPUOptions(TFLiteFamilyOptions):
    """Coral Edge TPU. Per-channel weights compile with edgetpu_compiler >= 15 (TF2 post-training quantization
    is per-axis; compiler 14 rejected it as 'unsupported data type', google-coral/edgetpu 222)."""

    kernels: Literal["reference", "optimized"] = "reference"
    no_int16_why: ClassVar[str | None] = "the Edge TPU runs INT8 (and UINT8) tensors only"
    # auto: compile when edgetpu_compiler is on PATH (else write compile_edgetpu.sh); never: only the script.
    compile: Literal["auto", "never"] = "auto"
    compiler_timeout_s: int = Field(600, ge=10)


class NXPOptions(TFLiteFamilyOptions):
    """NXP i.MX 8M Plus NPU through the VX delegate: per-tensor (VeriSilicon NPUs are far faster per-tensor)."""

    granularity: list[Granularity] = Field(default_factory=lambda: ["per-tensor"])
    kernels: Literal["reference", "optimized"] = "reference"
    no_int16_why: ClassVar[str | None] = ("edgeq has no evidence that the VX delegate keeps a 16x8 file on the "
                                          "i.MX 8M Plus NPU")


class EthosUOptions(TFLiteFamilyOptions):
    """Arm Ethos-U through Vela. The defaults are NXP's i.MX93 (Ethos-U65 with 256 MACs, 1 GHz, DRAM behind a
    dedicated SRAM); the ethos-u55 / ethos-u85 recipes set their own. Names are Vela's (`vela --help`, its vela.ini),
    checked before conversion with the close matches."""

    kernels: Literal["reference", "optimized"] = "reference"  # Ethos-U is designed to TFLite's reference numerics
    accelerator_config: str = "ethos-u65-256"
    system_config: str = "Ethos_U65_High_End"
    memory_mode: str = "Dedicated_Sram_384KB"
    vela_config: str | None = None  # a Vela .ini of your own (a board vendor's); None: Vela's Arm/vela.ini
    optimise: Literal["Performance", "Size"] = "Performance"
    # the SRAM the device gives the NPU, in KiB: Vela's SRAM use above it refuses the export (Vela itself only
    # warns); None: the memory mode's own limit
    sram_kib: float | None = Field(None, gt=0)
    compiler_timeout_s: int = Field(600, ge=10)


OPTIONS = {"tflite": TFLiteOptions, "edgetpu": EdgeTPUOptions, "nxp": NXPOptions, "ethos-u": EthosUOptions}
