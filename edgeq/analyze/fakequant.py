"""A target's INT8 scheme emulated in ONNX Runtime: QuantizeLinear/DequantizeLinear on the activation inputs
of chosen layers, weights rounded to INT8 in place (per-channel or per-tensor, symmetric).

This is what makes a per-layer sweep cheap and target-agnostic: quantizing one layer at a time (the rest in
float) or every layer but a few is a graph edit on the FP32 ONNX every target starts from. It reproduces the
scheme (granularity, symmetry, which inputs are quantized, which tensors share one range: the scheme's `unified`
ties through the same `tied_groups` the TensorRT family's build unifies its scales with), with activation ranges
from edgeq's calibrators; it is not bit-exact with any quantizer, which is why the search re-builds the real
artifact at every step.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from edgeq.analyze.ranges import Range
from edgeq.analyze.scheme import QuantScheme, tied_groups
from edgeq.env import cpus
from edgeq.head import HEAD_PREFIX

WEIGHTED = ("Conv", "ConvTranspose")
_FLOAT = ("float32", "float16", None)


def session_for(model):
    """An ONNX Runtime session on an in-memory model, without the optimizations that fold Q/DQ into int8 kernels."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = cpus()
    options.log_severity_level = 3
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def with_outputs(model, tensors: Iterable[str]):
    """A copy of `model` that also outputs `tensors` (for collecting their values)."""
    import onnx
    from onnx import helper

    model = onnx.ModelProto.FromString(model.SerializeToString())
    present = {o.name for o in model.graph.output}
    for t in tensors:
        if t not in present:
            model.graph.output.append(helper.make_empty_tensor_value_info(t))
    return model


@dataclass(frozen=True)
class LayerInfo:
    name: str
    op: str
    activation_inputs: tuple[str, ...]  # float tensors (not constants) that the scheme quantizes for this layer
    weight: str | None  # the constant weight a weighted op quantizes
    in_head: bool
    activation_outputs: tuple[str, ...] = ()  # its outputs, where the scheme quantizes this op's outputs too


class QuantGraph:
    """The FP32 model read once: which inputs each layer quantizes under `scheme`, and the layers it ranks."""

    def __init__(self, model, scheme: QuantScheme) -> None:
        from edgeq.graph import tensor_infos

        self.model, self.scheme = model, scheme
        graph = model.graph
        infos = tensor_infos(model)
        consts = {i.name for i in graph.initializer}
        consts |= {o for n in graph.node if n.op_type == "Constant" for o in n.output}
        self.consts = consts
        silu = _silu_gates(graph) if scheme.fused_silu else {}
        inside_silu = set(silu.values())
        everything = "*" in scheme.ops
        self.layers: dict[str, LayerInfo] = {}
        for i, node in enumerate(graph.node):
            name = node.name or f"{node.op_type}_{i}"
            if node.op_type == "Constant" or not (everything or node.op_type in scheme.ops):
                continue
            if name in silu:
                continue
            weight = node.input[1] if node.op_type in WEIGHTED and len(node.input) > 1 and node.input[1] in consts \
                else None
            acts = tuple(t for k, t in enumerate(node.input)
                         if t and t not in consts and t not in inside_silu and (k == 0 or node.op_type not in WEIGHTED)
                         and getattr(infos.get(t), "dtype", None) in _FLOAT)
            outs = tuple(o for o in node.output if o) if node.op_type in scheme.outputs else ()
            if acts or weight:
                self.layers[name] = LayerInfo(name, node.op_type, acts, weight, name.startswith(HEAD_PREFIX), outs)
        # tensor -> the quantized tensors it shares one range with. The decode head's own ties are left out, as
        # the TensorRT build leaves them out (its head stays float; elsewhere an in-graph head is a comparison)
        quantized = set(self.activation_tensors())
        groups = tied_groups(graph.node, scheme.unified, lambda node: [t for t in node.input if t and t not in consts],
                             skip=lambda node: node.name.startswith(HEAD_PREFIX))
        self.tied = {t: frozenset(members) for group in groups if len(members := group & quantized) > 1
                     for t in members}

    def candidates(self, head_quantized: bool) -> list[str]:
        """The layers a sweep ranks: the scheme's candidate ops in the body, and every quantized head layer when
        the target quantizes the decode head."""
        return [n for n, info in self.layers.items()
                if (info.in_head and head_quantized) or (not info.in_head and info.op in self.scheme.candidates)]

    def quantized(self, head_quantized: bool, keep_float: Iterable[str] = ()) -> list[str]:
        """Every layer the target quantizes, minus `keep_float`."""
        kept = set(keep_float)
        return [n for n, info in self.layers.items() if n not in kept and (head_quantized or not info.in_head)]

    def activation_tensors(self) -> list[str]:
        return sorted({t for info in self.layers.values() for t in (*info.activation_inputs, *info.activation_outputs)})


def fake_quant(qgraph: QuantGraph, ranges: Mapping[str, Range], layers: Iterable[str]):
    """The FP32 model with `layers` quantized per the scheme: Q/DQ on their activation inputs (a tensor tied to
    others by the scheme gets the range covering them all), weights rounded to INT8."""
    import onnx
    from onnx import helper, numpy_helper

    scheme = qgraph.scheme
    model = onnx.ModelProto.FromString(qgraph.model.SerializeToString())
    graph = model.graph
    chosen = {n: qgraph.layers[n] for n in layers if n in qgraph.layers}
    weights = {i.name: i for i in graph.initializer}
    new_inits, new_nodes = [], []
    fq_names: dict[tuple[str, float, float], str] = {}
    qdtype = np.int8 if scheme.symmetric else np.uint8

    def qdq(source: str, target: str, r: Range) -> list:
        """Q/DQ nodes rounding `source` to INT8 with range `r`, writing `target`."""
        scale, zero = r.qparams(scheme.symmetric)
        new_inits.extend([numpy_helper.from_array(np.array(scale, np.float32), f"{target}_scale"),
                          numpy_helper.from_array(np.array(zero, qdtype), f"{target}_zero")])
        return [helper.make_node("QuantizeLinear", [source, f"{target}_scale", f"{target}_zero"], [f"{target}_q"],
                                 name=f"{target}_Q"),
                helper.make_node("DequantizeLinear", [f"{target}_q", f"{target}_scale", f"{target}_zero"], [target],
                                 name=f"{target}_DQ")]

    def fq(t: str, r: Range) -> str:
        key = (t, r.lo, r.hi)
        if key not in fq_names:
            fq_names[key] = f"{t}_fq{len(fq_names)}"
            new_nodes.extend(qdq(t, fq_names[key], r))
        return fq_names[key]

    for i, node in enumerate(list(graph.node)):
        name = node.name or f"{node.op_type}_{i}"
        info = chosen.get(name)
        after = []  # Q/DQ on outputs the op writes in INT8, placed after it under the outputs' own names
        if info is not None:
            node = onnx.NodeProto.FromString(node.SerializeToString())
            acts = [t for t in info.activation_inputs if t in ranges]
            rewired = {t: fq(t, _shared_range(qgraph, ranges, t)) for t in acts}
            for k, t in enumerate(node.input):
                if t in rewired:
                    node.input[k] = rewired[t]
            for k, t in enumerate(node.output):
                if t in info.activation_outputs and t in ranges:
                    node.output[k] = f"{t}_unquantized"
                    after += qdq(node.output[k], t, _shared_range(qgraph, ranges, t))
            if info.weight is not None:
                w = numpy_helper.to_array(weights[info.weight]).astype(np.float32)
                qname = f"{info.weight}_fq_{name}"
                new_inits.append(numpy_helper.from_array(quantize_weight(w, scheme.weights), qname))
                node.input[1] = qname
        new_nodes += [node, *after]
    del graph.node[:]
    graph.node.extend(new_nodes)
    graph.initializer.extend(new_inits)
    return model


def _shared_range(qgraph: QuantGraph, ranges: Mapping[str, Range], tensor: str) -> Range:
    """The range `tensor` is quantized with: its own, or the one covering every tensor it is tied to."""
    members = [ranges[t] for t in qgraph.tied.get(tensor, (tensor,)) if t in ranges]
    return Range(min(r.lo for r in members), max(r.hi for r in members)) if len(members) > 1 else ranges[tensor]


def quantize_weight(w: np.ndarray, granularity: str) -> np.ndarray:
    """Symmetric INT8 rounding of a conv weight (output channels on axis 0), returned in float."""
    if granularity == "per-channel":
        amax = np.abs(w.reshape(w.shape[0], -1)).max(axis=1).reshape(-1, *[1] * (w.ndim - 1))
    else:
        amax = np.array(np.abs(w).max())
    scale = np.where(amax > 0, amax / 127.0, 1.0)
    return (np.clip(np.round(w / scale), -127, 127) * scale).astype(np.float32)


def _silu_gates(graph) -> dict[str, str]:
    """Every SiLU `Mul(x, Sigmoid(x))`: the Mul's node name -> its gate tensor sigmoid(x). A target that runs SiLU
    as one op never stores the gate in INT8, nor quantizes the Mul's inputs."""
    producers = {o: n for n in graph.node for o in n.output}
    gates = {}
    for i, node in enumerate(graph.node):
        if node.op_type == "Mul" and len(node.input) == 2:
            for x, gate in ((node.input[0], node.input[1]), (node.input[1], node.input[0])):
                p = producers.get(gate)
                if p is not None and p.op_type == "Sigmoid" and p.input[0] == x:
                    gates[node.name or f"{node.op_type}_{i}"] = gate
    return gates
