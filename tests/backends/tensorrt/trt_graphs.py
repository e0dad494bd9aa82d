"""Hand-built ONNX graphs for the TensorRT-family tests (imported by the tests, not collected)."""

from __future__ import annotations

import numpy as np


def conv_weight(rng, cout: int, cin: int, k: int) -> np.ndarray:
    return (rng.standard_normal((cout, cin, k, k)) * 0.2).astype(np.float32)


def make_model(nodes, inputs, outputs, inits, opset: int = 17):
    import onnx
    from onnx import helper

    graph = helper.make_graph(nodes, "g", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def silu_concat_model(rng=None, size: int = 16):
    """images -> Conv -> SiLU -> (Conv -> SiLU, MaxPool) -> Concat -> Conv -> out: a miniature C2f/SPPF."""
    from onnx import TensorProto, helper, numpy_helper

    rng = rng or np.random.default_rng(0)
    inits = [numpy_helper.from_array(conv_weight(rng, 8, 3, 3), "w0"),
             numpy_helper.from_array(np.zeros(8, np.float32), "b0"),
             numpy_helper.from_array(conv_weight(rng, 8, 8, 3), "w1"),
             numpy_helper.from_array(conv_weight(rng, 4, 16, 1), "w2")]
    nodes = [helper.make_node("Conv", ["images", "w0", "b0"], ["c0"], name="conv0", pads=[1, 1, 1, 1]),
             helper.make_node("Sigmoid", ["c0"], ["s0"], name="sig0"),
             helper.make_node("Mul", ["c0", "s0"], ["a0"], name="mul0"),
             helper.make_node("Conv", ["a0", "w1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
             helper.make_node("Sigmoid", ["c1"], ["s1"], name="sig1"),
             helper.make_node("Mul", ["c1", "s1"], ["a1"], name="mul1"),
             helper.make_node("MaxPool", ["a0"], ["p0"], name="pool0", kernel_shape=[5, 5], pads=[2, 2, 2, 2]),
             helper.make_node("Add", ["a1", "p0"], ["r0"], name="add0"),
             helper.make_node("Concat", ["r0", "p0"], ["cat"], name="cat0", axis=1),
             helper.make_node("Conv", ["cat", "w2"], ["out"], name="conv_out")]
    return make_model(nodes, [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, size, size])],
                      [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 4, size, size])], inits)


def rule_breaker():
    """One graph breaking every DLA limit the rule table knows, each in its own named layer; dynamic batch."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(conv_weight(rng, 8, 3, 33), "w33"),
             numpy_helper.from_array(conv_weight(rng, 8, 8, 3), "w3"),
             numpy_helper.from_array(np.array(2.0, np.float32), "two"),
             numpy_helper.from_array(np.array([2], np.int64), "axis2"),
             numpy_helper.from_array(np.array([1, 1, 8, 8], np.float32), "x8")]
    nodes = [helper.make_node("Conv", ["images", "w33"], ["big"], name="conv_kernel33", pads=[16, 16, 16, 16]),
             helper.make_node("Conv", ["big", "w3"], ["strided"], name="conv_stride9", strides=[9, 9], pads=[1] * 4),
             helper.make_node("Div", ["strided", "two"], ["halved"], name="div"),
             helper.make_node("Concat", ["halved", "halved"], ["tall"], name="concat_axis2", axis=2),
             helper.make_node("Unsqueeze", ["tall", "axis2"], ["five_d"], name="unsqueeze_5d"),
             helper.make_node("Squeeze", ["five_d", "axis2"], ["four_d"], name="squeeze_5d"),
             helper.make_node("Resize", ["four_d", "", "x8"], ["upsampled"], name="resize_bilinear_x8", mode="linear"),
             helper.make_node("MaxPool", ["upsampled"], ["out"], name="pool_kernel9", kernel_shape=[9, 9],
                              pads=[4, 4, 4, 4])]
    return make_model(nodes, [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["N", 3, 64, 64])],
                      [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["N", 8, 128, 64])], inits)

