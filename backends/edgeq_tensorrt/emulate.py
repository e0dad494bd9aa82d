"""Rebuild the INT8 numerics of a DLA engine as a Q/DQ ONNX that ONNX Runtime runs (status `emulated`).

From the plain ONNX and the calibration cache:
  * every activation with a cache scale that an INT8 layer produces or reads gets a symmetric per-tensor
    QuantizeLinear -> DequantizeLinear pair (int8, zero point 0): what TensorRT does with the cache;
  * except the tensors inside a SiLU (x * sigmoid(x) after a layer): TensorRT fuses the activation into the
    layer that produces x (on the GPU, and on DLA 3.14+, the JetPack 6 build edgeq targets), so neither x nor
    sigmoid(x) is ever stored in INT8; only the product is. Quantizing all three, as the layer-by-layer ONNX
    suggests, cost YOLO26n 0.9 mAP50-95 points that the engine does not lose;
  * INT8 convolutions get per-output-channel symmetric weights (scale = max|w| / 127), as TensorRT quantizes them;
  * FP16 layers (the last head convolutions, the head when it stays in the engine) keep float weights rounded to
    FP16 and their outputs pass through a Cast to float16 and back.
It is an emulation: DLA's rounding, its INT8 sigmoid tables and requantization order are not bit-exact.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

from edgeq_tensorrt.qdq import INT8_MAX, GraphIndex

WEIGHTED_OPS = ("Conv", "ConvTranspose")


def emulation_model(model, scales: Mapping[str, float], fp16_layers: Iterable[str] = (), cast_fp16: bool = True):
    """A new ModelProto: `model` with Q/DQ inserted from `scales`; see the module docstring."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    index = GraphIndex(model)
    fp16 = set(fp16_layers)
    outputs = set(index.graph_outputs)
    node_name = {i: (n.name or f"node_{i}") for i, n in enumerate(graph.node)}
    fused = fused_silu_tensors(index)
    inits: list = []
    consts = index.consts

    def int8_layer(i: int) -> bool:
        return node_name[i] not in fp16

    def wants_qdq(t: str) -> bool:
        if t not in scales or t in fused or index.is_const(t):
            return False
        consumers = index.consumers.get(t, [])
        if not consumers:
            return False
        producer = index.producer.get(t)
        produced_int8 = producer is None or int8_layer(producer)  # graph input: fed as INT8 (dla_hwc4)
        return produced_int8 or any(int8_layer(c) for c in consumers)

    def qdq_nodes(t: str) -> tuple[list, str]:
        scale_name, zero_name = f"{t}_emu_scale", f"{t}_emu_zero"
        inits.append(numpy_helper.from_array(np.array(scales[t], np.float32), scale_name))
        inits.append(numpy_helper.from_array(np.array(0, np.int8), zero_name))
        q = helper.make_node("QuantizeLinear", [t, scale_name, zero_name], [f"{t}_emu_q"], name=f"{t}_emu_Q")
        dq = helper.make_node("DequantizeLinear", [f"{t}_emu_q", scale_name, zero_name], [f"{t}_emu_dq"],
                              name=f"{t}_emu_DQ")
        return [q, dq], f"{t}_emu_dq"

    replaced: dict[str, str] = {}
    new_nodes: list = []
    for t in list(index.graph_inputs):
        if wants_qdq(t):
            nodes, replaced[t] = qdq_nodes(t)
            new_nodes += nodes
    for i, node in enumerate(graph.node):
        node = onnx.NodeProto.FromString(node.SerializeToString())
        for k, inp in enumerate(node.input):
            if inp in replaced:
                node.input[k] = replaced[inp]
        if node.op_type in WEIGHTED_OPS and len(node.input) > 1 and node.input[1] in consts:
            weight = consts[node.input[1]].astype(np.float32)
            wname = f"{node_name[i]}_emu_w"
            if int8_layer(i):
                flat = np.abs(weight.reshape(weight.shape[0], -1)).max(axis=1)
                wscale = np.where(flat > 0, flat / INT8_MAX, 1.0).astype(np.float32)
                q = np.clip(np.round(weight / wscale.reshape(-1, *[1] * (weight.ndim - 1))), -127, 127)
                inits += [numpy_helper.from_array(q.astype(np.int8), wname + "_q"),
                          numpy_helper.from_array(wscale, wname + "_scale"),
                          numpy_helper.from_array(np.zeros(weight.shape[0], np.int8), wname + "_zero")]
                new_nodes.append(helper.make_node("DequantizeLinear", [wname + "_q", wname + "_scale",
                                                                        wname + "_zero"], [wname], axis=0,
                                                  name=wname + "_DQ"))
            else:
                inits.append(numpy_helper.from_array(weight.astype(np.float16).astype(np.float32), wname))
            node.input[1] = wname
        fp16_out = cast_fp16 and not int8_layer(i)
        if fp16_out:
            originals = list(node.output)
            for k, out in enumerate(originals):
                node.output[k] = f"{out}_emu_acc"
        new_nodes.append(node)
        for out in node.output if not fp16_out else originals:
            if fp16_out:
                half = f"{out}_emu_fp16"
                new_nodes += [helper.make_node("Cast", [f"{out}_emu_acc"], [half], to=TensorProto.FLOAT16,
                                               name=f"{out}_emu_to_fp16"),
                              helper.make_node("Cast", [half], [out], to=TensorProto.FLOAT,
                                               name=f"{out}_emu_to_fp32")]
            if out and out not in outputs and wants_qdq(out):
                nodes, replaced[out] = qdq_nodes(out)
                new_nodes += nodes
    del graph.node[:]
    graph.node.extend(new_nodes)
    graph.initializer.extend(inits)
    used = {i for n in graph.node for i in n.input}
    keep = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep)
    del graph.value_info[:]
    if max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) < 13:
        raise ValueError("per-channel DequantizeLinear needs opset >= 13")
    onnx.checker.check_model(model)
    return model


def fused_silu_tensors(index: GraphIndex) -> set[str]:
    """The tensors internal to a fused SiLU `Mul(x, Sigmoid(x))`: sigmoid(x), and x unless another layer reads it."""
    inside: set[str] = set()
    for mul in index.model.graph.node:
        if mul.op_type != "Mul" or len(mul.input) != 2:
            continue
        a, b = mul.input
        for x, gate in ((a, b), (b, a)):
            producer = index.producer.get(gate)
            if producer is None or index.node(producer).op_type != "Sigmoid" or index.node(producer).input[0] != x:
                continue
            if len(index.consumers.get(gate, [])) == 1:  # sigmoid(x) lives only inside the fused pointwise op
                inside.add(gate)
            if len(index.consumers.get(x, [])) == 2:  # x is stored only when something else reads it
                inside.add(x)
    return inside
