"""Reading Q/DQ ONNX graphs: which QuantizeLinear quantizes which float tensor, with which scale.

Shared by scale unification (GPU target) and the Q/DQ -> calibration-cache translator. Only `onnx` and numpy
are needed; tensors are addressed by name, nodes by their index in `graph.node`.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

Q_OPS = ("QuantizeLinear",)
DQ_OPS = ("DequantizeLinear",)
INT8_MAX = 127.0


class GraphIndex:
    """Producers, consumers and constant values of an ONNX graph (main graph only)."""

    def __init__(self, model) -> None:
        from onnx import numpy_helper

        self.model = model
        graph = model.graph
        self.consts: dict[str, np.ndarray] = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
        for node in graph.node:
            if node.op_type == "Constant" and node.attribute:
                attr = next((a for a in node.attribute if a.name == "value"), None)
                if attr is not None:
                    self.consts[node.output[0]] = numpy_helper.to_array(attr.t)
        self.producer: dict[str, int] = {}
        self.consumers: dict[str, list[int]] = defaultdict(list)
        for index, node in enumerate(graph.node):
            for out in node.output:
                self.producer[out] = index
            for inp in node.input:
                if inp:
                    self.consumers[inp].append(index)
        self.graph_inputs = {i.name for i in graph.input if i.name not in self.consts}
        self.graph_outputs = [o.name for o in graph.output]

    def node(self, index: int):
        return self.model.graph.node[index]

    def is_const(self, name: str) -> bool:
        return name in self.consts

    def producer_op(self, name: str) -> str | None:
        index = self.producer.get(name)
        return None if index is None else self.node(index).op_type

    def const_input(self, node, position: int) -> np.ndarray | None:
        if position >= len(node.input) or not node.input[position]:
            return None
        return self.consts.get(node.input[position])


@dataclass
class Quantizer:
    """One activation QuantizeLinear node and what it quantizes."""

    node: int  # index of the QuantizeLinear node
    tensor: str  # the float tensor it quantizes
    scale: float  # symmetric per-tensor scale (amax / 127)
    zero_point: int
    dequantizers: list[int]  # DequantizeLinear nodes reading its output


def activation_quantizers(index: GraphIndex) -> list[Quantizer]:
    """Every QuantizeLinear whose input is an activation (not a constant weight)."""
    found = []
    for i, node in enumerate(index.model.graph.node):
        if node.op_type not in Q_OPS or index.is_const(node.input[0]):
            continue
        scale = index.const_input(node, 1)
        zero = index.const_input(node, 2)
        dqs = [c for c in index.consumers.get(node.output[0], []) if index.node(c).op_type in DQ_OPS]
        found.append(Quantizer(node=i, tensor=node.input[0],
                               scale=float(np.max(scale)) if scale is not None else float("nan"),
                               zero_point=int(np.max(np.abs(zero))) if zero is not None and zero.size else 0,
                               dequantizers=dqs))
    return found


def real_tensor(index: GraphIndex, name: str) -> str:
    """The float tensor behind `name`, looking through DequantizeLinear(QuantizeLinear(x))."""
    seen = 0
    while seen < 64:
        producer = index.producer.get(name)
        if producer is None or index.node(producer).op_type not in DQ_OPS:
            return name
        q_out = index.node(producer).input[0]
        q_index = index.producer.get(q_out)
        if q_index is None or index.node(q_index).op_type not in Q_OPS:
            return name
        name = index.node(q_index).input[0]
        seen += 1
    return name


def count_qdq(model) -> int:
    return sum(1 for n in model.graph.node if n.op_type in Q_OPS)
