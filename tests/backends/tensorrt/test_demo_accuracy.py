"""The demo detector exported to both TensorRT targets end to end through the CLI, with accuracy bounds that
can fail: emulated INT8 against FP32 on the demo val set (the done-when figures, on fewer images)."""

import json

import pytest

pytest.importorskip("modelopt")
pytestmark = pytest.mark.slow

CALIB, VAL = "128", "200"


def _export(tmp_path_factory, recipe, *extra):
    from edgeq.cli import main
    from edgeq.demo import demo_model

    if not demo_model("silu").exists():
        pytest.fail("demo weights missing: edgeq/assets/demo-yolov8n-silu-320.pt")
    out = tmp_path_factory.mktemp(recipe) / "out"
    code = main(["export", "--recipe", recipe, "--out", str(out), "--calib-images", CALIB, "--val-images", VAL,
                 "--no-progress", "--set", "imgsz=320", *extra])
    assert code == 0
    return out, json.loads((out / "report.json").read_text())


@pytest.fixture(scope="module")
def gpu(tmp_path_factory):
    return _export(tmp_path_factory, "jetson-orin-gpu")


@pytest.fixture(scope="module")
def dla(tmp_path_factory):
    return _export(tmp_path_factory, "jetson-agx-orin-dla", "--no-gpu-fallback")


def _by_name(report):
    return {a["name"]: a for a in report["artifacts"]}


def test_gpu_int8_within_0_7_points(gpu):
    out, report = gpu
    ref = report["reference"]["map50_95"]
    assert ref > 60, "the demo detector should be well trained on its own synthetic domain"
    entry = _by_name(report)["tensorrt-int8-qdq"]
    assert entry["status"] == "emulated" and entry["drop_map50_95"] <= 0.7
    typed = _by_name(report)["tensorrt-trt11-int8-qdq-fp16"]  # TensorRT 11: AutoCast's FP16 types, same scales
    assert typed["status"] == "emulated" and typed["drop_map50_95"] <= 0.7
    assert entry["extra"]["merged_quantizers"] > 0
    assert _by_name(report)["tensorrt-int8-engine"]["status"] in ("not-built", "measured")
    assert (out / entry["path"]).exists()


def test_dla_fp16_last_convs_within_1_point_and_all_int8_reported(dla):
    out, report = dla
    names = _by_name(report)
    main = names["dla-int8-fp16-last-convs"]
    assert main["status"] == "emulated" and main["drop_map50_95"] <= 1.0
    assert names["dla-int8"]["map50_95"] is not None  # reported, no bound: this is what FP16 last convs buy
    assert names["dla-engine"]["status"] in ("not-built", "measured")  # measured on a Jetson
    assert "build_dla.sh" in names["dla-engine"]["note"] or names["dla-engine"]["status"] == "measured"
    assert main["extra"]["gpu_fallback_layers"] == 0  # --no-gpu-fallback passed: wholly on DLA
    assert (out / "dla" / "tensorrt10" / "model.cache").read_text().startswith(
        "TRT-100300-EntropyCalibration2\nimages: 3c010204")


def test_tensorrt_11_dla_graph_loses_what_the_cache_path_loses(dla):
    """The strongly typed TensorRT 11.4.1 graph carries the cache's scales as Q/DQ nodes: the same drop, within
    0.05 points, on the same images; each row says which TensorRT builds it."""
    out, report = dla
    names = _by_name(report)
    cache, typed = names["dla-int8-fp16-last-convs"], names["dla-trt11-int8-fp16-last-convs"]
    assert typed["status"] == "emulated" and typed["path"] == "dla/tensorrt11/model.onnx"
    assert abs(typed["drop_map50_95"] - cache["drop_map50_95"]) <= 0.05
    assert cache["note"].startswith("TensorRT 10.x") and typed["note"].startswith("TensorRT 11.x")
    assert names["dla-trt11-engine"]["status"] in ("not-built", "measured")
    deploy = (out / "dla" / "DEPLOY.md").read_text()
    assert "./tensorrt10/build_dla.sh fallback" in deploy and "./tensorrt11/build_dla.sh fallback" in deploy


def test_eval_command_scores_the_detached_dla_emulation(dla, cli):
    out, report = dla
    expected = _by_name(report)["dla-int8"]["map50_95"]
    code, stdout, err = cli("eval", out / "dla" / "tensorrt10" / "emulation" / "dla-int8.onnx", "--layout",
                            "detached", "--head-json", out / "dla" / "tensorrt10" / "model-head.json",
                            "--val-images", VAL, "--no-progress")
    assert code == 0, err
    assert f"| {expected:.2f} |" in stdout
