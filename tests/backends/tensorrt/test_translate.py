"""Q/DQ -> cache translator on Q/DQ models edgeq did not make (onnxruntime's quantizer, a hand-built QAT-style
graph), plus its error cases."""

import struct

import numpy as np
import pytest
from edgeq_tensorrt.calib_cache import float32, parse_cache
from edgeq_tensorrt.translate import SIGMOID_SCALE, main, translate, translate_model
from trt_graphs import conv_weight, make_model, silu_concat_model

from edgeq.errors import EdgeqError

_ORT_QUANTIZE = """
import sys
import numpy as np
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

src, dst, symmetric = sys.argv[1], sys.argv[2], sys.argv[3] == "1"


class Reader(CalibrationDataReader):
    def __init__(self):
        rng = np.random.default_rng(1)
        self.items = iter([{"images": rng.uniform(0, 1, (1, 3, 16, 16)).astype(np.float32)} for _ in range(8)])

    def get_next(self):
        return next(self.items, None)


quantize_static(src, dst, Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                activation_type=QuantType.QInt8 if symmetric else QuantType.QUInt8, weight_type=QuantType.QInt8,
                extra_options={"ActivationSymmetric": symmetric, "WeightSymmetric": True})
"""


def _ort_qdq(tmp_path, symmetric: bool = True):
    """The miniature model quantized by onnxruntime.quantization.quantize_static (QDQ format): a different
    quantizer. It runs in a fresh interpreter: importing ModelOpt patches onnxruntime.quantization in-process."""
    import subprocess
    import sys

    import onnx

    src, dst = tmp_path / "float.onnx", tmp_path / ("ort_qdq.onnx" if symmetric else "ort_qdq_u8.onnx")
    onnx.save(silu_concat_model(), str(src))
    run = subprocess.run([sys.executable, "-c", _ORT_QUANTIZE, str(src), str(dst), "1" if symmetric else "0"],
                         capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stderr[-2000:]
    return onnx.load(str(dst))


def _q_scales(model):
    """tensor -> scale of every activation QuantizeLinear in a Q/DQ model, read directly."""
    from onnx import numpy_helper

    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    outputs = {o.name for o in model.graph.output}
    dq_out = {n.input[0]: n.output[0] for n in model.graph.node if n.op_type == "DequantizeLinear"}
    found = {}
    for node in model.graph.node:
        if node.op_type == "QuantizeLinear" and node.input[0] not in inits:
            # a Q/DQ pair on a network output: the translated graph names that tensor after the output
            name = dq_out.get(node.output[0]) if dq_out.get(node.output[0]) in outputs else node.input[0]
            found[name] = float(np.asarray(inits[node.input[1]]).reshape(-1)[0])
    return found


def test_reproduces_onnxruntime_scales_exactly(tmp_path):
    import onnx

    qdq = _ort_qdq(tmp_path)
    expected = _q_scales(qdq)
    assert len(expected) >= 5, "onnxruntime should have quantized several activations"
    onnx.save(qdq, str(tmp_path / "ort.onnx"))
    files = translate(tmp_path / "ort.onnx", tmp_path / "out", trt_version="8.6")
    cache = parse_cache(files.cache)
    assert cache.version == 8600
    for tensor, scale in expected.items():
        assert struct.pack(">f", cache.scales[tensor]) == struct.pack(">f", scale), tensor
    stripped = onnx.load(str(files.onnx))
    assert not [n for n in stripped.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    assert sorted(n.op_type for n in stripped.graph.node) == sorted(n.op_type for n in silu_concat_model().graph.node)


def test_translated_model_computes_the_float_model(tmp_path):
    """onnxruntime stores weights as int8 (DequantizeLinear only): they come back as float on the int8 grid, each
    within half a quantization step of the original, and the network computes what the float model computes."""
    import onnxruntime as ort
    from onnx import numpy_helper

    qdq = _ort_qdq(tmp_path)
    result = translate_model(qdq)
    original = {i.name: numpy_helper.to_array(i) for i in silu_concat_model().graph.initializer}
    folded = {i.name: numpy_helper.to_array(i) for i in result.model.graph.initializer}
    convs = {n.name: n for n in result.model.graph.node if n.op_type == "Conv"}
    for name, w_name in (("conv0", "w0"), ("conv1", "w1"), ("conv_out", "w2")):
        w, got = original[w_name], folded[convs[name].input[1]]
        step = np.abs(w.reshape(w.shape[0], -1)).max(1) / 127
        assert np.all(np.abs(got - w).reshape(w.shape[0], -1).max(1) <= step / 2 + 1e-7)
    x = np.random.default_rng(2).uniform(0, 1, (1, 3, 16, 16)).astype(np.float32)

    def run(model):
        return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(
            None, {"images": x})[0]

    ref = run(silu_concat_model())
    assert np.abs(run(result.model) - ref).max() <= 0.03 * np.abs(ref).max()


def test_asymmetric_uint8_becomes_the_covering_symmetric_scale(tmp_path):
    from onnx import numpy_helper

    qdq = _ort_qdq(tmp_path, symmetric=False)
    inits = {i.name: numpy_helper.to_array(i) for i in qdq.graph.initializer}
    result = translate_model(qdq)
    assert result.asymmetric
    checked = 0
    for node in qdq.graph.node:
        if node.op_type == "QuantizeLinear" and node.input[0] in result.scales:
            s, zp = float(inits[node.input[1]]), int(inits[node.input[2]])
            amax = max(abs((0 - zp) * s), abs((255 - zp) * s))
            assert result.scales[node.input[0]] == pytest.approx(amax / 127, rel=1e-6)
            checked += 1
    assert checked >= 5


def _qat_style_model():
    """pytorch-quantization's export style: scales as Constant nodes, Q/DQ only before weighted ops (TensorRT
    GPU placement), so the Sigmoid/Mul of SiLU, the Concat inputs and the conv outputs carry no Q/DQ."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(3)
    nodes, inits = [], []

    def const(name, value):
        nodes.append(helper.make_node("Constant", [], [name], value=numpy_helper.from_array(np.asarray(value), name)))
        return name

    def qdq(x, scale, name, axis=None, weight=None):
        s = const(f"{name}_s", np.float32(scale) if axis is None else scale.astype(np.float32))
        z = const(f"{name}_z", np.int8(0) if axis is None else np.zeros(scale.shape, np.int8))
        kw = {} if axis is None else {"axis": axis}
        nodes.append(helper.make_node("QuantizeLinear", [x, s, z], [f"{name}_q"], name=f"{name}_Q", **kw))
        nodes.append(helper.make_node("DequantizeLinear", [f"{name}_q", s, z], [f"{name}_dq"], name=f"{name}_DQ", **kw))
        return f"{name}_dq"

    def wconv(x, w, out, name):
        inits.append(numpy_helper.from_array(w, f"{name}.weight"))
        wq = qdq(f"{name}.weight", np.abs(w.reshape(w.shape[0], -1)).max(1) / 127, f"{name}_w", axis=0)
        pads = [1, 1, 1, 1] if w.shape[2] == 3 else [0] * 4
        nodes.append(helper.make_node("Conv", [x, wq], [out], name=name, pads=pads))

    x = qdq("images", 1 / 127, "in")
    wconv(x, conv_weight(rng, 8, 3, 3), "c0", "conv0")
    nodes += [helper.make_node("Sigmoid", ["c0"], ["s0"], name="sig0"),
              helper.make_node("Mul", ["c0", "s0"], ["a0"], name="mul0")]
    wconv(qdq("a0", 0.05, "a0"), conv_weight(rng, 8, 8, 3), "c1", "conv1")
    nodes += [helper.make_node("Sigmoid", ["c1"], ["s1"], name="sig1"),
              helper.make_node("Mul", ["c1", "s1"], ["a1"], name="mul1")]
    nodes.append(helper.make_node("Concat", ["a0", "a1"], ["cat"], name="cat", axis=1))
    wconv(qdq("cat", 0.07, "cat"), conv_weight(rng, 4, 16, 1), "out", "conv_out")
    return make_model(nodes, [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 8, 8])],
                      [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 4, 8, 8])], inits)


def test_infers_the_scales_qdq_placement_leaves_out():
    result = translate_model(_qat_style_model())
    s = result.scales
    assert s["images"] == float32(1 / 127) and s["a0"] == float32(0.05) and s["cat"] == float32(0.07)
    assert s["s0"] == s["s1"] == SIGMOID_SCALE  # Sigmoid output: range [0, 1]
    assert s["a1"] == s["cat"]  # Concat input without Q/DQ takes the Concat output's scale
    assert s["c1"] == s["a1"]  # SiLU input takes the SiLU output's range (Mul backwards)
    assert s["c0"] == s["a0"]
    assert set(result.read) == {"images", "a0", "cat"}
    assert result.unscaled == {}  # every activation that DLA needs has a scale; `out` is a network output
    assert not result.weight_mismatch


def test_model_without_qdq_is_refused_and_nothing_written(tmp_path):
    import onnx

    onnx.save(silu_concat_model(), str(tmp_path / "float.onnx"))
    with pytest.raises(EdgeqError, match="no QuantizeLinear/DequantizeLinear") as info:
        translate(tmp_path / "float.onnx", tmp_path / "out")
    assert "\n" not in str(info.value) and "Fix:" in str(info.value)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_qdq_without_constant_scales_is_refused(tmp_path, capsys):
    import onnx
    from onnx import TensorProto, helper

    nodes = [helper.make_node("QuantizeLinear", ["x", "s"], ["q"], name="Q"),
             helper.make_node("DequantizeLinear", ["q", "s"], ["y"], name="DQ")]
    model = make_model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4]),
                               helper.make_tensor_value_info("s", TensorProto.FLOAT, [])],
                       [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 4, 4])], [])
    onnx.save(model, str(tmp_path / "noscale.onnx"))
    code = main([str(tmp_path / "noscale.onnx"), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and "has no constant scale" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_edgeq_translate_command_writes_all_three_files(tmp_path, capsys):
    """`edgeq translate` is contributed by the TensorRT backend through the plugin command hook."""
    import onnx

    from edgeq.cli import main as edgeq_main

    onnx.save(_qat_style_model(), str(tmp_path / "qat.onnx"))
    assert edgeq_main(["translate", str(tmp_path / "qat.onnx"), "--out", str(tmp_path / "t"),
                       "--trt-version", "10.3"]) == 0
    names = sorted(p.name for p in (tmp_path / "t").iterdir())
    assert names == ["qat-noqdq.onnx", "qat-precision.json", "qat.cache"]
    assert parse_cache(tmp_path / "t" / "qat.cache").scales["images"] == float32(1 / 127)


def test_tensorrt_11_translation_types_a_qat_qdq_graph_and_refuses_one_without_qdq(tmp_path, capsys):
    """`--tensorrt 11`: the QAT Q/DQ graph becomes TensorRT 11.4.1's strongly typed DLA graph (INT8 input, the
    same scales as the cache path, FP16 outputs) that computes what the cache path's emulation computes; a QAT
    ONNX without Q/DQ has no INT8 for TensorRT 11 (no calibrator): one line, exit 2, nothing written."""
    import onnx
    import onnxruntime as ort
    from edgeq_tensorrt.emulate import emulation_model, with_float_input
    from onnx import TensorProto

    from edgeq.cli import main as edgeq_main

    onnx.save(_qat_style_model(), str(tmp_path / "qat.onnx"))
    assert edgeq_main(["translate", str(tmp_path / "qat.onnx"), "--out", str(tmp_path / "t"), "--tensorrt", "11"]) == 0
    typed = onnx.load(str(tmp_path / "t" / "qat-trt11.onnx"))
    assert typed.graph.input[0].type.tensor_type.elem_type == TensorProto.INT8
    assert {o.type.tensor_type.elem_type for o in typed.graph.output} == {TensorProto.FLOAT16}
    result = translate_model(_qat_style_model())
    cache_path = emulation_model(result.model, result.scales, result.fp16_nodes)
    x = np.random.default_rng(0).random((1, 3, 8, 8), dtype=np.float32)

    def run(model):
        session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        return session.run(None, {session.get_inputs()[0].name: x})[0].astype(np.float32)

    np.testing.assert_allclose(run(with_float_input(typed)), run(cache_path), atol=2e-2)
    onnx.save(silu_concat_model(), str(tmp_path / "float.onnx"))
    code = edgeq_main(["translate", str(tmp_path / "float.onnx"), "--out", str(tmp_path / "u"), "--tensorrt", "11"])
    err = capsys.readouterr().err
    assert code == 2 and "TensorRT 11 builds INT8 only from Q/DQ nodes" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "u").exists()
