"""Scale unification on a Q/DQ graph: tensors TensorRT moves between without rescaling share one scale.

TensorRT fuses Concat away (its inputs are written into one buffer), lets max-pooling and data-movement ops
(Slice, Reshape, nearest Resize, ...) commute with quantization, and adds residual inputs in one kernel. When the
quantizers around them disagree, it inserts reformat (rescale) layers; on DLA, Concat with unequal INT8 input
and output scales does not run at all. So every quantizer of such a group gets the group's largest scale
(largest amax: nothing that fitted before is clipped after).

Which tensors tie is the target's scheme (`unified:` in profiles.yaml, edgeq.analyze.scheme.ScaleTie): the same
data, through the same `tied_groups`, gives the groups edgeq's emulation uses in `edgeq analyze` and the search.
The groups are over the *float* tensors behind the Q/DQ pairs (a DequantizeLinear's input is looked through).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from edgeq.plugin import ScaleTie, tied_groups
from edgeq_tensorrt.qdq import DQ_OPS, Q_OPS, GraphIndex, activation_quantizers, real_tensor


@dataclass
class UnifyResult:
    merged_quantizers: int  # quantizers folded into a shared scale (sum over groups of members - 1)
    rescaled_quantizers: int  # of those, the ones whose scale actually changed
    groups: list[list[str]] = field(default_factory=list)  # float tensors of every group with >= 2 quantizers


def scale_groups(model, ties: Sequence[ScaleTie], exclude_prefix: str | None = None) -> list[set[str]]:
    """The float tensors of `model` (a Q/DQ graph) that `ties` make share one scale."""
    index = GraphIndex(model)
    return tied_groups(model.graph.node, ties,
                       lambda node: [real_tensor(index, i) for i in node.input if i and not index.is_const(i)],
                       skip=lambda node: node.op_type in (*Q_OPS, *DQ_OPS)
                       or bool(exclude_prefix and node.name.startswith(exclude_prefix)))


def _quantizers_by_group(model, ties: Sequence[ScaleTie], exclude_prefix: str | None):
    index = GraphIndex(model)
    groups = scale_groups(model, ties, exclude_prefix)
    group_of = {t: k for k, group in enumerate(groups) for t in group}
    by_group: dict[int, list] = {}
    for quantizer in activation_quantizers(index):
        if quantizer.tensor in group_of:
            by_group.setdefault(group_of[quantizer.tensor], []).append(quantizer)
    return index, groups, by_group


def unify_scales(model, ties: Sequence[ScaleTie], exclude_prefix: str | None = None) -> UnifyResult:
    """Rewrite `model` in place so every group of tied tensors is quantized with one scale (the largest)."""
    from onnx import numpy_helper

    index, groups, by_group = _quantizers_by_group(model, ties, exclude_prefix)
    merged = rescaled = 0
    kept_groups = []
    for k, quantizers in sorted(by_group.items()):
        if len(quantizers) < 2:
            continue
        shared = max(q.scale for q in quantizers)
        name = f"edgeq_unified_scale_{len(kept_groups)}"
        model.graph.initializer.append(numpy_helper.from_array(np.array(shared, dtype=np.float32), name))
        for q in quantizers:
            qnode = index.node(q.node)
            qnode.input[1] = name
            for d in q.dequantizers:
                index.node(d).input[1] = name
            rescaled += q.scale != shared
        merged += len(quantizers) - 1
        kept_groups.append(sorted(groups[k]))
    _drop_unused_initializers(model)
    return UnifyResult(merged_quantizers=merged, rescaled_quantizers=rescaled, groups=kept_groups)


def _drop_unused_initializers(model) -> None:
    used = {i for n in model.graph.node for i in n.input} | {o.name for o in model.graph.output}
    keep = [i for i in model.graph.initializer if i.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep)


def group_scale_spread(model, ties: Sequence[ScaleTie]) -> list[tuple[int, float, float]]:
    """(group, min scale, max scale) of every tied group with two or more quantizers: after unification
    min == max (what the tests hold a build to)."""
    _, _, by_group = _quantizers_by_group(model, ties, None)
    return [(k, min(q.scale for q in qs), max(q.scale for q in qs)) for k, qs in by_group.items() if len(qs) >= 2]
