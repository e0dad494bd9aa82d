"""OpenVINO's accuracy recovery with the real NNCF: the budget-driven search keeps the one ruinous layer in FP32
(ignored scope) and comes back under budget; calibration methods change the FakeQuantize ranges."""

import json

import numpy as np
import pytest
from planted_models import OUTLIER_LAYER

pytest.importorskip("openvino")
pytest.importorskip("nncf")


def _export(cli, out, *extra, data):
    return cli("export", "--target", "openvino", "--data", data, "--calib-images", 24, "--val-images", 40,
               "--out", out, "--no-progress", "--set", "options.compare_attached_head=false", "--set",
               "evaluation.latency_runs=3", "--set", "evaluation.batches=[1]", "--set", "analysis.metric_images=8",
               "--set", "analysis.map_layers=3", "--set", "analysis.map_images=24", *extra)


def _quantized_inputs(xml):
    """ONNX names of the ops whose input comes through a FakeQuantize (a Conv with bias is split in OpenVINO into
    `<name>/WithoutBiases` and an Add)."""
    from edgeq_openvino.runner import import_openvino

    model = import_openvino().Core().read_model(str(xml))
    return {op.get_friendly_name().removesuffix("/WithoutBiases") for op in model.get_ops()
            if any(i.get_source_output().get_node().get_type_name() == "FakeQuantize" for i in op.inputs())}


def test_search_keeps_the_ruinous_layer_in_fp32_and_meets_the_budget(cli, tmp_path, outlier_pt, small_data):
    out = tmp_path / "ov"
    code, _, err = _export(cli, out, "--model", outlier_pt, "--max-drop", "1.0", data=small_data)
    assert code == 0, err
    report = json.loads((out / "report.json").read_text())
    search = report["search"]
    assert search["steps"][0]["drop_map50_95"] > 10.0
    # NNCF sees the SiLU that makes the outlier tensor as one Swish (edgeq reads the ONNX through OpenVINO's
    # converter), so the tensor is quantized once, at the conv it feeds: that conv ranks first and is kept
    assert search["ranked"][0] == OUTLIER_LAYER
    chosen = next(s for s in search["steps"] if s["artifact"] == search["chosen"])
    assert chosen["drop_map50_95"] <= 1.0 and OUTLIER_LAYER in chosen["kept"]
    assert chosen["latency_ms"] > 0  # OpenVINO runs here: every step is timed beside the FP32 IR
    # the search changed the artifact: in the chosen IR the layer reads a float input, in the default it did not
    assert OUTLIER_LAYER in _quantized_inputs(out / "openvino" / "openvino-int8" / "model.xml")
    assert OUTLIER_LAYER not in _quantized_inputs(out / chosen["path"])
    assert "fp32 (NNCF ignored scope)" in (out / "report.md").read_text()


def test_calibration_method_changes_the_ranges_and_entropy_is_refused(cli, tmp_path, small_data):
    from edgeq_openvino.runner import import_openvino

    ov = import_openvino()
    highs = {}
    for method in ("minmax", "percentile-99.99"):
        out = tmp_path / method
        code, _, err = _export(cli, out, "--set", f"calibration.method={method}", data=small_data)
        assert code == 0, err
        report = json.loads((out / "report.json").read_text())
        assert report["calibration"]["used"] == method and "native: NNCF" in report["calibration"]["how"]
        model = ov.Core().read_model(str(out / "openvino" / "openvino-int8" / "model.xml"))
        highs[method] = np.array([float(op.input_value(2).get_node().get_data().max()) for op in model.get_ops()
                                  if op.get_type_name() == "FakeQuantize" and op.get_output_element_type(0).is_real()
                                  and op.input_value(0).get_node().get_type_name() != "Constant"])
    assert len(highs["minmax"]) == len(highs["percentile-99.99"]) > 20
    assert np.all(highs["percentile-99.99"] <= highs["minmax"] + 1e-4)  # percentiles clip, min-max never does
    assert np.mean(highs["percentile-99.99"] < highs["minmax"] - 1e-4) > 0.5
    code, _, err = _export(cli, tmp_path / "kl", "--set", "calibration.method=entropy", data=small_data)
    assert code == 2 and "does not offer calibration method 'entropy' (NNCF has no KL-divergence" in err


def test_nncf_sees_silu_as_one_swish(cli, tmp_path, small_data):
    """Nothing inside a SiLU is quantized: the INT8 IR has Swish ops and no FakeQuantize reads a Sigmoid."""
    from edgeq_openvino.runner import import_openvino

    out = tmp_path / "ov"
    code, _, err = _export(cli, out, data=small_data)
    assert code == 0, err
    model = import_openvino().Core().read_model(str(out / "openvino" / "openvino-int8" / "model.xml"))
    types = [op.get_type_name() for op in model.get_ops()]
    assert types.count("Swish") > 20
    assert not [op for op in model.get_ops() if op.get_type_name() == "FakeQuantize"
                and op.input_value(0).get_node().get_type_name() == "Sigmoid"]
