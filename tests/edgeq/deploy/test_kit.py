"""The deploy kit with a small real target (ONNX Runtime): what the kit holds, and its infer.py, run as a user
would, printing what edgeq's evaluator decodes on the same image."""

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
from ort_testlib import toy_plugins

import edgeq.backend as backend_module


@pytest.fixture(autouse=True)
def test_backends(monkeypatch):
    monkeypatch.setattr(backend_module, "discover", toy_plugins)


@pytest.fixture
def kit(cli, tmp_path, demo_pt, small_data):
    code, _, err = cli("export", "--target", "ort-int8", "--out", tmp_path / "out", "--no-progress", "--model",
                       demo_pt, "--imgsz", 320, "--data", small_data, "--calib-images", 16, "--val-images", 8,
                       "--set", "evaluation.latency_runs=0", "--set", "options.quantize=false")
    assert code == 0, err
    return tmp_path / "out" / "ort-int8"


def test_kit_holds_the_host_side_and_says_how_to_deploy(kit):
    from edgeq import hostside

    assert (kit / "hostside.py").read_text() == Path(hostside.__file__).read_text()  # the evaluator's own decoder
    deploy = json.loads((kit / "deploy.json").read_text())
    evaluation = deploy.pop("evaluation")
    assert deploy == {"target": "ort-int8", "imgsz": 320, "default": "model-int8.onnx", "artifacts": [
        {"name": "ort-int8", "file": "model-int8.onnx", "layout": "pixel", "precision": "int8",
         "role": "deployable", "status": "emulated", "device_files": [], "files": ["model-int8.onnx"],
         "sha256": hashlib.sha256((kit / "model-int8.onnx").read_bytes()).hexdigest()}]}
    # what infer.py --validate scores: the report's evaluation set, image by image, with the evaluator's thresholds
    report = json.loads((kit.parent / "report.json").read_text())
    assert evaluation["sha256"] == report["data"]["evaluation_set"]["sha256"] and len(evaluation["images"]) == 8
    assert (evaluation["conf"], evaluation["iou"], evaluation["max_det"], evaluation["split"]) == (0.001, 0.7, 300, "val")
    text = (kit / "DEPLOY.md").read_text()
    for section in ("## Artifacts", "## What to copy to the device", "## On the device", "## Input",
                    "## Outputs and decoding"):
        assert section in text
    assert "| `model-int8.onnx` (default) | int8 | pixel | emulated |" in text
    assert "echo nothing to build" in text and "padded centred with grey 114" in text
    assert json.loads((kit / "head.json").read_text())["nc"] == 6


def test_infer_script_prints_the_evaluators_detections(kit, small_data):
    from deploy_testlib import evaluator_detections, parse_detections

    from edgeq.data import load_dataset
    from edgeq.runners.onnxruntime import OnnxRuntimeRunner

    image = min(load_dataset(small_data).images("val"))
    run = subprocess.run([sys.executable, str(kit / "infer.py"), str(image), "--conf", "0.05"],
                         capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stderr
    printed = parse_detections(run.stdout)
    expected = evaluator_detections(OnnxRuntimeRunner(kit / "model-int8.onnx"), kit, image, conf=0.05)
    assert len(printed) == len(expected) > 0
    for got, want in zip(printed, expected):
        assert got[0] == want[0] and abs(got[1] - want[1]) < 1e-3
        assert max(abs(a - b) for a, b in zip(got[2:], want[2:])) < 0.06  # printed to 0.1 px


def test_infer_script_bad_image_is_one_line(kit, tmp_path):
    run = subprocess.run([sys.executable, str(kit / "infer.py"), str(tmp_path / "missing.jpg")],
                         capture_output=True, text=True, check=False)
    assert run.returncode == 2 and run.stderr.strip() == f"infer.py: error: image '{tmp_path}/missing.jpg' does not exist"
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    run = subprocess.run([sys.executable, str(kit / "infer.py"), str(tmp_path / "broken.jpg")],
                         capture_output=True, text=True, check=False)
    assert run.returncode == 2 and run.stderr.strip().splitlines()[-1].startswith("infer.py: error: cannot read")
