"""The scheme emulation: which inputs a layer quantizes, and what quantizing does to the numbers."""

import numpy as np
import onnx
import pytest
from analyze_testlib import scheme

from edgeq.analyze.fakequant import QuantGraph, fake_quant, quantize_weight
from edgeq.analyze.ranges import Range
from edgeq.analyze.sensitivity import run_outputs
from edgeq.head import HEAD_PREFIX


def _images(n=2, size=320):
    rng = np.random.default_rng(0)
    return [rng.random((1, 3, size, size), dtype=np.float32) for _ in range(n)]


def test_layers_follow_the_scheme(demo_onnx):
    model = onnx.load(str(demo_onnx.full))
    fused = QuantGraph(model, scheme())
    assert not any(n.endswith("act/Mul") for n in fused.layers)  # SiLU is one op: its Mul is not a layer
    body = fused.candidates(head_quantized=False)
    assert body and all(fused.layers[n].op == "Conv" and not n.startswith(HEAD_PREFIX) for n in body)
    assert any(n.startswith(HEAD_PREFIX) for n in fused.candidates(head_quantized=True))
    every = QuantGraph(model, scheme(ops=("*",), fused_silu=False))
    assert any(n.endswith("act/Mul") for n in every.layers) and any(n.endswith("act/Sigmoid") for n in every.layers)
    conv = fused.layers["/model.0/conv/Conv"]
    assert conv.activation_inputs == ("images",) and conv.weight is not None


def test_nothing_quantized_is_the_fp32_model_and_one_layer_changes_the_outputs(demo_onnx):
    qgraph = QuantGraph(onnx.load(str(demo_onnx.full)), scheme())
    images = _images()
    ranges = {t: Range(-1.0, 1.0) for t in qgraph.activation_tensors()}
    reference = run_outputs(qgraph.model, images, 320)
    same = run_outputs(fake_quant(qgraph, ranges, []), images, 320)
    assert all(np.array_equal(a, b) for a, b in zip(reference, same))
    changed = run_outputs(fake_quant(qgraph, ranges, ["/model.2/cv1/conv/Conv"]), images, 320)
    assert max(float(np.abs(a - b).max()) for a, b in zip(reference, changed)) > 1e-4


def test_unified_concat_inputs_share_one_range(demo_onnx):
    qgraph = QuantGraph(onnx.load(str(demo_onnx.full)), scheme())
    concat = next(n for n, info in qgraph.layers.items() if info.op == "Concat" and len(info.activation_inputs) > 1)
    ranges = {t: Range(-1.0 * (i + 1), 1.0 * (i + 1)) for i, t in enumerate(qgraph.activation_tensors())}
    model = fake_quant(qgraph, ranges, [concat])
    scales = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer if i.name.endswith("_scale")}
    assert len({float(v) for v in scales.values()}) == 1 and len(scales) == len(qgraph.layers[concat].activation_inputs)


@pytest.mark.parametrize("granularity", ["per-channel", "per-tensor"])
def test_weight_rounding(granularity):
    rng = np.random.default_rng(0)
    w = rng.normal(0, 1, (8, 4, 3, 3)).astype(np.float32) * np.logspace(-2, 0, 8, dtype=np.float32)[:, None, None, None]
    q = quantize_weight(w, granularity)
    small_channel_error = float(np.abs(q[0] - w[0]).max())
    if granularity == "per-channel":  # each channel's own scale: the small channel keeps its detail
        assert small_channel_error < 0.01 * float(np.abs(w[0]).max())
    else:  # one scale for all: the small channel is rounded with the large channel's step
        assert small_channel_error > 0.1 * float(np.abs(w[0]).max())
