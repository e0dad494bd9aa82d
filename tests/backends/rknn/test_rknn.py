"""The rknn family with the real rknn-toolkit2 2.3.2 in its own interpreter (`edgeq toolchains install rknn`, which
the tox env runs first) and its real simulator: the detached-head file keeps the FP32 accuracy where the pixel-head
file collapses, every figure is the simulator's, and bad input is one line (toolchain missing, wrong toolkit
version, rv1106 asked for FP16, an opset above 19, a failure inside the toolkit with its log kept); layers kept out
of INT8 are the toolkit's hybrid quantization, and the --max-drop search repairs the planted outlier with it."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from planted_models import OUTLIER_LAYER

from edgeq.plugin import EdgeqError, Layer, RuleTable

RULES = Path(__file__).parents[3] / "backends" / "edgeq_rknn" / "rules" / "rknn-onnx.yaml"


def _export(cli, out, *extra, data, target="rk3588", model=None):
    chosen = ("--model", model) if model else ()
    return cli("export", "--target", target, *chosen, "--data", data, "--calib-images", 4, "--val-images", 8,
               "--out", out, "--no-progress", *extra)


@pytest.fixture(scope="module")
def demo_export(tmp_path_factory, small_data):
    from edgeq.cli import main

    out = tmp_path_factory.mktemp("rknn") / "out"
    assert main(["export", "--recipe", "rockchip-rk3588", "--data", str(small_data), "--calib-images", "8",
                 "--val-images", "16", "--out", str(out), "--no-progress"]) == 0
    return out, json.loads((out / "report.json").read_text())


def test_the_detached_head_keeps_what_the_pixel_head_loses(demo_export):
    """The seed-003 collapse, on the toolkit's own quantizer and simulator: boxes in pixels and 0..1 scores in one
    INT8 output give every class score 0.0; the body alone, with the decode on the host, keeps FP32's accuracy."""
    out, report = demo_export
    rows = {a["name"]: a for a in report["artifacts"]}
    deployable = rows["rk3588-int8"]
    assert deployable["role"] == "deployable" and deployable["layout"] == "detached"
    assert deployable["precision"] == "int8+fp32-head" and deployable["status"] == "simulated"
    assert deployable["runtime"] == "rknn-toolkit2 2.3.2 simulator" and deployable["latency_ms"] is None
    assert deployable["drop_map50_95"] < 1.5
    assert rows["rk3588-int8-pixel-head"]["map50_95"] < 5.0  # measured: 0.00
    normalized = rows["rk3588-int8-normalized-head"]
    assert normalized["role"] == "comparison" and normalized["layout"] == "normalized"
    assert all(a["status"] == "simulated" for a in rows.values() if a["name"].startswith("rk3588"))
    shipped = out / deployable["path"]
    assert shipped.read_bytes()[:4] == b"RKNN" and shipped.stat().st_size > 1e6


def test_the_simulator_ran_the_shipped_file_and_the_logs_are_kept(demo_export):
    out, _ = demo_export
    simulator = (out / "logs" / "rk3588-int8-simulator.log").read_text()
    assert "the rebuilt model is the shipped" in simulator and "simulated 16 images" in simulator
    build = (out / "logs" / "rk3588-int8-build.log").read_text()
    assert '"target_platform": "rk3588"' in build and '"quantized_method": "channel"' in build
    assert '"mean_values": [[0.0, 0.0, 0.0]], "std_values": [[255.0, 255.0, 255.0]]' in build


def test_the_deploy_kit_runs_on_rknnlite(demo_export):
    out, _ = demo_export
    kit = out / "rk3588"
    deploy = json.loads((kit / "deploy.json").read_text())
    assert deploy["default"] == "model-int8.rknn" and (kit / "hostside.py").is_file()
    assert "RKNNLite" in (kit / "infer.py").read_text()
    guide = (kit / "DEPLOY.md").read_text()
    assert "librknnrt" in guide and "rknn-toolkit-lite2 2.3.2" in guide and "uint8 NHWC" in guide


def test_calibration_method_and_granularity_reach_the_toolkit(cli, tmp_path, small_data):
    code, _, err = _export(cli, tmp_path / "out", "--set", "calibration.method=entropy", "--set",
                           "options.per_channel=false", "--set", "options.compare_heads=false", data=small_data)
    assert code == 0, err
    build = (tmp_path / "out" / "logs" / "rk3588-int8-build.log").read_text()
    assert '"quantized_algorithm": "kl_divergence"' in build and '"quantized_method": "layer"' in build
    names = [a["name"] for a in json.loads((tmp_path / "out" / "report.json").read_text())["artifacts"]]
    assert "rk3588-int8-pixel-head" not in names and "rk3588-int8" in names


def test_rv1106_refuses_an_fp16_build(cli, tmp_path, small_data):
    code, _, err = _export(cli, tmp_path / "out", "--set", "options.dtype=fp16", data=small_data, target="rv1106")
    assert code == 2 and "Traceback" not in err and not (tmp_path / "out").exists()
    line = err.strip().splitlines()[-1]
    assert "rv1106 does not build options.dtype=fp16" in line and "integers only" in line and "w8a8" in line


def test_a_failure_inside_the_toolkit_is_one_line_with_its_log_kept(cli, tmp_path, small_data):
    """A config the toolkit refuses (an unknown platform) raises inside rknn-toolkit2: one line naming the stage
    and the toolkit's own words, the traceback in the log."""
    from edgeq_rknn import RknnBackend

    profile = RknnBackend.profiles["rk3588"]
    broken = profile.model_copy(update={"platform": "rk9999"})
    RknnBackend.profiles["rk3588"] = broken
    try:
        code, _, err = _export(cli, tmp_path / "out", "--set", "options.compare_heads=false", data=small_data)
    finally:
        RknnBackend.profiles["rk3588"] = profile
    assert code == 2 and "Traceback" not in err
    line = err.strip().splitlines()[-1]
    assert "stage 'rknn-build' failed: ValueError" in line and "Invalid target_platform 'rk9999'" in line
    log = Path(line.split("(log: ")[1].split(")")[0])
    assert log.is_file() and "Traceback" in log.read_text()


def test_a_missing_toolchain_names_the_install_line(tmp_path, small_data):
    env = {k: v for k, v in os.environ.items() if k != "EDGEQ_RKNN_PYTHON"}
    env["EDGEQ_CACHE"] = str(tmp_path / "empty-cache")
    run = subprocess.run([sys.executable, "-m", "edgeq.cli", "export", "--target", "rk3588", "--data",
                          str(small_data), "--out", str(tmp_path / "out")], capture_output=True, text=True,
                         env=env, check=False, timeout=300)
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert "edgeq toolchains install rknn" in run.stderr.strip().splitlines()[-1]


def test_a_toolkit_of_another_version_is_refused(cli, tmp_path, small_data, monkeypatch):
    """An interpreter of the user's (EDGEQ_RKNN_PYTHON) whose rknn-toolkit2 is 2.5.0: refused before converting,
    with why and the reinstall line."""
    own = tmp_path / "own-env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(own)], check=True)
    site = next((own / "lib").glob("python3*/site-packages"))
    dist = site / "rknn_toolkit2-2.5.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: rknn-toolkit2\nVersion: 2.5.0\n")
    monkeypatch.setenv("EDGEQ_RKNN_PYTHON", str(own / "bin" / "python"))
    code, _, err = _export(cli, tmp_path / "out", "--set", "options.compare_heads=false", data=small_data)
    assert code == 2 and "Traceback" not in err
    line = err.strip().splitlines()[-1]
    assert "rknn-toolkit2 2.5.0 is installed" in line and "pinned to 2.3.2" in line
    assert "edgeq toolchains install rknn --force" in line


@pytest.mark.parametrize("opset, refused", [(17, False), (19, False), (21, True)])
def test_the_opset_rule_is_the_toolkits_limit(opset, refused):
    findings = RuleTable.load(RULES).evaluate([Layer(name="model", op="Model", attrs={"opset": opset})])
    assert [f.rule for f in findings] == (["rknn.opset"] if refused else [])


def test_the_op_table_flags_selection_inside_the_graph(topk_selection_onnx):
    from edgeq.plugin import onnx_layers

    findings = RuleTable.load(RULES).evaluate(onnx_layers(topk_selection_onnx))
    assert {f.rule for f in findings} == {"rknn.detection-selection"}
    assert all(f.severity.value == "fallback" for f in findings)


def test_the_search_keeps_the_ruinous_layer_in_float16(cli, tmp_path, outlier_pt, small_data):
    """The planted outlier (one conv's input needs a range of 0..5000) on the toolkit's own quantizer and simulator:
    all-INT8 loses tens of points; the search ranks the conv by emulating the rk3588 scheme and keeps it in float16
    with the toolkit's hybrid quantization, which wins the loss back (measured: 39.7 -> -0.2 points on 16 images;
    keeping the conv without its input, as custom_hybrid alone does, won nothing)."""
    out = tmp_path / "rk"
    code, _, err = _export(cli, out, "--max-drop", "1.0", "--set", "options.compare_heads=false", data=small_data,
                           model=outlier_pt)
    assert code == 0, err
    search = json.loads((out / "report.json").read_text())["search"]
    assert search["steps"][0]["drop_map50_95"] > 5.0 and OUTLIER_LAYER in search["ranked"][:3]
    assert search["higher_precision"].startswith("fp16 (rknn-toolkit2 hybrid quantization")
    chosen = next(s for s in search["steps"] if s["artifact"] == search["chosen"])
    assert OUTLIER_LAYER in chosen["kept"] and chosen["drop_map50_95"] <= 1.0
    assert (out / chosen["path"]).read_bytes()[:4] == b"RKNN"
    step_log = (out / "logs" / f"rk3588-int8-keep{len(chosen['kept'])}-build.log").read_text()
    assert "hybrid quantization:" in step_log and "of them the kept layers' inputs" in step_log
    assert "hybrid quantization:" not in (out / "logs" / "rk3588-int8-build.log").read_text()  # the all-INT8 start


def test_keeping_layers_of_an_fp16_build_is_refused(cli, tmp_path, small_data):
    code, _, err = _export(cli, tmp_path / "out", "--set", "options.dtype=fp16", "--keep-float", OUTLIER_LAYER,
                           data=small_data)
    assert code == 2 and "Traceback" not in err and not (tmp_path / "out").exists()
    assert "options.dtype=fp16 quantizes nothing" in err.strip().splitlines()[-1]


def _silu_conv_chain():
    """x -> Conv a -> SiLU -> Conv b -> SiLU -> y, the way Ultralytics exports a Conv block."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits, x = [], [], "x"
    for name in ("a", "b"):
        inits.append(numpy_helper.from_array(np.ones((3, 3, 1, 1), np.float32), f"w_{name}"))
        nodes += [helper.make_node("Conv", [x, f"w_{name}"], [f"{name}_conv"], name=f"/{name}/conv/Conv"),
                  helper.make_node("Sigmoid", [f"{name}_conv"], [f"{name}_sig"], name=f"/{name}/act/Sigmoid"),
                  helper.make_node("Mul", [f"{name}_conv", f"{name}_sig"], [f"{name}_out"], name=f"/{name}/act/Mul")]
        x = f"{name}_out"
    info = [helper.make_tensor_value_info(t, TensorProto.FLOAT, [1, 3, 8, 8]) for t in ("x", x)]
    return helper.make_graph(nodes, "chain", info[:1], info[1:], inits)


def test_a_kept_silu_conv_takes_its_silu_and_its_inputs_along():
    """What the worker hands the toolkit for --keep-float /b/conv/Conv: the pair ends at b's SiLU output (the NPU
    fuses the two), and the float16 inputs are b's input and the conv output inside a's SiLU that writes it."""
    from edgeq_rknn.backend import hybrid_layers

    kept = hybrid_layers(_silu_conv_chain(), ("/b/conv/Conv",))
    assert kept == {"float16_layers": [["a_out", "b_out"]], "float16_inputs": ["a_out", "a_conv"]}
    assert hybrid_layers(_silu_conv_chain(), ("/a/conv/Conv",))["float16_inputs"] == ["x"]
    with pytest.raises(EdgeqError, match="not a layer of the model"):
        hybrid_layers(_silu_conv_chain(), ("/c/conv/Conv",))


def test_analyze_ranks_layers_with_the_toolkits_own_per_layer_error(cli, tmp_path, outlier_pt, small_data):
    """`edgeq analyze --target rk3588`: the emulated rk3588 scheme ranks the planted outlier first, and
    rknn-toolkit2's accuracy_analysis (its simulator against its float run) sees the same layer (measured: single
    cosine 0.19 there, above 0.999 on the others)."""
    out = tmp_path / "analysis"
    code, _, err = cli("analyze", "--target", "rk3588", "--model", outlier_pt, "--data", small_data,
                       "--calib-images", 4, "--val-images", 8, "--set", "analysis.map_layers=1",
                       "--set", "analysis.toolkit_images=1", "--out", out, "--no-progress")
    assert code == 0, err
    analysis = json.loads((out / "analysis.json").read_text())
    assert analysis["toolkit"]["tool"].startswith("rknn-toolkit2 2.3.2 accuracy_analysis")
    first, *rest = analysis["layers"]
    assert first["name"] == OUTLIER_LAYER and first["toolkit_cosine"] < 0.9
    others = sorted(s["toolkit_cosine"] for s in rest if s["toolkit_cosine"] is not None)
    assert others and others[len(others) // 2] > 0.99
    assert "toolkit cosine" in (out / "analysis.md").read_text()
