"""DLA emulation graph: Q/DQ from the cache scales, per-channel INT8 weights, FP16 layers kept float."""

import numpy as np
from edgeq_tensorrt.emulate import emulation_model
from trt_graphs import silu_concat_model


def _amax_scales(model, x):
    """max-calibrated scales of every activation (amax / 127), from one float run."""
    import onnx
    import onnxruntime as ort

    probe = onnx.ModelProto.FromString(model.SerializeToString())
    names = ["images"] + [o for n in probe.graph.node for o in n.output]
    del probe.graph.output[:]
    probe.graph.output.extend(onnx.helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None) for n in names)
    session = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    values = session.run(None, {"images": x})
    return {n: float(np.abs(v).max()) / 127 for n, v in zip(names, values)}


def _run(model, x):
    import onnxruntime as ort

    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        None, {"images": x})[0]


def test_emulation_quantizes_activations_and_weights():
    model = silu_concat_model()
    x = np.random.default_rng(0).uniform(0, 1, (1, 3, 16, 16)).astype(np.float32)
    scales = _amax_scales(model, x)
    emu = emulation_model(model, scales, fp16_layers=())
    quantized = {n.input[0] for n in emu.graph.node if n.op_type == "QuantizeLinear"}
    # the input and every stored activation; not x or sigmoid(x) inside a SiLU, which TensorRT fuses
    assert quantized == {"images", "a0", "a1", "p0", "r0", "cat"}
    weight_dq = [n for n in emu.graph.node if n.op_type == "DequantizeLinear" and n.name.endswith("_emu_w_DQ")]
    assert len(weight_dq) == 3 and all(a.i == 0 for n in weight_dq for a in n.attribute if a.name == "axis")
    ref, got = _run(model, x), _run(emu, x)
    err = np.abs(got - ref).max() / np.abs(ref).max()
    assert 0 < err < 0.1  # really quantized, still close


def test_silu_input_used_elsewhere_is_still_quantized():
    from onnx import helper

    model = silu_concat_model()
    model.graph.node.append(helper.make_node("Relu", ["c1"], ["side"], name="side_use"))
    model.graph.output.append(helper.make_tensor_value_info("side", 1, [1, 8, 16, 16]))
    x = np.random.default_rng(0).uniform(0, 1, (1, 3, 16, 16)).astype(np.float32)
    emu = emulation_model(model, _amax_scales(model, x), fp16_layers=())
    quantized = {n.input[0] for n in emu.graph.node if n.op_type == "QuantizeLinear"}
    assert "c1" in quantized and "s1" not in quantized and "c0" not in quantized


def test_fp16_layers_keep_float_weights_and_round_their_output():
    model = silu_concat_model()
    x = np.random.default_rng(1).uniform(0, 1, (1, 3, 16, 16)).astype(np.float32)
    scales = _amax_scales(model, x)
    emu = emulation_model(model, scales, fp16_layers=["conv_out"])
    conv_out = next(n for n in emu.graph.node if n.name == "conv_out")
    producers = {o: n for n in emu.graph.node for o in n.output}
    assert conv_out.input[1] not in producers  # weights: a float initializer, no DequantizeLinear
    assert producers["out"].op_type == "Cast"  # output rounded through float16
    all_int8 = emulation_model(model, scales, fp16_layers=())
    ref = _run(model, x)
    assert np.abs(_run(emu, x) - ref).mean() < np.abs(_run(all_int8, x) - ref).mean()  # INT8 weights cost more
