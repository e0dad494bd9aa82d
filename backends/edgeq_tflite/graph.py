"""Graphs as rule-engine layers: the produced .tflite read from its flatbuffer, and the FP32 ONNX.

The .tflite is parsed with the schema module LiteRT ships (`ai_edge_litert.schema_py_generated`, plain
flatbuffers, no TensorFlow import): op codes, builtin options (fused activations, resize flags), tensor
types, static shapes (`shape_signature`) and quantization parameters, exactly as the file holds them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeq.plugin import Layer, TensorInfo

_CAMEL = re.compile(r"(?<!^)(?=[A-Z])")


def _schema():
    from ai_edge_litert import schema_py_generated as schema

    return schema


def _enum_names(enum_cls) -> dict[int, str]:
    return {v: k for k, v in vars(enum_cls).items() if not k.startswith("_") and isinstance(v, int)}


@dataclass
class TFLiteGraph:
    """What the rules and the op table need from one .tflite file."""

    path: Path
    layers: list[Layer]
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    param_bytes: int  # constant buffers: weights, biases, shape tensors
    signature_outputs: dict[str, int] = field(default_factory=dict)  # signature name -> tensor index
    tensor_names: list[str] = field(default_factory=list)

    def model_layer(self) -> Layer:
        """A pseudo-layer for model-level rules (parameter size)."""
        return Layer(name="model", op="MODEL", attrs={"param_bytes": self.param_bytes}, index=-1)


def short_name(name: str, limit: int = 64) -> str:
    """TFLite tensor names join every fused TF op name with ';': the first one says where it came from."""
    first = name.split(";")[0]
    return first if len(first) <= limit else "..." + first[-(limit - 3):]


def _decode(value: Any) -> Any:
    return value.decode() if isinstance(value, bytes) else value


def _options(op, activation_names: dict[int, str]) -> dict[str, Any]:
    opts = op.builtinOptions
    if opts is None:
        return {}
    attrs = {}
    for key, value in vars(opts).items():
        name = _CAMEL.sub("_", key).lower()
        if name == "fused_activation_function":
            value = activation_names.get(value, str(value))
        if isinstance(value, (int, float, bool, str, bytes)):
            attrs[name] = _decode(value)
        elif value is not None and hasattr(value, "tolist"):
            attrs[name] = value.tolist()
    return attrs


def read_tflite(path: Path) -> TFLiteGraph:
    schema = _schema()
    buf = Path(path).read_bytes()
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAs(buf, 0))
    ops = _enum_names(schema.BuiltinOperator)
    types = {k: v.lower() for k, v in _enum_names(schema.TensorType).items()}
    acts = _enum_names(schema.ActivationFunctionType)
    graph = model.subgraphs[0]

    def info(index: int) -> TensorInfo:
        t = graph.tensors[index]
        sig = t.shapeSignature if t.shapeSignature is not None and len(t.shapeSignature) else t.shape
        shape = tuple(int(d) if d >= 0 else None for d in (sig if sig is not None else []))
        q = t.quantization
        scale = zp = None
        if q is not None and q.scale is not None and len(q.scale):
            scale = tuple(float(s) for s in q.scale)
            zp = tuple(int(z) for z in q.zeroPoint) if q.zeroPoint is not None else None
        return TensorInfo(_decode(t.name) or f"t{index}", shape, types.get(t.type, str(t.type)), scale, zp)

    def is_const(index: int) -> bool:
        b = graph.tensors[index].buffer
        return b > 0 and model.buffers[b].data is not None and len(model.buffers[b].data) > 0

    tensors = [info(i) for i in range(len(graph.tensors))]
    producers: dict[str, tuple[str, tuple[str, ...]]] = {}
    op_names = []
    for op in graph.operators:
        code = model.operatorCodes[op.opcodeIndex]
        op_names.append(ops.get(max(code.builtinCode, code.deprecatedBuiltinCode), "CUSTOM"))
    for op, name in zip(graph.operators, op_names):
        ins = tuple(tensors[i].name for i in op.inputs if i >= 0)
        for o in op.outputs:
            producers[tensors[o].name] = (name, ins)
    layers = []
    for index, (op, name) in enumerate(zip(graph.operators, op_names)):
        in_idx = [i for i in op.inputs if i >= 0]
        attrs = _options(op, acts)
        attrs["producers"] = {tensors[i].name: producers[tensors[i].name] for i in in_idx
                              if tensors[i].name in producers}
        attrs["const_inputs"] = tuple(tensors[i].name for i in in_idx if is_const(i))
        out_name = tensors[op.outputs[0]].name if len(op.outputs) else f"op{index}"
        layers.append(Layer(name=out_name, op=name, attrs=attrs, inputs=tuple(tensors[i] for i in in_idx),
                            outputs=tuple(tensors[o] for o in op.outputs), index=index))
    const_bytes = sum(len(model.buffers[t.buffer].data) for t in graph.tensors
                      if t.buffer > 0 and model.buffers[t.buffer].data is not None)
    sig_outputs = {}
    for sig in model.signatureDefs or []:
        for tmap in sig.outputs or []:
            sig_outputs[_decode(tmap.name)] = int(tmap.tensorIndex)
    return TFLiteGraph(path=Path(path), layers=layers, inputs=[tensors[i] for i in graph.inputs],
                       outputs=[tensors[i] for i in graph.outputs], param_bytes=int(const_bytes),
                       signature_outputs=sig_outputs, tensor_names=[t.name for t in tensors])


def onnx_layers_with_producers(model) -> list[Layer]:
    """`edgeq.graph.onnx_layers` plus the producer map and constant inputs the pattern checks read."""
    from edgeq.plugin import onnx_layers

    consts = {init.name for init in model.graph.initializer}
    producers = {}
    for node in model.graph.node:
        for out in node.output:
            producers[out] = (node.op_type, tuple(node.input))
        if node.op_type == "Constant":
            consts.update(node.output)
    layers = []
    for layer in onnx_layers(model):
        names = [t.name for t in layer.inputs]
        attrs = dict(layer.attrs)
        attrs["producers"] = {n: producers[n] for n in names if n in producers}
        attrs["const_inputs"] = tuple(n for n in names if n in consts)
        layers.append(Layer(name=layer.name, op=layer.op, attrs=attrs, inputs=layer.inputs, outputs=layer.outputs,
                            index=layer.index))
    return layers
