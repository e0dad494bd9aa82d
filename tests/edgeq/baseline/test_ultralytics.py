"""--baseline ultralytics: Ultralytics' own INT8 export of the same checkpoint, scored beside edgeq's artifacts."""

import json

import pytest

import edgeq
from edgeq.baseline.spec import UltralyticsExport
from edgeq.baseline.ultralytics import calibration_data, export_baseline
from edgeq.errors import EdgeqError


def test_onnxruntime_export_has_ultralytics_row_and_gain(cli, tmp_path):
    """ONNX Runtime's INT8 export runs in the core environment: the row is built, scored on the same images,
    calibrated on the run's calibration images, and the report states the gain."""
    out = tmp_path / "out"
    code, stdout, err = cli("export", "--target", "onnxruntime", "--baseline", "ultralytics", "--out", out,
                            "--calib-images", "16", "--val-images", "20", "--set", "evaluation.latency_runs=0")
    assert code == 0, err
    report = json.loads((out / "report.json").read_text())
    baseline = [a for a in report["artifacts"] if a["role"] == "baseline"]
    assert len(baseline) == 1 and baseline[0]["map50_95"] is not None
    assert report["baseline"]["status"] == "built"
    assert "yolo export model=" in report["baseline"]["command"] and "quantize=8" in report["baseline"]["command"]
    listed = (out / "baseline-ultralytics" / "data" / "calibration.txt").read_text().split()
    assert len(listed) == report["data"]["calib_images"] == 16
    assert (out / report["baseline"]["log"]).is_file()
    markdown = (out / "report.md").read_text()
    assert "Default path: Ultralytics" in markdown and "points" in markdown
    assert "ultralytics-onnx-int8" in stdout


def test_missing_format_dependency_is_skipped_without_running(tmp_path):
    spec = UltralyticsExport(format="edgetpu", artifact="*.tflite", precision="int8",
                             needs_binaries=["no-such-compiler-edgeq"], install="install the compiler")

    def never(path):
        raise AssertionError("nothing was exported, so nothing is opened")

    outcome = export_baseline("x", spec, checkpoint=tmp_path / "m.pt", imgsz=64, calib_paths=[], names=["a"],
                              folder=tmp_path, log_dir=tmp_path, trust_model=False, shared={}, open_runner=never)
    assert outcome.artifact is None and "no-such-compiler-edgeq" in outcome.skipped
    assert "install the compiler" in outcome.skipped and "format=edgetpu" in outcome.command
    assert outcome.record()["status"] == "skipped"


def test_no_format_for_target_is_not_an_error(tmp_path):
    outcome = export_baseline("x", None, checkpoint=tmp_path / "m.pt", imgsz=64, calib_paths=[], names=["a"],
                              folder=tmp_path, log_dir=tmp_path, trust_model=False, shared={}, open_runner=None)
    assert outcome.artifact is None and "no export format" in outcome.skipped


def test_calibration_data_lists_exactly_the_images(tmp_path):
    images = [tmp_path / f"{i}.jpg" for i in range(3)]
    data = calibration_data(tmp_path / "d", images, ["a", "b"])
    assert (tmp_path / "d" / "calibration.txt").read_text().split() == [str(p.resolve()) for p in images]
    assert "train: calibration.txt" in data.read_text()


@pytest.mark.parametrize("value", ["yolov5", "ultralytic"])
def test_unknown_baseline_is_refused(cli, tmp_path, capsys, value):
    """The CLI refuses it before any work (argparse's one line, exit 2); the API the same, as an EdgeqError."""
    with pytest.raises(SystemExit) as exc:
        cli("export", "--target", "onnxruntime", "--baseline", value, "--out", tmp_path / "o")
    assert exc.value.code == 2 and "ultralytics" in capsys.readouterr().err
    with pytest.raises(EdgeqError, match="--baseline ultralytics"):
        edgeq.export("demo", target="onnxruntime", baseline=value, out=tmp_path / "api")
    assert not (tmp_path / "api").exists()


def test_module_the_format_needs_is_looked_up_where_it_exports(tmp_path, demo_pt, monkeypatch):
    """In the interpreter that runs Ultralytics (EDGEQ_ULTRALYTICS_PYTHON; here a script running edgeq's own): a missing
    module is one skipped line with the install command, before Ultralytics tries a device it does not have."""
    import sys

    spec = UltralyticsExport(format="engine", args={"device": 0}, artifact="*.engine", precision="int8",
                             needs_modules=["no_such_module_edgeq"], install="install TensorRT")
    other = tmp_path / "python"  # another path to the same interpreter (a link would lose the venv)
    other.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    other.chmod(0o755)
    monkeypatch.setenv("EDGEQ_ULTRALYTICS_PYTHON", str(other))
    outcome = export_baseline("x", spec, checkpoint=demo_pt, imgsz=64, calib_paths=[], names=["a"],
                              folder=tmp_path / "b", log_dir=tmp_path, trust_model=False, shared={}, open_runner=None)
    assert outcome.artifact is None
    assert "needs no_such_module_edgeq" in outcome.skipped and "(install TensorRT)" in outcome.skipped
