"""Target rules as data: each backend ships a YAML table of rules; this module evaluates them.

A rule names the op types it applies to, a predicate (a small named check, registered in code once and
reused by every table), its parameters, a severity and the fix. Backends add predicates that only make
sense for them with `@predicate("name")`; the rules themselves stay rows in the table.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import yaml

from edgeq.errors import EdgeqError


class Severity(str, Enum):
    """How bad a finding is for the target."""

    ERROR = "error"  # the target cannot build or run this
    FALLBACK = "fallback"  # runs, but off the accelerator (CPU or GPU fallback)
    WARNING = "warning"  # runs on the accelerator, but accuracy or speed may suffer


@dataclass(frozen=True)
class TensorInfo:
    """A tensor as the rules see it. `shape` uses None for a dynamic dimension."""

    name: str
    shape: tuple[int | None, ...] | None = None
    dtype: str = "float32"
    scale: tuple[float, ...] | None = None  # quantization scale(s), when the format carries them
    zero_point: tuple[int, ...] | None = None


@dataclass(frozen=True)
class Layer:
    """One op of a graph (ONNX node, TFLite operator, TensorRT layer) in a target-neutral form."""

    name: str
    op: str
    attrs: Mapping[str, Any] = field(default_factory=dict)
    inputs: tuple[TensorInfo, ...] = ()
    outputs: tuple[TensorInfo, ...] = ()
    index: int = 0


@dataclass(frozen=True)
class Finding:
    rule: str
    severity: Severity
    where: str  # the layer (or "model") the finding is about
    message: str
    fix: str
    remedy: Mapping[str, Any] | None = None  # a training fix edgeq runs (`{command: adapt, activation: relu6}`)

    def one_line(self) -> str:
        return f"[{self.severity.value}] {self.where}: {self.message}. Fix: {self.fix}"


Predicate = Callable[[Layer, Mapping[str, Any]], "str | None"]
_PREDICATES: dict[str, Predicate] = {}


def predicate(name: str) -> Callable[[Predicate], Predicate]:
    """Register a check usable from any rule table. It returns None when the layer passes, else a detail."""

    def register(fn: Predicate) -> Predicate:
        _PREDICATES[name] = fn
        return fn

    return register


@dataclass(frozen=True)
class Rule:
    id: str
    ops: tuple[str, ...]  # op types the rule applies to; ("*",) for every op
    check: str
    severity: Severity
    message: str  # may use {detail}, {op}, {name} and the params
    fix: str
    params: Mapping[str, Any] = field(default_factory=dict)
    remedy: Mapping[str, Any] | None = None

    def applies_to(self, layer: Layer) -> bool:
        return "*" in self.ops or layer.op in self.ops

    def evaluate(self, layer: Layer) -> Finding | None:
        detail = _PREDICATES[self.check](layer, self.params)
        if detail is None:
            return None
        text = self.message.format(detail=detail, op=layer.op, name=layer.name, **self.params)
        return Finding(self.id, self.severity, layer.name, text, self.fix.format(op=layer.op, **self.params),
                       self.remedy)


@dataclass(frozen=True)
class RuleTable:
    target: str
    rules: tuple[Rule, ...]

    @classmethod
    def load(cls, path: Path) -> RuleTable:
        data = yaml.safe_load(Path(path).read_text())
        rules = []
        for row in data["rules"]:
            check = row["check"]
            if check not in _PREDICATES:
                raise EdgeqError(f"rule table {path}: rule {row['id']} uses unknown check '{check}'",
                                 f"use one of {sorted(_PREDICATES)}")
            rules.append(Rule(id=row["id"], ops=tuple(row.get("ops", ["*"])), check=check,
                              severity=Severity(row["severity"]), message=row["message"], fix=row["fix"],
                              params=row.get("params", {}), remedy=row.get("remedy")))
        return cls(target=data["target"], rules=tuple(rules))

    def evaluate(self, layers: Iterable[Layer]) -> list[Finding]:
        findings = []
        for layer in layers:
            for rule in self.rules:
                if rule.applies_to(layer):
                    found = rule.evaluate(layer)
                    if found is not None:
                        findings.append(found)
        return findings


# --- predicates shared by every table ------------------------------------------------------------------


@predicate("always")
def _always(layer: Layer, params: Mapping[str, Any]) -> str | None:
    """The op itself is the problem (unsupported op or activation)."""
    return layer.op


@predicate("op_not_in")
def _op_not_in(layer: Layer, params: Mapping[str, Any]) -> str | None:
    """Supported-op list: anything outside it is flagged."""
    return None if layer.op in params["supported"] else layer.op


def _as_list(value: Any) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


@predicate("attr_range")
def _attr_range(layer: Layer, params: Mapping[str, Any]) -> str | None:
    """Every element of attribute `attr` lies in [min, max] (missing attribute: `default`)."""
    value = layer.attrs.get(params["attr"], params.get("default"))
    if value is None:
        return None
    bad = [v for v in _as_list(value) if not params.get("min", float("-inf")) <= v <= params.get("max", float("inf"))]
    return f"{params['attr']}={_as_list(value)}" if bad else None


@predicate("static_shapes")
def _static_shapes(layer: Layer, params: Mapping[str, Any]) -> str | None:
    for tensor in (*layer.inputs, *layer.outputs):
        if tensor.shape is None or any(d is None or d < 0 for d in tensor.shape):
            return f"{tensor.name} has shape {tensor.shape}"
    return None


@predicate("max_rank")
def _max_rank(layer: Layer, params: Mapping[str, Any]) -> str | None:
    for tensor in (*layer.inputs, *layer.outputs):
        if tensor.shape is not None and len(tensor.shape) > params["rank"]:
            return f"{tensor.name} has rank {len(tensor.shape)}"
    return None


@predicate("dtype_in")
def _dtype_in(layer: Layer, params: Mapping[str, Any]) -> str | None:
    for tensor in (*layer.inputs, *layer.outputs):
        if tensor.dtype not in params["allowed"]:
            return f"{tensor.name} is {tensor.dtype}"
    return None
