"""Checks the TFLite-family rule tables use beyond the shared ones in `edgeq.rules`.

Each is a small, target-neutral test of one layer; which op it applies to, its limits, severity and fix live
in the YAML tables under `rules/`. Layers built by `edgeq_tflite.graph` carry two extra attributes these
checks read: `producers` (input tensor name -> (producing op, its input names)) and `const_inputs` (names
of the inputs that are constants: weights, biases, shape tensors).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from edgeq.plugin import Layer, predicate
from edgeq_tflite.graph import short_name


@predicate("gated_by")
def _gated_by(layer: Layer, params: Mapping[str, Any]) -> str | None:
    """x * gate(x): a Mul whose other input is one of `gates` applied to the same x (SiLU, HardSwish)."""
    producers = layer.attrs.get("producers", {})
    names = [t.name for t in layer.inputs]
    for i, name in enumerate(names):
        found = producers.get(name)
        if not found:
            continue
        op, sources = found
        others = names[:i] + names[i + 1:]
        if op in params["gates"] and sources and sources[0] in others:
            return f"{layer.op}(x, {op}(x))"
    return None


@predicate("attr_in")
def _attr_in(layer: Layer, params: Mapping[str, Any]) -> str | None:
    """Attribute `attr` is one of `allowed` (missing attribute: `default`, else passes). With `when`, only
    layers whose attributes equal those values are checked (`when_default` fills attributes left out)."""
    defaults = params.get("when_default", {})
    for key, want in params.get("when", {}).items():
        if layer.attrs.get(key, defaults.get(key)) != want:
            return None
    value = layer.attrs.get(params["attr"], params.get("default"))
    if value is None or value in params["allowed"]:
        return None
    return f"{params['attr']}={value}"


@predicate("non_unit_dims")
def _non_unit_dims(layer: Layer, params: Mapping[str, Any]) -> str | None:
    """Activation tensors (constants skipped): at most `max` dimensions > 1 after the batch; with `innermost`
    they must be the innermost ones; with `max_elements` at most that many elements."""
    const = set(layer.attrs.get("const_inputs", ()))
    for tensor in (*layer.inputs, *layer.outputs):
        if tensor.name in const or tensor.shape is None or len(tensor.shape) < 2:
            continue
        dims = [d for d in tensor.shape[1:] if d is not None]
        big = [i for i, d in enumerate(dims) if d > 1]
        if len(big) > params["max"]:
            return f"{short_name(tensor.name)} has shape {list(tensor.shape)}"
        if params.get("innermost") and big and big[0] < len(dims) - params["max"]:
            return f"{short_name(tensor.name)} has shape {list(tensor.shape)}"
        count = 1
        for d in dims:
            count *= d
        if params.get("max_elements") and count > params["max_elements"]:
            return f"{short_name(tensor.name)} has {count} elements"
    return None


@predicate("per_channel_weights")
def _per_channel_weights(layer: Layer, params: Mapping[str, Any]) -> str | None:
    """A constant input quantized with more than one scale."""
    const = set(layer.attrs.get("const_inputs", ()))
    for tensor in layer.inputs:
        if tensor.name in const and tensor.scale is not None and len(tensor.scale) > 1:
            return f"{short_name(tensor.name)}: {len(tensor.scale)} scales"
    return None
