"""DLA rule checking: ONNX nodes -> rule-engine layers (with derived attributes and cache scales), the rule
table in rules/dla.yaml, and the per-layer placement it implies (DLA or GPU fallback, DLA subgraphs).

The limits are data (rules/dla.yaml); this module only computes what the rows need to see: kernel sizes from
the weights, default pads/strides/dilations, resize factors from shapes, the concat axis, whether a convolution
reads the network input in the dla_hwc4 format, and INT8 scales from the calibration cache.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from edgeq.plugin import EdgeqError, Finding, Layer, RuleTable, Severity, TensorInfo, predicate

RULES = Path(__file__).parent / "rules" / "dla.yaml"
DROPPED_DLA = ((11, 0), (11, 3))  # TensorRT 11.0 - 11.3 have no DLA support
DLA_DROPPED_WARNING = ("TensorRT 11.0-11.3 have no DLA: tensorrt10/ builds with JetPack 6's TensorRT 10.x (10.3), "
                       "tensorrt11/ with TensorRT 11.4.1+ (JetPack 7.2.2+, Jetson AGX Orin)")
_SCALE_RTOL = 1e-6


# --- predicates only DLA tables need -------------------------------------------------------------------------


def _activations(tensors: Iterable[TensorInfo]) -> list[TensorInfo]:
    return [t for t in tensors if not t.name.startswith("const:")]


@predicate("padding_below_kernel")
def _padding_below_kernel(layer: Layer, params: Mapping[str, Any]) -> str | None:
    kernel = list(layer.attrs.get("kernel_shape") or [])
    pads = list(layer.attrs.get("pads") or [])
    if not kernel or not pads:
        return None
    n = len(kernel)
    bad = [(pads[i], pads[i + n], kernel[i]) for i in range(n) if max(pads[i], pads[i + n]) >= kernel[i]]
    return f"pads={pads} with kernel {kernel}" if bad else None


@predicate("concat_channel_axis")
def _concat_channel_axis(layer: Layer, params: Mapping[str, Any]) -> str | None:
    axis = layer.attrs.get("concat_axis")
    return None if axis in (None, 1) else f"axis {axis}"


@predicate("equal_scales")
def _equal_scales(layer: Layer, params: Mapping[str, Any]) -> str | None:
    """All activation inputs and the first output carry the same INT8 scale (unchecked without scales)."""
    tensors = [t for t in (*_activations(layer.inputs), *layer.outputs[:1])]
    scales = [(t.name, t.scale[0]) for t in tensors if t.scale]
    if len(scales) < 2:
        return None
    low, high = min(s for _, s in scales), max(s for _, s in scales)
    if high - low <= _SCALE_RTOL * high:
        return None
    return f"scales {low:.6g} to {high:.6g} over {len(scales)} tensors"


@predicate("resize_scale_limits")
def _resize_scale_limits(layer: Layer, params: Mapping[str, Any]) -> str | None:
    factors = layer.attrs.get("resize_scales")
    if not factors:
        return None
    mode = str(layer.attrs.get("mode", "nearest"))
    limit = params["nearest_max"] if mode == "nearest" else params["linear_max"]
    bad = [f for f in factors if not (abs(f - round(f)) < 1e-6 and 1 <= round(f) <= limit)]
    return f"{mode} x{'/'.join(f'{f:g}' for f in factors)}" if bad else None


@predicate("rank_below_4")
def _rank_below_4(layer: Layer, params: Mapping[str, Any]) -> str | None:
    for tensor in (*_activations(layer.inputs), *layer.outputs):
        if tensor.shape is not None and len(tensor.shape) < 4:
            return f"{tensor.name} is {len(tensor.shape)}-D"
    return None


@predicate("hwc4_groups")
def _hwc4_groups(layer: Layer, params: Mapping[str, Any]) -> str | None:
    if not layer.attrs.get("hwc4_input"):
        return None
    groups = layer.attrs.get("group", 1)
    channels = layer.inputs[0].shape[1] if layer.inputs and layer.inputs[0].shape else None
    if groups > params["max_groups"]:
        return f"{groups} groups on the network input"
    if channels is not None and channels > params["max_channels"]:
        return f"{channels} channels on the network input"
    return None


# --- ONNX -> layers ----------------------------------------------------------------------------------------------


def dla_layers(model, scales: Mapping[str, float] | None = None, input_format: str = "dla_hwc4") -> list[Layer]:
    """Every ONNX node as a Layer, attributes normalised for the DLA rules, tensors carrying cache scales."""
    from onnx import numpy_helper

    from edgeq.plugin import onnx_layers

    scales = scales or {}
    consts = {i.name for i in model.graph.initializer} | {o for n in model.graph.node if n.op_type == "Constant"
                                                          for o in n.output}
    weights = {i.name: tuple(i.dims) for i in model.graph.initializer}
    values = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer if i.data_type in (1, 7)
              and math.prod(i.dims) <= 16}
    graph_inputs = {i.name for i in model.graph.input} - consts
    layers = []
    for layer in onnx_layers(model):
        def info(t: TensorInfo) -> TensorInfo:
            if t.name in consts:  # constants are weights/parameters, not activations
                return replace(t, name=f"const:{t.name}")
            return replace(t, scale=(scales[t.name],)) if t.name in scales else t

        attrs = dict(layer.attrs)
        inputs = tuple(info(t) for t in layer.inputs)
        outputs = tuple(info(t) for t in layer.outputs)
        op = layer.op
        if op in ("Conv", "ConvTranspose", "MaxPool", "AveragePool"):
            if "kernel_shape" not in attrs and op in ("Conv", "ConvTranspose") and len(layer.inputs) > 1:
                attrs["kernel_shape"] = list(weights.get(layer.inputs[1].name, ())[2:])
            n = len(attrs.get("kernel_shape") or [1, 1])
            attrs.setdefault("pads", [0] * (2 * n))
            attrs.setdefault("strides", [1] * n)
            if op in ("Conv", "ConvTranspose"):
                attrs.setdefault("dilations", [1] * n)
                attrs.setdefault("group", 1)
                attrs["hwc4_input"] = input_format == "dla_hwc4" and layer.inputs[0].name in graph_inputs
        if op == "Concat":
            rank = len(outputs[0].shape) if outputs and outputs[0].shape else None
            axis = attrs.get("axis", 1)
            attrs["concat_axis"] = axis % rank if rank and axis < 0 else axis
        if op in ("Resize", "Upsample"):
            attrs["resize_scales"] = _resize_factors(layer, values)
        layers.append(replace(layer, attrs=attrs, inputs=inputs, outputs=outputs))
    return layers


def _resize_factors(layer: Layer, values: Mapping[str, Any]) -> list[float] | None:
    inp, out = layer.inputs[0].shape if layer.inputs else None, layer.outputs[0].shape if layer.outputs else None
    if inp and out and len(inp) == len(out) >= 3 and all(d for d in (*inp, *out)):
        return [o / i for i, o in zip(inp[2:], out[2:])]
    for t in layer.inputs[1:]:  # no shapes: read the scales input
        v = values.get(t.name.removeprefix("const:"))
        if v is not None and v.dtype.kind == "f" and v.size >= 3:
            return [float(x) for x in v.reshape(-1)[2:]]
    return None


# --- placement ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LayerPlacement:
    layer: Layer
    device: str  # "DLA" or "GPU"
    precision: str  # "INT8", "FP16" on DLA; "-" on the GPU
    reasons: tuple[str, ...]  # the findings about this layer


@dataclass(frozen=True)
class DlaReport:
    placements: list[LayerPlacement]
    findings: list[Finding]
    subgraphs: int  # connected runs of DLA layers: each becomes one DLA loadable

    @property
    def fallbacks(self) -> list[LayerPlacement]:
        return [p for p in self.placements if p.device == "GPU"]

    def markdown(self, title: str) -> str:
        dla = sum(p.device == "DLA" for p in self.placements)
        lines = [f"# {title}", "",
                 (f"{dla} of {len(self.placements)} layers on DLA, {len(self.fallbacks)} GPU fallback, "
                  f"{self.subgraphs} DLA subgraph(s) (TensorRT loads at most 16 per DLA core)."), "",
                 f"> {DLA_DROPPED_WARNING}.", "",
                 "| # | layer | op | device | precision | reason |", "|---:|---|---|---|---|---|"]
        for i, p in enumerate(self.placements):
            reason = "<br>".join(r.replace("|", "\\|") for r in p.reasons)
            lines.append(f"| {i} | `{p.layer.name}` | {p.layer.op} | {p.device} | {p.precision} | {reason} |")
        return "\n".join(lines) + "\n"


FP16_ONLY_OPS = ("Slice", "Split")
FP16_IN_INT8_OPS = ("Sigmoid", "Tanh")
_SKIP_OPS = ("Constant",)  # folded by the ONNX parser, never a layer


def check_layers(layers: list[Layer], fp16_layers: Iterable[str] = (), table: RuleTable | None = None) -> DlaReport:
    table = table or RuleTable.load(RULES)
    layers = [layer for layer in layers if layer.op not in _SKIP_OPS]
    findings = table.evaluate(layers)
    by_layer: dict[str, list[Finding]] = {}
    for f in findings:
        by_layer.setdefault(f.where, []).append(f)
    fp16 = set(fp16_layers)
    placements = []
    for layer in layers:
        found = by_layer.get(layer.name, [])
        gpu = any(f.severity in (Severity.FALLBACK, Severity.ERROR) for f in found)
        if gpu:
            precision = "-"
        elif layer.name in fp16 or layer.op in FP16_ONLY_OPS or layer.op in FP16_IN_INT8_OPS:
            precision = "FP16"
        else:
            precision = "INT8"
        reasons = tuple(f"{f.severity.value}: {f.message} (fix: {f.fix})" for f in found)
        if layer.name in fp16 and not gpu:
            reasons = ("FP16 by layer precision",) + reasons
        placements.append(LayerPlacement(layer, "GPU" if gpu else "DLA", precision, reasons))
    return DlaReport(placements=placements, findings=findings, subgraphs=_dla_subgraphs(placements))


def _dla_subgraphs(placements: list[LayerPlacement]) -> int:
    """Connected components of DLA layers, joined where one's output feeds another."""
    dla = [p.layer for p in placements if p.device == "DLA"]
    parent = list(range(len(dla)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    producer = {t.name: i for i, layer in enumerate(dla) for t in layer.outputs}
    for i, layer in enumerate(dla):
        for t in layer.inputs:
            if t.name in producer:
                parent[find(i)] = find(producer[t.name])
    return len({find(i) for i in range(len(dla))})


def check_onnx(model, scales: Mapping[str, float] | None = None, fp16_layers: Iterable[str] = (),
               input_format: str = "dla_hwc4") -> DlaReport:
    return check_layers(dla_layers(model, scales, input_format), fp16_layers)


# --- TensorRT version ------------------------------------------------------------------------------------------------


def installed_tensorrt_version() -> str | None:
    try:
        import tensorrt
    except Exception:  # noqa: BLE001 - not installed (here) or a broken install: nothing to check
        return None
    return str(getattr(tensorrt, "__version__", "") or "") or None


def check_tensorrt_for_dla(version: str | None = None) -> str | None:
    """Raise when the TensorRT that would build the DLA engine has no DLA support (11.0-11.3).

    `version` defaults to the installed `tensorrt` module's; tests pass one. Returns the version checked.
    """
    version = version if version is not None else installed_tensorrt_version()
    if not version:
        return None
    try:
        major, minor = (int(p) for p in version.split(".")[:2])
    except ValueError:
        return version
    if DROPPED_DLA[0] <= (major, minor) <= DROPPED_DLA[1]:
        raise EdgeqError(f"TensorRT {version} has no DLA support (TensorRT 11.0-11.3 dropped DLA)",
                         "use JetPack's TensorRT 10.x (JetPack 6.1/6.2 ship 10.3) for --target dla")
    return version
