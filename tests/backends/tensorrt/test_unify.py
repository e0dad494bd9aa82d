"""Scale unification on Q/DQ graphs: Concat, SPPF-style pooling and residual Add groups end with one scale."""

import numpy as np
from edgeq_tensorrt.qdq import GraphIndex, activation_quantizers
from edgeq_tensorrt import TensorRTBackend
from edgeq_tensorrt.unify import group_scale_spread, unify_scales
from trt_graphs import make_model


def _qdq_graph():
    """Three activations with their own Q/DQ scales feeding: Add(a, b), MaxPool(a), Concat(add, pool, c)."""
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits = [], []
    for name, scale in (("a", 0.1), ("b", 0.3), ("c", 0.05), ("cat", 0.2)):
        inits += [numpy_helper.from_array(np.array(scale, np.float32), f"{name}_s"),
                  numpy_helper.from_array(np.array(0, np.int8), f"{name}_z")]

    def qdq(x, name):
        nodes.append(helper.make_node("QuantizeLinear", [x, f"{name}_s", f"{name}_z"], [f"{x}_q"], name=f"{x}_Q"))
        nodes.append(helper.make_node("DequantizeLinear", [f"{x}_q", f"{name}_s", f"{name}_z"], [f"{x}_dq"],
                                      name=f"{x}_DQ"))
        return f"{x}_dq"

    a, b, c = qdq("a", "a"), qdq("b", "b"), qdq("c", "c")
    nodes.append(helper.make_node("Add", [a, b], ["add"], name="residual"))
    nodes.append(helper.make_node("MaxPool", [a], ["pool"], name="pool", kernel_shape=[5, 5], pads=[2] * 4))
    nodes.append(helper.make_node("Concat", ["add", "pool", c], ["cat"], name="cat", axis=1))
    out = qdq("cat", "cat")
    nodes.append(helper.make_node("Relu", [out], ["out"], name="relu"))
    return make_model(nodes, [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 2, 8, 8]) for n in "abc"],
                      [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 6, 8, 8])], inits)


# the scheme's ties: the build's and the emulation's
GPU_TIES = TensorRTBackend.profiles["tensorrt"].quantization.unified
DLA_TIES = TensorRTBackend.profiles["dla"].quantization.unified


def _scales(model):
    return {q.tensor: q.scale for q in activation_quantizers(GraphIndex(model))}


def test_gpu_unification_gives_every_group_its_largest_scale():
    model = _qdq_graph()
    assert group_scale_spread(model, GPU_TIES)  # scales differ before
    result = unify_scales(model, GPU_TIES)
    scales = _scales(model)
    assert set(scales.values()) == {np.float32(0.3)}  # add ties a and b, pool ties a, concat ties all: one group
    assert result.merged_quantizers == 3 and result.rescaled_quantizers == 3
    assert not [g for g in group_scale_spread(model, GPU_TIES) if g[1] != g[2]]


def test_dla_unification_leaves_residual_add_inputs_alone():
    model = _qdq_graph()
    result = unify_scales(model, DLA_TIES)
    scales = _scales(model)
    assert scales["b"] == np.float32(0.3)  # only the Add ties b to the rest; DLA needs that for Concat/pool only
    assert scales["a"] == scales["c"] == scales["cat"] == np.float32(0.2)
    assert result.merged_quantizers == 2


def test_unified_graph_still_runs():
    import onnxruntime as ort

    model = _qdq_graph()
    unify_scales(model, GPU_TIES)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    x = {n: np.random.default_rng(0).uniform(-1, 1, (1, 2, 8, 8)).astype(np.float32) for n in "abc"}
    (out,) = session.run(None, x)
    assert out.shape == (1, 6, 8, 8) and np.isfinite(out).all()
