"""DLA rule table: a model built to break every limit gets each fallback named with its reason; the detached
YOLOv8 body (ReLU6 demo variant) stays wholly on DLA; the TensorRT version gate."""

import numpy as np
import pytest
from edgeq_tensorrt.dla import RULES, check_onnx, check_tensorrt_for_dla
from trt_graphs import make_model, rule_breaker

from edgeq.errors import EdgeqError
from edgeq.rules import RuleTable, Severity


def _by_layer(report):
    found = {}
    for f in report.findings:
        found.setdefault(f.where, []).append(f)
    return found


def test_rule_table_loads_and_every_rule_has_a_fix():
    table = RuleTable.load(RULES)
    assert table.target == "dla" and len(table.rules) >= 15
    assert all(rule.fix for rule in table.rules)


@pytest.mark.parametrize("layer, rule, words", [
    ("conv_kernel33", "dla.conv-kernel", "1-32"),
    ("conv_stride9", "dla.conv-stride", "1-8"),
    ("div", "dla.elementwise-op", "Div"),
    ("concat_axis2", "dla.concat-channel-axis", "axis 2"),
    ("unsqueeze_5d", "dla.max-rank", "rank 5"),
    ("squeeze_5d", "dla.max-rank", "rank 5"),
    ("resize_bilinear_x8", "dla.resize-scales", "linear x8"),
    ("pool_kernel9", "dla.pool-kernel", "1-8"),
])
def test_every_broken_layer_falls_back_with_its_reason(layer, rule, words):
    report = check_onnx(rule_breaker())
    findings = [f for f in _by_layer(report)[layer] if f.rule == rule]
    assert findings and findings[0].severity is Severity.FALLBACK, layer
    assert words in findings[0].message and findings[0].fix
    placement = {p.layer.name: p for p in report.placements}[layer]
    assert placement.device == "GPU" and any(rule.split(".")[1] in r or words in r for r in placement.reasons)


def test_dynamic_input_is_an_error_on_every_layer():
    report = check_onnx(rule_breaker())
    errors = {f.where for f in report.findings if f.severity is Severity.ERROR and f.rule == "dla.static-shapes"}
    assert errors == {p.layer.name for p in report.placements}


def test_nothing_in_the_rule_breaker_is_silently_on_dla():
    report = check_onnx(rule_breaker())
    assert not [p for p in report.placements if p.device == "DLA"]
    assert report.subgraphs == 0


def test_yolo_relu6_body_runs_wholly_on_dla(yolo_onnx):
    import onnx

    body, _, _ = yolo_onnx["relu6"]
    report = check_onnx(onnx.load(str(body)))
    assert not report.fallbacks, [p.reasons for p in report.fallbacks]
    assert report.subgraphs == 1
    assert not [f for f in report.findings if f.severity is not Severity.WARNING]
    # the documented limit it meets: C2f's chunk is a Slice, FP16-only on DLA (stays on DLA, reformatted)
    assert {f.rule for f in report.findings} == {"dla.slice-fp16"}
    ops = {p.layer.op for p in report.placements}
    assert {"Conv", "Clip", "Concat", "MaxPool", "Resize", "Add", "Slice"} <= ops


def test_yolo_with_head_attached_falls_back_on_the_head(yolo_onnx):
    import onnx

    _, full, _ = yolo_onnx["relu6"]
    report = check_onnx(onnx.load(str(full)))
    assert report.fallbacks and all(p.layer.name.startswith("edgeq_head/") for p in report.fallbacks)
    assert report.subgraphs >= 1
    assert any("below 4-D" in r or "4-D" in r for p in report.fallbacks for r in p.reasons)


def test_concat_with_unequal_scales_falls_back_and_equal_ones_pass():
    from onnx import TensorProto, helper

    model = make_model([helper.make_node("Concat", ["a", "b"], ["c"], name="cat", axis=1)],
                       [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 4, 8, 8]) for n in "ab"],
                       [helper.make_tensor_value_info("c", TensorProto.FLOAT, [1, 8, 8, 8])], [])
    bad = check_onnx(model, {"a": 0.1, "b": 0.2, "c": 0.2})
    assert [f.rule for f in bad.findings] == ["dla.concat-equal-scales"] and bad.fallbacks
    assert "0.1 to 0.2" in bad.findings[0].message
    good = check_onnx(model, {"a": 0.2, "b": 0.2, "c": 0.2})
    assert not good.findings and not good.fallbacks


def test_hwc4_input_allows_at_most_four_groups_and_channels():
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.ones((8, 1, 3, 3), np.float32), "w")
    model = make_model([helper.make_node("Conv", ["x", "w"], ["y"], name="dw", group=8, pads=[1] * 4)],
                       [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 8, 8])],
                       [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 8, 8])], [w])
    assert [f.rule for f in check_onnx(model).findings] == ["dla.conv-groups-hwc4"]
    assert not check_onnx(model, input_format="chw32").findings


def test_padding_must_stay_below_the_kernel():
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.ones((4, 4, 3, 3), np.float32), "w")
    model = make_model([helper.make_node("Conv", ["x", "w"], ["y"], name="overpad", pads=[3, 3, 3, 3])],
                       [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])],
                       [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 12, 12])], [w])
    assert "dla.conv-padding-below-kernel" in {f.rule for f in check_onnx(model, input_format="chw32").findings}


def test_layer_table_names_device_precision_and_the_tensorrt_11_warning():
    report = check_onnx(rule_breaker())
    text = report.markdown("t")
    assert "TensorRT 11.0-11.3 have no DLA" in text and "tensorrt11/ with TensorRT 11.4.1+" in text
    assert "| `conv_stride9` | Conv | GPU |" in text


@pytest.mark.parametrize("version", ["11.0", "11.1.0.5", "11.3.1"])
def test_tensorrt_11_0_to_11_3_is_refused_for_dla(version):
    with pytest.raises(EdgeqError, match="JetPack's TensorRT 10.x") as info:
        check_tensorrt_for_dla(version)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("version", ["10.3.0", "8.6.2", "11.4.0"])
def test_other_tensorrt_versions_pass(version):
    assert check_tensorrt_for_dla(version) == version


def test_selection_inside_the_graph_falls_back_with_the_host_fix(topk_selection_onnx):
    report = check_onnx(topk_selection_onnx)
    by_layer = _by_layer(report)
    for layer in ("topk", "gather"):
        found = [f for f in by_layer[layer] if f.rule == "dla.topk-selection"]
        assert found and found[0].severity is Severity.FALLBACK and "host" in found[0].fix
        assert not [f for f in by_layer[layer] if f.rule == "dla.supported-op"]  # reported once, with its fix
