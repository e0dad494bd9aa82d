"""The export pipeline and CLI with small real plugins (no OpenVINO needed): staging, refusal to overwrite,
one-line errors, kept logs, the report, and the --max-drop exit code."""

import json
import os
import subprocess
import sys

import pytest
from ort_testlib import toy_plugins

import edgeq.backend as backend_module


@pytest.fixture(autouse=True)
def test_backends(monkeypatch):
    monkeypatch.setattr(backend_module, "discover", toy_plugins)


def _export(cli, tmp_path, target, *extra, model=None, data=None):
    args = ["export", "--target", target, "--out", tmp_path / "out", "--no-progress", "--set",
            "evaluation.latency_runs=0"]
    if model:
        args += ["--model", model, "--imgsz", 320]
    if data:
        args += ["--data", data, "--calib-images", 16, "--val-images", 24]
    return cli(*args, *extra)


def _one_line_error(code, err, *fragments):
    assert code == 2
    lines = [line for line in err.splitlines() if line.startswith("edgeq: error:")]
    assert len(lines) == 1 and "Fix:" in lines[0] and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in lines[0]


def test_unknown_target(cli, tmp_path):
    code, _, err = _export(cli, tmp_path, "nope")
    _one_line_error(code, err, "unknown target 'nope'", "ort-int8")


def test_missing_backend_dependency(cli, tmp_path):
    code, _, err = _export(cli, tmp_path, "exotic")
    _one_line_error(code, err, "no_such_module_for_edgeq", "pip install 'edgeq[exotic]'")
    assert not (tmp_path / "out").exists()


def test_existing_output_is_refused_without_force(cli, tmp_path, yolo_yaml, small_data):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "mine.txt").write_text("keep me")
    code, _, err = _export(cli, tmp_path, "ort-int8", model=yolo_yaml, data=small_data)
    _one_line_error(code, err, "already holds", "--force")
    assert (tmp_path / "out" / "mine.txt").read_text() == "keep me"


def test_a_failing_trial_build_names_a_log_that_exists(cli, tmp_path, yolo_yaml, small_data):
    code, _, err = _export(cli, tmp_path, "failing-trial", "--set", "calibration.method=auto", model=yolo_yaml,
                           data=small_data)
    log = tmp_path / "out" / "logs" / "failing-convert.log"
    _one_line_error(code, err, "stage 'convert' failed", f"(log: {log})")
    assert log.read_text() == "converter said: boom\n"


def test_stage_failure_keeps_log_and_leaves_nothing_half_written(cli, tmp_path, yolo_yaml, small_data):
    code, _, err = _export(cli, tmp_path, "failing", model=yolo_yaml, data=small_data)
    _one_line_error(code, err, "stage 'convert' failed", str(tmp_path / "out" / "logs" / "failing-convert.log"))
    assert sorted(p.name for p in (tmp_path / "out").rglob("*")) == ["failing-convert.log", "logs"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no staging folder left behind


def test_bad_recipe_key_via_set(cli, tmp_path):
    code, _, err = _export(cli, tmp_path, "ort-int8", "--set", "options.quantise=true")
    _one_line_error(code, err, "unknown recipe key 'options.quantise'")


def test_export_report_and_max_drop_gate(cli, tmp_path, demo_pt, small_data):
    code, out, err = _export(cli, tmp_path, "ort-int8", "--max-drop", "1.0", model=demo_pt, data=small_data)
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    entries = {a["name"]: a for a in report["artifacts"]}
    keys = {"name", "target", "variant", "path", "precision", "map50_95", "map50", "drop_map50_95", "size_mb",
            "latency_ms", "status", "note"}
    assert keys <= set(entries["ort-int8"]) and report["reference"]["map50_95"] > 50
    assert abs(entries["onnx-fp32"]["map50_95"] - report["reference"]["map50_95"]) <= 0.3
    # quantizing pixel boxes and 0..1 scores into one INT8 tensor destroys the scores: the gate must trip
    assert entries["ort-int8"]["drop_map50_95"] > 1.0
    assert code == 3 and "over --max-drop 1.0" in err
    main_table = (tmp_path / "out" / "report.md").read_text().split("## What mAP hides")[0]
    assert main_table.count("| ort-int8 |") == 1  # one row per artifact (the diagnostics tables name it again)
    assert (tmp_path / "out" / "report.png").stat().st_size > 1000
    assert "| onnx-fp32 |" in out  # the table is printed


def test_force_replaces_previous_output(cli, tmp_path, yolo_yaml, small_data):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "old.txt").write_text("old")
    code, _, err = _export(cli, tmp_path, "ort-int8", "--force", model=yolo_yaml, data=small_data)
    assert code == 0, err
    assert not (tmp_path / "out" / "old.txt").exists() and (tmp_path / "out" / "report.json").exists()


def test_real_process_prints_no_traceback(tmp_path):
    result = subprocess.run([sys.executable, "-m", "edgeq.cli", "export", "--target", "openvino", "--model",
                             tmp_path / "missing.pt", "--out", tmp_path / "o"], capture_output=True, text=True)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("edgeq: error:")


def test_malicious_checkpoint_exits_2_without_running(cli, tmp_path, malicious_checkpoint):
    evil, marker = malicious_checkpoint
    code, _, err = _export(cli, tmp_path, "ort-int8", model=evil)
    _one_line_error(code, err, "outside Ultralytics' weights-only allow-list", "--trust-model")
    assert not marker.exists() and not (tmp_path / "out").exists()


def test_model_is_checked_before_any_data_work(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEQ_CACHE", str(tmp_path / "cache"))
    code, _, err = _export(cli, tmp_path, "ort-int8", model=tmp_path / "missing.pt")
    _one_line_error(code, err, "does not exist")
    assert not (tmp_path / "cache" / "demo-data").exists()  # the demo dataset was not generated


def test_staging_left_by_a_killed_export_is_removed(cli, tmp_path, yolo_yaml, small_data):
    """Under the output lock every other staging folder is stale, whether or not a process of its pid runs (pids
    are reused; another pid namespace's are invisible). A run that is alive holds the lock, and a second run is
    refused instead (tests/edgeq/test_staging.py)."""
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    stale = tmp_path / f".out.edgeq-partial-{int(dead.stdout)}"
    (stale / "artifacts").mkdir(parents=True)
    reused = tmp_path / f".out.edgeq-partial-{os.getppid()}"  # a live pid that holds no lock: stale as well
    reused.mkdir()
    code, _, err = _export(cli, tmp_path, "ort-int8", model=yolo_yaml, data=small_data)
    assert code == 0, err
    assert not stale.exists() and not reused.exists() and f"removed '{stale}'" in err


def test_usage_error_exit_code(cli):
    with pytest.raises(SystemExit) as exc:
        cli("export")
    assert exc.value.code == 2


def test_a_truncated_image_is_refused_by_default_and_skipped_and_counted_on_request(cli, tmp_path, demo_pt):
    """Issue 20, case 8: a truncated JPEG used to be scored silently (libjpeg fills the rest grey)."""
    from edgeq.synthetic import generate_dataset

    data = generate_dataset(tmp_path / "data", train=6, val=6, imgsz=320, seed=0)
    for split in ("train", "val"):
        image = sorted((tmp_path / "data" / "images" / split).iterdir())[2]
        image.write_bytes(image.read_bytes()[:-500])
    code, _, err = _export(cli, tmp_path, "ort-int8", model=demo_pt, data=data)
    _one_line_error(code, err, "images/train/", "is truncated (the JPEG ends before its end-of-image marker)",
                    "--bad-images skip")
    code, _, err = _export(cli, tmp_path, "ort-int8", "--bad-images", "skip", model=demo_pt, data=data)
    assert code == 0, err
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["data"]["skipped_images"] == {"calibration": 1, "evaluation": 1}
    assert report["data"]["val_images"] == 5 and report["data"]["calib_images"] == 5
    assert err.count("edgeq: skipped: image ") == 2
