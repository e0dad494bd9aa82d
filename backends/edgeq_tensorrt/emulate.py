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


def emulation_model(model, scales: Mapping[str, float], fp16_layers: Iterable[str] = (), cast_fp16: bool = True,
                    typed: bool = False):
    """A new ModelProto: `model` with Q/DQ inserted from `scales`; see the module docstring.

    `typed=True` makes TensorRT 11's strongly typed DLA graph from the same scales instead: the FP16 layers run
    on FP16 tensors (a Cast where the type changes, FP16 weights), the input is INT8 (the host quantizes it; only
    its DequantizeLinear is in the graph) and the outputs are FP16, as the int8:dla_hwc4 / fp16:chw16 I/O formats
    say. `with_float_input` puts the host's quantization in front of it for ONNX Runtime."""
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
    tag = "q8" if typed else "emu"

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

    def qdq_nodes(t: str, quantize: bool = True) -> tuple[list, str]:
        scale_name, zero_name = f"{t}_{tag}_scale", f"{t}_{tag}_zero"
        inits.append(numpy_helper.from_array(np.array(scales[t], np.float32), scale_name))
        inits.append(numpy_helper.from_array(np.array(0, np.int8), zero_name))
        q = helper.make_node("QuantizeLinear", [t, scale_name, zero_name], [f"{t}_{tag}_q"], name=f"{t}_{tag}_Q")
        source = f"{t}_{tag}_q" if quantize else t
        dq = helper.make_node("DequantizeLinear", [source, scale_name, zero_name], [f"{t}_{tag}_dq"],
                              name=f"{t}_{tag}_DQ")
        return ([q, dq] if quantize else [dq]), f"{t}_{tag}_dq"

    halves: dict[str, str] = {}  # float32 tensor -> its FP16 cast, for FP16 layers (typed)

    def to_half(t: str, node_op: str, position: int, new_nodes: list) -> str:
        if t in consts:
            value = consts[t]
            if value.dtype != np.float32 or (node_op == "Resize" and position > 0):
                return t  # shapes, indices, Resize's scales stay as they are
            if t not in halves:
                halves[t] = f"{t}_fp16"
                inits.append(numpy_helper.from_array(value.astype(np.float16), halves[t]))
            return halves[t]
        if t not in halves:
            halves[t] = f"{t}_to_fp16"
            new_nodes.append(helper.make_node("Cast", [t], [halves[t]], to=TensorProto.FLOAT16,
                                              name=f"{t}_cast_fp16"))
        return halves[t]

    replaced: dict[str, str] = {}
    new_nodes: list = []
    for t in list(index.graph_inputs):
        if wants_qdq(t):
            nodes, replaced[t] = qdq_nodes(t, quantize=not typed)
            new_nodes += nodes
            if typed:
                next(i for i in graph.input if i.name == t).type.tensor_type.elem_type = TensorProto.INT8
    for i, node in enumerate(graph.node):
        node = onnx.NodeProto.FromString(node.SerializeToString())
        for k, inp in enumerate(node.input):
            if inp in replaced:
                node.input[k] = replaced[inp]
        if node.op_type in WEIGHTED_OPS and len(node.input) > 1 and node.input[1] in consts:
            weight = consts[node.input[1]].astype(np.float32)
            wname = f"{node_name[i]}_{tag}_w"
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
                node.input[1] = wname
            elif not typed:
                inits.append(numpy_helper.from_array(weight.astype(np.float16).astype(np.float32), wname))
                node.input[1] = wname
        if typed and not int8_layer(i):  # an FP16 layer: FP16 in, FP16 weights, FP16 out
            for k, inp in enumerate(node.input):
                if inp:
                    node.input[k] = to_half(inp, node.op_type, k, new_nodes)
            originals = list(node.output)
            for k, out in enumerate(originals):
                if out in outputs:
                    continue  # a network output stays FP16 (fp16:chw16)
                node.output[k] = f"{out}_fp16"
                halves[out] = f"{out}_fp16"
            new_nodes.append(node)
            for out in originals:
                if out not in outputs and index.consumers.get(out):
                    new_nodes.append(helper.make_node("Cast", [f"{out}_fp16"], [out], to=TensorProto.FLOAT,
                                                      name=f"{out}_cast_fp32"))
                if out and out not in outputs and wants_qdq(out):
                    nodes, replaced[out] = qdq_nodes(out)
                    new_nodes += nodes
            continue
        fp16_out = cast_fp16 and not typed and not int8_layer(i)
        if fp16_out:
            originals = list(node.output)
            for k, out in enumerate(originals):
                node.output[k] = f"{out}_emu_acc"
        if typed:  # an INT8 layer writing a network output: FP16 there too
            for k, out in enumerate(node.output):
                if out in outputs:
                    node.output[k] = f"{out}_fp32"
        new_nodes.append(node)
        for out in node.output if not fp16_out else originals:
            if typed and out.endswith("_fp32") and out.removesuffix("_fp32") in outputs:
                new_nodes.append(helper.make_node("Cast", [out], [out.removesuffix("_fp32")], to=TensorProto.FLOAT16,
                                                  name=f"{out}_cast_fp16"))
                continue
            if fp16_out:
                half = f"{out}_emu_fp16"
                new_nodes += [helper.make_node("Cast", [f"{out}_emu_acc"], [half], to=TensorProto.FLOAT16,
                                               name=f"{out}_emu_to_fp16"),
                              helper.make_node("Cast", [half], [out], to=TensorProto.FLOAT,
                                               name=f"{out}_emu_to_fp32")]
            if out and out not in outputs and wants_qdq(out):
                nodes, replaced[out] = qdq_nodes(out)
                new_nodes += nodes
    if typed:
        for out in graph.output:
            out.type.tensor_type.elem_type = TensorProto.FLOAT16
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


def with_float_input(typed_model):
    """The strongly typed DLA graph with the host's input quantization in front (float32 images in), so ONNX
    Runtime and the evaluator run exactly that graph."""
    import onnx
    from onnx import TensorProto, helper

    model = onnx.ModelProto.FromString(typed_model.SerializeToString())
    graph = model.graph
    for inp in graph.input:
        if inp.type.tensor_type.elem_type != TensorProto.INT8:
            continue
        dq = next(n for n in graph.node if n.op_type == "DequantizeLinear" and n.input[0] == inp.name)
        int8 = f"{inp.name}_host_q"
        for node in graph.node:
            for k, name in enumerate(node.input):
                if name == inp.name:
                    node.input[k] = int8
        graph.node.insert(0, helper.make_node("QuantizeLinear", [inp.name, dq.input[1], dq.input[2]], [int8],
                                              name=f"{inp.name}_host_Q"))
        inp.type.tensor_type.elem_type = TensorProto.FLOAT
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
