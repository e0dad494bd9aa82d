"""Rule tables and checks of the TFLite family: no TensorFlow needed (flatbuffer parsing is LiteRT's schema)."""

from __future__ import annotations

from pathlib import Path

import pytest
from edgeq_tflite.graph import TFLiteGraph
from edgeq_tflite.optable import RULES, build_op_table

from edgeq.rules import Layer, RuleTable, Severity, TensorInfo

ACTIVATION_FIX = "swap the activation to ReLU6 and fine-tune with distillation from this model (edgeq adapt)"


@pytest.mark.parametrize("table", sorted(p.name for p in RULES.glob("*.yaml")))
def test_every_table_loads_with_fixes(table: str) -> None:
    loaded = RuleTable.load(RULES / table)
    assert loaded.target == table.removesuffix(".yaml").removesuffix("-onnx")
    assert loaded.rules
    for rule in loaded.rules:
        assert rule.fix.strip() and rule.message.strip(), rule.id


def test_eight_tables_two_per_target() -> None:
    assert sorted(p.name for p in RULES.glob("*.yaml")) == [
        "edgetpu-onnx.yaml", "edgetpu.yaml", "ethos-u-onnx.yaml", "ethos-u.yaml", "nxp-onnx.yaml", "nxp.yaml",
        "tflite-onnx.yaml", "tflite.yaml"]


def test_ethos_u_maps_silu_on_the_npu_with_a_speed_warning() -> None:
    table = build_op_table("ethos-u", _silu_graph())
    assert table.on_accelerator == len(table.rows)  # LOGISTIC and MUL are in Vela's table
    silu = [f for f in table.findings if f.rule == "ethos-u.silu"]
    assert len(silu) == 1 and silu[0].severity is Severity.WARNING and "LOGISTIC" in silu[0].message


def _t(name: str, shape=(1, 20, 20, 16), dtype="int8", scale=(0.1,)) -> TensorInfo:
    return TensorInfo(name, shape, dtype, scale, (0,) * len(scale) if scale else None)


def _layer(index: int, op: str, ins: list[TensorInfo], out: TensorInfo, producers=None, const=(), **attrs) -> Layer:
    return Layer(name=out.name, op=op, attrs={"producers": producers or {}, "const_inputs": tuple(const), **attrs},
                 inputs=tuple(ins), outputs=(out,), index=index)


def _graph(layers: list[Layer], param_bytes: int = 1000) -> TFLiteGraph:
    return TFLiteGraph(path=Path("x.tflite"), layers=layers, inputs=[layers[0].inputs[0]],
                       outputs=[layers[-1].outputs[0]], param_bytes=param_bytes)


def _silu_graph() -> TFLiteGraph:
    x, w, b = _t("x"), _t("w", (16, 3, 3, 16), scale=(0.1,) * 16), _t("b", (16,), "int32", (0.01,) * 16)
    conv, sig, mul, head = _t("conv"), _t("sig"), _t("mul"), _t("head")
    return _graph([
        _layer(0, "CONV_2D", [x, w, b], conv, const=("w", "b"), fused_activation_function="NONE"),
        _layer(1, "LOGISTIC", [conv], sig, producers={"conv": ("CONV_2D", ("x", "w", "b"))}),
        _layer(2, "MUL", [conv, sig], mul, producers={"conv": ("CONV_2D", ("x", "w", "b")),
                                                     "sig": ("LOGISTIC", ("conv",))}),
        _layer(3, "CONV_2D", [mul, w, b], head, const=("w", "b"), fused_activation_function="NONE"),
    ])


def test_edgetpu_table_flags_silu_and_partitions_once() -> None:
    table = build_op_table("edgetpu", _silu_graph())
    rows = {r.index: r for r in table.rows}
    assert rows[0].runs_on == "Edge TPU" and rows[1].runs_on == "Edge TPU"  # conv and sigmoid alone are fine
    assert rows[2].runs_on == "CPU" and "SiLU" in rows[2].reason
    assert rows[3].runs_on == "CPU" and "partitions once" in rows[3].reason  # mappable, but after the cut
    assert table.first_unmapped.index == 2
    silu = [f for f in table.findings if f.rule == "edgetpu.silu"]
    assert silu and silu[0].severity is Severity.FALLBACK and silu[0].fix == ACTIVATION_FIX
    assert "#2 MUL" in table.summary()
    assert "| 2 | MUL |" in table.markdown("t")


def test_nxp_maps_per_op_and_only_warns_on_silu_and_per_channel() -> None:
    table = build_op_table("nxp", _silu_graph())
    assert all(r.runs_on == "i.MX 8M Plus NPU" for r in table.rows)  # no partition-once on the VX delegate
    rules = {f.rule: f.severity for f in table.findings}
    assert rules == {"nxp.silu": Severity.WARNING, "nxp.per-tensor": Severity.WARNING}


def test_relu6_graph_maps_whole_on_edgetpu() -> None:
    x, w, b, y, z = _t("x"), _t("w", (16, 3, 3, 16), scale=(0.1,)), _t("b", (16,), "int32", (0.01,)), _t("y"), _t("z")
    graph = _graph([_layer(0, "CONV_2D", [x, w, b], y, const=("w", "b"), fused_activation_function="RELU6"),
                    _layer(1, "MAX_POOL_2D", [y], z, fused_activation_function="NONE")])
    table = build_op_table("edgetpu", graph)
    assert table.on_accelerator == 2 and table.first_unmapped is None and not table.findings


@pytest.mark.parametrize(("op", "attrs", "ins", "out", "rule", "severity"), [
    ("LEAKY_RELU", {}, [_t("x")], _t("y"), "edgetpu.leaky-relu", Severity.FALLBACK),
    ("HARD_SWISH", {}, [_t("x")], _t("y"), "edgetpu.hardswish", Severity.FALLBACK),
    ("CONCATENATION", {"fused_activation_function": "RELU"}, [_t("x"), _t("x2")], _t("y"),
     "edgetpu.fused-activation", Severity.FALLBACK),
    ("SOFTMAX", {}, [_t("x", (1, 4, 525, 16))], _t("y", (1, 4, 525, 16)), "edgetpu.softmax-1d", Severity.FALLBACK),
    ("RESHAPE", {}, [_t("x")], _t("y", (1, 2, 4, 16, 20)), "edgetpu.rank", Severity.FALLBACK),
    ("RESHAPE", {}, [_t("x")], _t("y", (1, 4, 16, 20, 1)), "edgetpu.rank", Severity.FALLBACK),
    ("GATHER", {}, [_t("x")], _t("y"), "edgetpu.supported-op", Severity.FALLBACK),
    ("ADD", {}, [_t("x", dtype="float32", scale=None)], _t("y"), "edgetpu.full-integer", Severity.ERROR),
    ("ADD", {}, [_t("x", (1, None, 20, 16))], _t("y"), "edgetpu.static-shapes", Severity.ERROR),
])
def test_edgetpu_rules_one_by_one(op, attrs, ins, out, rule, severity) -> None:
    table = build_op_table("edgetpu", _graph([_layer(0, op, ins, out, **attrs)]))
    found = {f.rule: f.severity for f in table.findings}
    assert found.get(rule) is severity, found
    assert table.rows[0].runs_on == ("refused" if severity is Severity.ERROR else "CPU")


def test_edgetpu_parameter_cache_is_a_model_level_warning() -> None:
    x, y = _t("x"), _t("y")
    table = build_op_table("edgetpu", _graph([_layer(0, "ADD", [x], y)], param_bytes=9_000_000))
    cache = [f for f in table.findings if f.rule == "edgetpu.on-chip-cache"]
    assert cache and cache[0].severity is Severity.WARNING and cache[0].where == "model"
    assert table.rows[0].runs_on == "Edge TPU"  # a warning does not move ops


def test_nxp_refuses_half_pixel_nearest_resize() -> None:
    table = build_op_table("nxp", _graph([_layer(0, "RESIZE_NEAREST_NEIGHBOR", [_t("x")], _t("y", (1, 40, 40, 16)),
                                                 half_pixel_centers=True, align_corners=False)]))
    assert [f.rule for f in table.findings] == ["nxp.resize-half-pixel"]
    assert table.rows[0].runs_on == "refused"
    ok = build_op_table("nxp", _graph([_layer(0, "RESIZE_NEAREST_NEIGHBOR", [_t("x")], _t("y", (1, 40, 40, 16)),
                                              half_pixel_centers=False)]))
    assert not ok.findings


def test_tflite_cpu_table_runs_everything() -> None:
    table = build_op_table("tflite", _silu_graph())
    assert table.on_accelerator == 4 and not table.findings


def test_compiler_log_parsing() -> None:
    from edgeq_tflite.edgetpu import parse_log

    text = """Edge TPU Compiler version 16.0.384591198

Model compiled successfully in 1235 ms.

Input model: m.tflite
Input size: 3.05MiB
Output model: m_edgetpu.tflite
Output size: 3.33MiB
On-chip memory used for caching model parameters: 3.09MiB
On-chip memory remaining for caching model parameters: 4.39MiB
Off-chip memory used for streaming uncached model parameters: 0.00B
Number of Edge TPU subgraphs: 1
Total number of operations: 112
Operation log: m_edgetpu.log

Operator                       Count      Status

CONV_2D                        63         Mapped to Edge TPU
CONCATENATION                  13         Mapped to Edge TPU
Number of operations that will run on Edge TPU: 112
Number of operations that will run on CPU: 0
"""
    got = parse_log(text)
    assert got["compiler_version"] == "16.0.384591198"
    assert got["on_chip_param_memory"] == "3.09MiB" and got["off_chip_param_memory"] == "0.00B"
    assert got["ops_on_edgetpu"] == 112 and got["ops_on_cpu"] == 0 and got["edgetpu_subgraphs"] == 1
    assert got["op_status"][0] == {"op": "CONV_2D", "count": 63, "status": "Mapped to Edge TPU"}


def test_compile_script_holds_the_exact_command(tmp_path: Path) -> None:
    from edgeq_tflite.edgetpu import write_script

    for name in ("a.tflite", "b.tflite", "a.tflite"):
        script = write_script(tmp_path / name)
    lines = script.read_text().splitlines()
    assert lines.count("edgetpu_compiler -s -o . a.tflite") == 1
    assert "edgetpu_compiler -s -o . b.tflite" in lines
    assert script.stat().st_mode & 0o111


@pytest.mark.parametrize(("attrs", "flagged"), [
    ({"mode": "nearest", "coordinate_transformation_mode": "asymmetric"}, False),  # what PyTorch exports
    ({"mode": "nearest", "coordinate_transformation_mode": "half_pixel"}, True),
    ({"mode": "nearest"}, True),  # ONNX's default coordinate mode is half_pixel
    ({}, True),  # ... and its default mode nearest
    ({"mode": "linear", "coordinate_transformation_mode": "half_pixel"}, False),  # bilinear is not refused
])
def test_nxp_source_rule_on_onnx_resize(attrs, flagged) -> None:
    from edgeq_tflite import predicates  # noqa: F401

    table = RuleTable.load(RULES / "nxp-onnx.yaml")
    layer = Layer(name="up", op="Resize", attrs=attrs, inputs=(TensorInfo("x", (1, 16, 20, 20)),),
                  outputs=(TensorInfo("y", (1, 16, 40, 40)),))
    assert bool([f for f in table.evaluate([layer]) if f.rule == "nxp.resize-half-pixel"]) is flagged



@pytest.mark.parametrize("target, flagged", [("edgetpu", {"topk", "gather"}), ("nxp", {"topk"})])
def test_selection_inside_the_onnx_is_flagged_before_conversion(target, flagged, topk_selection_onnx) -> None:
    from edgeq_tflite.graph import onnx_layers_with_producers

    table = RuleTable.load(RULES / f"{target}-onnx.yaml")
    found = [f for f in table.evaluate(onnx_layers_with_producers(topk_selection_onnx))
             if f.rule == f"{target}.topk-selection"]
    assert {f.where for f in found} == flagged and all(f.severity is Severity.FALLBACK for f in found)
    assert all("host" in f.fix for f in found)
