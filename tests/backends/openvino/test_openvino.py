"""The demo export to OpenVINO, end to end, with accuracy bounds that can fail."""

import json

import pytest

pytest.importorskip("openvino")
pytest.importorskip("nncf")


@pytest.fixture(scope="module")
def demo_export(tmp_path_factory):
    from edgeq.cli import main

    out = tmp_path_factory.mktemp("ov") / "out"
    code = main(["export", "--target", "openvino", "--out", str(out), "--calib-images", "200", "--val-images",
                 "200", "--no-progress", "--set", "evaluation.latency_runs=5"])
    assert code == 0
    return out, json.loads((out / "report.json").read_text())


def test_report_has_every_variant(demo_export):
    out, report = demo_export
    names = {a["name"]: a for a in report["artifacts"]}
    assert set(names) == {"onnx-fp32", "openvino-fp32", "openvino-int8", "openvino-int8-attached-head"}
    for entry in names.values():
        assert (out / entry["path"]).exists() and entry["status"] == "measured" and entry["size_mb"] > 0
    assert names["openvino-int8"]["precision"] == "int8+fp32-head"
    assert names["openvino-int8"]["latency_ms"] > 0 and names["onnx-fp32"]["latency_ms"] is None
    assert report["recipe"]["target"] == "openvino" and "openvino" in report["tools"]


def test_throughput_at_batch_1_4_8_for_every_ir(demo_export):
    out, report = demo_export
    rows = {(t["artifact"], t["batch"]): t for t in report["throughput"]}
    for name in ("openvino-fp32", "openvino-int8", "openvino-int8-attached-head"):
        for batch in (1, 4, 8):
            row = rows[(name, batch)]
            assert row["median_ms"] > 0 and row["q1_ms"] <= row["median_ms"] <= row["q3_ms"], row
            assert row["images_per_s"] == pytest.approx(1000 * batch / row["median_ms"], rel=1e-2)
    latency = {a["name"]: a["latency_ms"] for a in report["artifacts"]}
    assert latency["openvino-int8"] == rows[("openvino-int8", 1)]["median_ms"]  # the table's column is batch 1
    assert "## Throughput against batch size" in (out / "report.md").read_text()
    assert (out / "throughput.png").stat().st_size > 10_000


def test_accuracy_bounds(demo_export):
    _, report = demo_export
    ref = report["reference"]["map50_95"]
    names = {a["name"]: a for a in report["artifacts"]}
    assert ref > 60, "the demo detector should be well trained on its own synthetic domain"
    assert abs(names["onnx-fp32"]["map50_95"] - ref) <= 0.3
    assert abs(names["openvino-fp32"]["map50_95"] - ref) <= 0.3
    assert names["openvino-int8"]["drop_map50_95"] <= 1.0  # 200 images here; the benchmark holds 0.5 on 300
    assert names["openvino-int8-attached-head"]["drop_map50_95"] is not None


def test_int8_ir_is_really_quantized(demo_export):
    from edgeq_openvino.runner import import_openvino

    ov = import_openvino()

    out, report = demo_export
    model = ov.Core().read_model(str(out / "openvino" / "openvino-int8" / "model.xml"))
    fake_quantize = [op for op in model.get_ops() if op.get_type_name() == "FakeQuantize"]
    head_fq = [op for op in fake_quantize if "edgeq_head" in op.get_friendly_name()]
    assert len(fake_quantize) > 50 and not head_fq


def test_eval_command_reproduces_report(demo_export, cli):
    out, report = demo_export
    expected = {a["name"]: a["map50_95"] for a in report["artifacts"]}["openvino-int8"]
    code, stdout, err = cli("eval", out / "openvino" / "openvino-int8" / "model.xml", "--val-images", "200",
                            "--no-progress")
    assert code == 0, err
    assert f"| {expected:.2f} |" in stdout


def test_deploy_kit_runs_and_prints_what_the_evaluator_sees(demo_export):
    """DEPLOY.md and infer.py in openvino/; the script, run as a user would, prints the detections edgeq's own
    runner and decoder give on the same image."""
    import subprocess
    import sys

    from deploy_testlib import evaluator_detections, parse_detections
    from edgeq_openvino.runner import OpenVINORunner

    out, report = demo_export
    kit = out / "openvino"
    deploy = (kit / "DEPLOY.md").read_text()
    assert "## What to copy to the device" in deploy and "`openvino-int8/model.xml` (default)" in deploy
    assert "python3 infer.py image.jpg" in deploy and "OpenVINO Runtime" in deploy
    image = _first_val_image(report)
    for model in ("openvino-int8/model.xml", "openvino-fp32/model.xml"):
        run = subprocess.run([sys.executable, str(kit / "infer.py"), str(image), "--model", model],
                             capture_output=True, text=True, check=False, cwd=out.parent)
        assert run.returncode == 0, run.stderr
        printed = parse_detections(run.stdout)
        expected = evaluator_detections(OpenVINORunner(kit / model), kit, image)
        assert len(printed) == len(expected) > 0
        for got, want in zip(printed, expected):
            assert got[0] == want[0] and abs(got[1] - want[1]) < 2e-3 and max(abs(a - b) for a, b in
                                                                               zip(got[2:], want[2:])) < 0.5


def test_deploy_kit_rejects_a_file_that_is_not_its_own(demo_export, tmp_path):
    import subprocess
    import sys

    out, report = demo_export
    run = subprocess.run([sys.executable, str(out / "openvino" / "infer.py"), str(_first_val_image(report)),
                          "--model", str(tmp_path / "other.xml")], capture_output=True, text=True, check=False)
    assert run.returncode == 2 and "is not an artifact of this kit" in run.stderr and "Traceback" not in run.stderr


def test_validate_on_the_device_reproduces_the_reports_figure(demo_export, tmp_path, cli):
    """The kit's `infer.py --validate`, run as on a device, scores the shipped IR over the report's 200 images with
    edgeq's protocol and the same figure; `edgeq compare` holds it to the report (same file, same images by hash)
    and runs the IR here on the inputs the device kept."""
    import subprocess
    import sys

    out, report = demo_export
    record = tmp_path / "device-validation.json"
    run = subprocess.run([sys.executable, str(out / "openvino" / "infer.py"), "--validate", report["data"]["source"],
                          "--out", str(record)], capture_output=True, text=True, check=False, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    device = json.loads(record.read_text())
    entry = next(a for a in report["artifacts"] if a["name"] == "openvino-int8")
    assert device["artifact"]["name"] == "openvino-int8" and device["dataset"]["images"] == 200
    assert abs(device["map50_95"] - entry["map50_95"]) <= 0.05
    code, printed, err = cli("compare", out / "report.json", record)
    assert code == 0, err
    assert f"| edgeq (measured, {entry['runtime']}) | {entry['map50_95']:.2f} |" in printed
    row = next(line.split("|") for line in printed.splitlines() if line.startswith("| output0 |"))
    assert row[2].strip() == "1x10x2100" and float(row[3]) < 1e-3, printed  # one IR, one runtime, f32 on both


def _first_val_image(report):
    from edgeq.data import load_dataset

    return sorted(load_dataset(report["data"]["source"]).images("val"))[0]


def test_export_writes_nothing_outside_output_and_cache(tmp_path):
    """No ~/intel telemetry, ~/.cache, ~/.config/Ultralytics or ~/.keras: only --out and --cache-dir change."""
    import os
    import subprocess
    import sys

    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items()
           if k not in ("EDGEQ_CACHE", "YOLO_CONFIG_DIR", "MPLCONFIGDIR", "KERAS_HOME", "XDG_CACHE_HOME")}
    env["HOME"] = str(home)
    result = subprocess.run([sys.executable, "-m", "edgeq.cli", "--cache-dir", str(tmp_path / "cache"), "export",
                             "--target", "openvino", "--out", str(tmp_path / "out"), "--calib-images", "16",
                             "--val-images", "16", "--no-progress", "--set", "evaluation.latency_runs=1"],
                            env=env, cwd=tmp_path, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "home", "out"]
    assert list(home.iterdir()) == []


def test_head_branch_the_model_lacks_is_one_line_exit_2(cli, tmp_path):
    code, _, err = cli("export", "--target", "openvino", "--head-branch", "one2one", "--out", tmp_path / "o")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "has no one2one branch" in err and "--head-branch one2many" in err and not (tmp_path / "o").exists()


def test_static_batch_4_irs_score_like_batch_1(small_data, tmp_path):
    """--batch 4: every IR takes 4 images per call; the evaluator feeds them 4 at a time (padding the last
    call), and the FP32 IR scores exactly what the batch-1 FP32 ONNX scores on the same images."""
    from edgeq_openvino.runner import import_openvino

    from edgeq.cli import main

    out = tmp_path / "b4"
    code = main(["export", "--target", "openvino", "--batch", "4", "--data", str(small_data), "--out", str(out),
                 "--calib-images", "20", "--val-images", "30", "--no-progress", "--set", "evaluation.latency_runs=2"])
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    names = {a["name"]: a for a in report["artifacts"]}
    assert names["openvino-fp32"]["map50_95"] == names["onnx-fp32"]["map50_95"]
    assert report["model"]["batch"] == 4 and "static batch 4" in (out / "report.md").read_text()
    ov = import_openvino()
    for name in ("openvino-fp32", "openvino-int8"):
        model = ov.Core().read_model(str(out / names[name]["path"]))
        assert list(model.inputs[0].get_partial_shape().to_shape()) == [4, 3, 320, 320]
    assert {t["batch"] for t in report["throughput"] if t["artifact"] == "openvino-int8"} == {1, 4, 8}


@pytest.mark.parametrize("damage, words", [("missing", "Empty weights"), ("truncated", "is_valid_weights_range")])
def test_eval_of_an_ir_with_a_missing_or_truncated_bin_is_one_line(cli, tmp_path, small_data, damage, words):
    """edgeq eval on an IR whose weights file is gone or cut (issue 20): OpenVINO's refusal, named in one line."""
    import openvino as ov
    from ort_testlib import tiny_conv_onnx

    ov.save_model(ov.convert_model(str(tiny_conv_onnx(tmp_path / "tiny.onnx", out_channels=10))),
                  str(tmp_path / "model.xml"))
    weights = tmp_path / "model.bin"
    weights.unlink() if damage == "missing" else weights.write_bytes(weights.read_bytes()[:8])
    code, _, err = cli("eval", tmp_path / "model.xml", "--data", small_data, "--no-progress")
    lines = [line for line in err.splitlines() if line.startswith("edgeq: error:")]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert f"'{tmp_path / 'model.xml'}' cannot be loaded or run (RuntimeError" in lines[0] and words in lines[0]
    assert "an IR needs its .bin" in lines[0]


def test_concat_inputs_share_one_quantizer_range_as_the_scheme_says(demo_export):
    """NNCF ties Concat's inputs (the scheme's `unified` row the emulation uses): every FakeQuantize feeding one
    Concat of the INT8 IR has the same range."""
    import numpy as np
    import openvino as ov

    out, report = demo_export
    model = ov.Core().read_model(str(out / next(a["path"] for a in report["artifacts"] if a["name"] == "openvino-int8")))
    checked = 0
    for op in model.get_ops():
        if op.get_type_name() != "Concat":
            continue
        ranges = set()
        for value in op.inputs():
            producer = value.get_source_output().get_node()
            if producer.get_type_name() == "FakeQuantize":
                low, high = (producer.input_value(i).get_node().get_data() for i in (1, 2))
                ranges.add((float(np.min(low)), float(np.max(high))))
        if len(ranges) > 0:
            assert len(ranges) == 1, (op.get_friendly_name(), ranges)
            checked += 1
    assert checked > 3


def test_eval_of_ultralytics_openvino_int8_export(cli, demo_pt, small_data, tmp_path):
    """Ultralytics 8.4's OpenVINO INT8 IR names none of its outputs: edgeq scores it as any decoded output."""
    import shutil

    from edgeq.env import offline_ultralytics

    offline_ultralytics()
    from ultralytics import YOLO

    weights = shutil.copy(demo_pt, tmp_path / demo_pt.name)
    folder = YOLO(str(weights)).export(format="openvino", int8=True, imgsz=320, data=str(small_data), fraction=0.5,
                                       verbose=False)
    code, out, err = cli("eval", f"{folder}/{weights.stem}.xml", "--data", small_data, "--no-progress")
    assert code == 0 and "Traceback" not in err, err
    assert float(out.strip().splitlines()[-1].split("|")[4]) > 50
