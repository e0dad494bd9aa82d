"""The TensorRT family's accuracy recovery with the real ModelOpt: the search keeps the ruinous layer out of INT8
(GPU: no Q/DQ; DLA: FP16 with the conv + SiLU that writes its input), and edgeq-supplied percentile ranges."""

import json

import numpy as np
import onnx
import pytest
from onnx import numpy_helper
from planted_models import OUTLIER_LAYER

pytest.importorskip("modelopt")


def _export(cli, out, target, *extra, model, data):
    return cli("export", "--target", target, "--model", model, "--data", data, "--calib-images", 24,
               "--val-images", 40, "--out", out, "--no-progress", "--set", "analysis.metric_images=8", "--set",
               "analysis.map_layers=3", "--set", "analysis.map_images=24", "--set", "options.tensorrt=10", *extra)


def _qdq_inputs(path):
    """Names of the nodes that read a DequantizeLinear output (their input is INT8)."""
    model = onnx.load(str(path))
    dequantized = {o for n in model.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    return {n.name for n in model.graph.node if n.input and n.input[0] in dequantized}


@pytest.mark.parametrize("target", ["tensorrt", "dla"])
def test_search_keeps_the_ruinous_layer_out_of_int8(cli, tmp_path, target, outlier_pt, small_data):
    out = tmp_path / target
    extra = ("--set", "options.fp16_last_convs=false", "--set", "options.compare_all_int8=false") \
        if target == "dla" else ()
    code, _, err = _export(cli, out, target, "--max-drop", "1.0", *extra, model=outlier_pt, data=small_data)
    assert code == 0, err
    search = json.loads((out / "report.json").read_text())["search"]
    assert search["steps"][0]["drop_map50_95"] > 10.0 and search["ranked"][0] == OUTLIER_LAYER
    chosen = search["steps"][-1]
    assert chosen["artifact"] == search["chosen"] and chosen["drop_map50_95"] <= 1.0
    assert chosen["kept"] == [OUTLIER_LAYER]
    if target == "tensorrt":  # the Q/DQ ONNX itself changed: the layer's input is no longer quantized
        assert OUTLIER_LAYER in _qdq_inputs(out / "tensorrt" / "tensorrt10" / "model-int8-qdq.onnx")
        assert OUTLIER_LAYER not in _qdq_inputs(out / chosen["path"])
    else:  # the build script runs it (and the conv + SiLU writing its input) in FP16
        script = (out / "search" / "step-1" / "dla" / "tensorrt10" / "build_dla.sh").read_text()
        assert f"{OUTLIER_LAYER}:fp16" in script and "/cv2.0/cv2.0.0/act/Mul:fp16" in script
        precision = json.loads((out / "search" / "step-1" / "dla" / "tensorrt10" / "model-precision.json").read_text())
        assert OUTLIER_LAYER in precision["fp16_layers"]
        # one calibration for the export and its steps: the kept layer keeps its scales (FP16 by layer precision)
        assert err.count("dla: calibrating INT8 scales") == 1
        step_cache = out / "search" / "step-1" / "dla" / "tensorrt10" / "model.cache"
        assert step_cache.read_bytes() == (out / "dla" / "tensorrt10" / "model.cache").read_bytes()


def test_percentile_ranges_replace_modelopt_scales(cli, tmp_path, demo_pt, small_data):
    scales = {}
    for method in ("minmax", "percentile-99.99"):
        out = tmp_path / method
        code, _, err = _export(cli, out, "tensorrt", "--set", f"calibration.method={method}", model=demo_pt,
                               data=small_data)
        assert code == 0, err
        report = json.loads((out / "report.json").read_text())
        assert report["calibration"]["used"] == method
        model = onnx.load(str(out / "tensorrt" / "tensorrt10" / "model-int8-qdq.onnx"))
        inits = {i.name: i for i in model.graph.initializer}
        scales[method] = {n.input[0]: float(numpy_helper.to_array(inits[n.input[1]]).max())
                          for n in model.graph.node if n.op_type == "QuantizeLinear" and n.input[0] not in inits}
    assert "edgeq ranges" in report["artifacts"][1]["extra"]["calibration_method"]
    shared = sorted(set(scales["minmax"]) & set(scales["percentile-99.99"]))
    ratio = np.array([scales["percentile-99.99"][t] / scales["minmax"][t] for t in shared])
    assert len(shared) > 20 and np.all(ratio <= 1.0 + 1e-3) and np.mean(ratio < 0.98) > 0.5
