"""ONNX graphs as rule-engine layers, with shapes from ONNX shape inference."""

from __future__ import annotations

from edgeq.rules import Layer, TensorInfo

_DTYPES = {1: "float32", 2: "uint8", 3: "int8", 6: "int32", 7: "int64", 10: "float16", 11: "float64", 9: "bool"}


def tensor_infos(model) -> dict[str, TensorInfo]:
    """Every value's shape and dtype (None for dimensions that are symbolic or unknown)."""
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model)
    infos = {}
    graph = inferred.graph
    for value in (*graph.input, *graph.value_info, *graph.output):
        ttype = value.type.tensor_type
        shape = tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None
                      for d in ttype.shape.dim) if ttype.HasField("shape") else None
        infos[value.name] = TensorInfo(value.name, shape, _DTYPES.get(ttype.elem_type, str(ttype.elem_type)))
    for init in graph.initializer:
        infos[init.name] = TensorInfo(init.name, tuple(init.dims), _DTYPES.get(init.data_type, "?"))
    return infos


def onnx_layers(model) -> list[Layer]:
    import onnx

    infos = tensor_infos(model)
    layers = []
    for index, node in enumerate(model.graph.node):
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        attrs = {k: v.decode() if isinstance(v, bytes) else v for k, v in attrs.items()}
        layers.append(Layer(name=node.name or f"{node.op_type}_{index}", op=node.op_type, attrs=attrs,
                            inputs=tuple(infos.get(i, TensorInfo(i)) for i in node.input if i),
                            outputs=tuple(infos.get(o, TensorInfo(o)) for o in node.output), index=index))
    return layers
