"""Validation on the device and `edgeq compare`, with a small real target (ONNX Runtime, the toy `ort-int8`): the
kit's `infer.py --validate` run as a user would reproduces the report's figure, and a device record of another
model or another evaluation set is refused in one line naming which."""

import json
import shutil
import subprocess
import sys

import pytest
from ort_testlib import toy_plugins

import edgeq.backend as backend_module


@pytest.fixture(scope="module")
def export(tmp_path_factory, demo_pt, small_data):
    from edgeq.cli import main

    out = tmp_path_factory.mktemp("compare") / "out"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(backend_module, "discover", toy_plugins)
        code = main(["export", "--target", "ort-int8", "--out", str(out), "--no-progress", "--model", str(demo_pt),
                     "--imgsz", "320", "--data", str(small_data), "--calib-images", "16", "--val-images", "8",
                     "--set", "evaluation.latency_runs=0"])
    assert code == 0
    return out


def _validate(kit, data, out, *extra):
    run = subprocess.run([sys.executable, str(kit / "infer.py"), "--validate", str(data), "--out", str(out), *extra],
                         capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stderr
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def device(export, small_data, tmp_path_factory):
    """The kit's own validation, as a device would run it: the record, and where it lies (its .npz beside it)."""
    path = tmp_path_factory.mktemp("device") / "device-validation.json"
    return _validate(export / "ort-int8", small_data, path), path


def test_validate_reproduces_the_reports_figure_on_the_same_images(export, device):
    device, _ = device
    report = json.loads((export / "report.json").read_text())
    entry = next(a for a in report["artifacts"] if a["name"] == "ort-int8")
    assert device["dataset"]["sha256"] == report["data"]["evaluation_set"]["sha256"]
    assert device["dataset"]["images"] == 8 and device["dataset"]["missing"] == 0
    assert abs(device["map50_95"] - entry["map50_95"]) <= 0.05
    assert device["artifact"]["sha256"] == json.loads((export / "ort-int8" / "deploy.json").read_text())[
        "artifacts"][0]["sha256"]
    assert device["protocol"]["metric"].startswith("faster-coco-eval")


def test_compare_prints_both_figures_and_the_outputs_agreement(export, device, cli):
    device, path = device
    assert path.with_suffix(".npz").is_file()
    code, out, err = cli("compare", export / "report.json", path)
    assert code == 0, err
    assert f"| {device['map50_95']:.2f} |" in out and "95% interval of edgeq's drop" in out
    # the same file on the same runtime here: every output of the four saved images equal
    assert "(4 images: " in out and "| output0 | 1x10x2100 | 0 | 100.0% |" in out, out


def test_a_device_record_of_another_evaluation_set_is_refused(export, small_data, tmp_path, cli):
    data = shutil.copytree(small_data.parent, tmp_path / "shapes")  # the same images, other ground truth:
    for label in (data / "labels" / "val").glob("*.txt"):  # every label file one line shorter
        label.write_text("".join(label.read_text().splitlines(keepends=True)[1:]))
    text = (data / "data.yaml").read_text()
    (data / "data.yaml").write_text(text.replace(f"path: {small_data.parent.as_posix()}", f"path: {data.as_posix()}"))
    other = _validate(export / "ort-int8", data / "data.yaml", tmp_path / "device-validation.json")
    code, out, err = cli("compare", export / "report.json", tmp_path / "device-validation.json")
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert err.startswith("edgeq: error: dataset mismatch: the device scored 8 images with evaluation-set sha256 "
                          f"{other['dataset']['sha256'][:12]}")


def test_a_device_record_of_another_model_is_refused(export, small_data, tmp_path, cli):
    kit = shutil.copytree(export / "ort-int8", tmp_path / "kit")
    shutil.copyfile(next(export.glob("*-fp32.onnx")), kit / "model-int8.onnx")  # another model under its name
    _validate(kit, small_data, tmp_path / "device-validation.json")
    code, out, err = cli("compare", export / "report.json", tmp_path / "device-validation.json")
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert err.startswith("edgeq: error: model mismatch: the device's 'model-int8.onnx' has sha256 ")


def test_not_a_device_record_is_one_line(export, cli):
    code, _, err = cli("compare", export / "report.json", export / "report.json")
    assert code == 2 and "is not a device validation" in err and len(err.strip().splitlines()) == 1


def test_an_artifact_scored_on_the_first_images_is_compared_on_them(export, small_data, tmp_path, cli):
    """--fast scores a slow emulation on the first N evaluation images: the kit says N, the device scores those N
    apart (in the evaluator's order, from deploy.json) and compare sets that figure against the report's."""
    from edgeq.data import load_dataset, subsample
    from edgeq.evaluation.evaluator import EvalSet, evaluate
    from edgeq.head import HeadLayout, HeadSpec
    from edgeq.runners.onnxruntime import OnnxRuntimeRunner

    out = shutil.copytree(export, tmp_path / "out")
    deploy = json.loads((out / "ort-int8" / "deploy.json").read_text())
    deploy["artifacts"][0]["evaluation_images"] = 3
    (out / "ort-int8" / "deploy.json").write_text(json.dumps(deploy))
    head = HeadSpec.from_json(out / "ort-int8" / "head.json")
    first = EvalSet(subsample(load_dataset(small_data).images("val"), 8)[:3], head.nc)
    with OnnxRuntimeRunner(out / "ort-int8" / "model-int8.onnx") as runner:
        expected = evaluate(runner, HeadLayout.PIXEL, head, first, progress=False).map50_95
    report = json.loads((out / "report.json").read_text())
    entry = next(a for a in report["artifacts"] if a["name"] == "ort-int8")
    entry["map50_95"], entry["extra"] = round(expected, 2), {**entry["extra"], "evaluation_images": 3}
    (out / "report.json").write_text(json.dumps(report))
    device = _validate(out / "ort-int8", small_data, tmp_path / "device-validation.json")
    assert device["dataset"]["images"] == 8 and device["first_images"]["images"] == 3
    assert abs(device["first_images"]["map50_95"] - expected) < 1e-6
    code, printed, err = cli("compare", out / "report.json", tmp_path / "device-validation.json", "--no-outputs")
    assert code == 0, err
    assert "first 3 evaluation images (--fast)" in printed and "the same 3 evaluation images" in printed
    assert "device - edgeq: +0.00" in printed or "device - edgeq: -0.00" in printed
