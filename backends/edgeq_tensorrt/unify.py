"""Scale unification on a Q/DQ graph: tensors TensorRT moves between without rescaling share one scale.

TensorRT fuses Concat away (its inputs are written into one buffer), lets max-pooling and data-movement ops
(Slice, Reshape, nearest Resize, ...) commute with quantization, and adds residual inputs in one kernel. When the
quantizers around them disagree, it inserts reformat (rescale) layers; on DLA, Concat with unequal INT8 input
and output scales does not run at all. So every quantizer of such a group gets the group's largest scale
(largest amax: nothing that fitted before is clipped after).

Groups are unions over the *float* tensors behind the Q/DQ pairs:
  concat       all inputs and the output of every Concat
  maxpool      input and output of MaxPool (the SPPF branches chain through three of them)
  add          both inputs of an Add of two activations (residual connections)
  passthrough  input and outputs of pure data movement (Slice, Split, Reshape, Transpose, nearest Resize, ...)
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from edgeq_tensorrt.qdq import DQ_OPS, GraphIndex, activation_quantizers, real_tensor

GPU_TIES = ("concat", "maxpool", "add", "passthrough")
DLA_TIES = ("concat", "maxpool", "passthrough")
PASSTHROUGH_OPS = ("Slice", "Split", "Reshape", "Transpose", "Flatten", "Squeeze", "Unsqueeze", "Identity",
                   "Resize", "Upsample", "Pad")


@dataclass
class UnifyResult:
    merged_quantizers: int  # quantizers folded into a shared scale (sum over groups of members - 1)
    rescaled_quantizers: int  # of those, the ones whose scale actually changed
    groups: list[list[str]] = field(default_factory=list)  # float tensors of every group with >= 2 quantizers


class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, x: str) -> str:
        self.parent.setdefault(x, x)
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, items: list[str]) -> None:
        roots = [self.find(i) for i in items]
        for r in roots[1:]:
            self.parent[r] = roots[0]


def _ties(index: GraphIndex, node, ties: tuple[str, ...], exclude_prefix: str | None) -> list[str]:
    if exclude_prefix and node.name.startswith(exclude_prefix):
        return []
    acts = [real_tensor(index, i) for i in node.input if i and not index.is_const(i)]
    op = node.op_type
    if op == "Concat" and "concat" in ties:
        return acts + list(node.output)
    if op == "MaxPool" and "maxpool" in ties:
        return acts[:1] + list(node.output[:1])
    if op == "Add" and "add" in ties and len(acts) == 2:
        return acts
    if op in PASSTHROUGH_OPS and "passthrough" in ties and acts:
        if op == "Resize" and _attr(node, "mode", b"nearest") != b"nearest":
            return []
        return acts[:1] + [o for o in node.output if o]
    return []


def _attr(node, name: str, default):
    for a in node.attribute:
        if a.name == name:
            from onnx import helper

            return helper.get_attribute_value(a)
    return default


def unify_scales(model, ties: tuple[str, ...] = GPU_TIES, exclude_prefix: str | None = None) -> UnifyResult:
    """Rewrite `model` in place so every group of tied tensors is quantized with one scale (the largest)."""
    from onnx import numpy_helper

    index = GraphIndex(model)
    uf = _UnionFind()
    for node in model.graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            continue
        members = _ties(index, node, ties, exclude_prefix)
        if len(members) >= 2:
            uf.union(members)
    by_group: dict[str, list] = defaultdict(list)
    for quantizer in activation_quantizers(index):
        if quantizer.tensor in uf.parent:
            by_group[uf.find(quantizer.tensor)].append(quantizer)
    members_of: dict[str, list[str]] = defaultdict(list)
    for tensor in uf.parent:
        members_of[uf.find(tensor)].append(tensor)

    merged = rescaled = 0
    groups = []
    for k, (root, quantizers) in enumerate(sorted(by_group.items())):
        if len(quantizers) < 2:
            continue
        shared = max(q.scale for q in quantizers)
        name = f"edgeq_unified_scale_{k}"
        model.graph.initializer.append(numpy_helper.from_array(np.array(shared, dtype=np.float32), name))
        for q in quantizers:
            qnode = index.node(q.node)
            qnode.input[1] = name
            for d in q.dequantizers:
                index.node(d).input[1] = name
            rescaled += q.scale != shared
        merged += len(quantizers) - 1
        groups.append(sorted(members_of[root]))
    _drop_unused_initializers(model)
    return UnifyResult(merged_quantizers=merged, rescaled_quantizers=rescaled, groups=groups)


def _drop_unused_initializers(model) -> None:
    used = {i for n in model.graph.node for i in n.input} | {o.name for o in model.graph.output}
    keep = [i for i in model.graph.initializer if i.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep)


def group_scale_spread(model, ties: tuple[str, ...] = GPU_TIES) -> list[tuple[str, float, float]]:
    """(group root, min scale, max scale) of every tied group: after unification min == max (used by tests)."""
    index = GraphIndex(model)
    uf = _UnionFind()
    for node in model.graph.node:
        if node.op_type in ("QuantizeLinear",) + DQ_OPS:
            continue
        members = _ties(index, node, ties, None)
        if len(members) >= 2:
            uf.union(members)
    by_group: dict[str, list[float]] = defaultdict(list)
    for q in activation_quantizers(index):
        if q.tensor in uf.parent:
            by_group[uf.find(q.tensor)].append(q.scale)
    return [(root, min(s), max(s)) for root, s in by_group.items() if len(s) >= 2]
