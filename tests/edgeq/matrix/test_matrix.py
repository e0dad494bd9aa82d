"""`edgeq export --target a,b,...` with small real plugins: one intake and one reference for every target, each
target's folder and report, skipped and failed targets listed (not fatal), the matrix report, exit codes."""

import json

import pytest
from ort_testlib import toy_plugins

import edgeq.backend as backend_module


@pytest.fixture(autouse=True)
def test_backends(monkeypatch):
    monkeypatch.setattr(backend_module, "discover", toy_plugins)


def _matrix(cli, tmp_path, targets, *extra, model, data):
    return cli("export", "--target", targets, "--out", tmp_path / "out", "--no-progress", "--model", model,
               "--imgsz", 320, "--data", data, "--calib-images", 16, "--val-images", 24,
               "--set", "evaluation.latency_runs=0", *extra)


def test_every_target_from_one_intake_with_skipped_and_failed_listed(cli, tmp_path, demo_pt, small_data):
    code, out, err = _matrix(cli, tmp_path, "ort-int8,ort-int8-b,failing,exotic", model=demo_pt, data=small_data)
    assert code == 4, err  # a target failed: the others are written, the exit code says so
    assert "1 target(s) failed: failing: stage 'convert' failed" in err.splitlines()[-1]
    root = tmp_path / "out"
    matrix = json.loads((root / "report.json").read_text())
    outcomes = {o["target"]: o for o in matrix["outcomes"]}
    assert [o["target"] for o in matrix["outcomes"]] == ["ort-int8", "ort-int8-b", "failing", "exotic"]
    assert outcomes["exotic"]["status"] == "skipped" and outcomes["exotic"]["install"] == "pip install 'edgeq[exotic]'"
    assert outcomes["failing"]["status"] == "failed" and "the converter crashed" in outcomes["failing"]["reason"]
    assert not (root / "failing").exists() and (root / "logs" / "failing-convert.log").exists()  # nothing half-made
    # the FP32 reference and FP32 ONNX are scored once and every target's report compares against them
    ref = matrix["reference"]["map50_95"]
    for target in ("ort-int8", "ort-int8-b"):
        report = json.loads((root / target / "report.json").read_text())
        assert report["reference"]["map50_95"] == ref and report["recipe"]["target"] == target
        assert (root / target / "model-int8.onnx").exists()
        assert outcomes[target]["status"] == "built" and outcomes[target]["artifacts"][0]["map50_95"] is not None
    assert err.count("onnx-fp32: mAP50-95") == 1 and err.count("[1/3] ort-int8 done in") == 1
    assert "[3/3] failing failed after" in err
    text = (root / "report.md").read_text()
    assert "| exotic | | | | | | | | | skipped: extra not installed (pip install 'edgeq[exotic]') | |" in text
    assert text.count("| ort-int8-b | ort-int8-b **deployable** |") == 1
    assert (root / "report.png").stat().st_size > 5000
    assert "| ort-int8 | ort-int8 **deployable** |" in out  # the table is printed


def test_max_drop_applies_per_target(cli, tmp_path, demo_pt, small_data):
    code, _, err = _matrix(cli, tmp_path, "ort-int8,exotic", "--max-drop", "1.0", model=demo_pt, data=small_data)
    # the naive INT8 of the whole model (head included) loses far more than a point
    assert code == 3 and "ort-int8 loses" in err and "over --max-drop 1.0" in err
    assert "(**over --max-drop**)" in (tmp_path / "out" / "report.md").read_text()


def _one_line_error(code, err, *fragments):
    lines = [line for line in err.splitlines() if line.startswith("edgeq: error:")]
    assert code == 2 and len(lines) == 1 and "Fix:" in lines[0] and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_unknown_target_in_a_list_names_close_matches(cli, tmp_path, demo_pt, small_data):
    code, _, err = _matrix(cli, tmp_path, "ort-int8,ort-int9", model=demo_pt, data=small_data)
    _one_line_error(code, err, "unknown target 'ort-int9'", "did you mean ort-int8")
    assert not (tmp_path / "out").exists()


def test_no_backend_extra_installed_is_one_line_with_the_install(cli, tmp_path, demo_pt, small_data):
    code, _, err = _matrix(cli, tmp_path, "exotic,", model=demo_pt, data=small_data)
    _one_line_error(code, err, "no backend extra is installed for exotic", "pip install 'edgeq[exotic]'")


def test_a_previous_single_target_export_is_not_overwritten(cli, tmp_path, yolo_yaml, small_data):
    code, _, err = cli("export", "--target", "ort-int8", "--out", tmp_path / "out", "--no-progress", "--model",
                       yolo_yaml, "--imgsz", 320, "--data", small_data, "--calib-images", 8, "--val-images", 8,
                       "--set", "evaluation.latency_runs=0")
    assert code == 0, err
    before = (tmp_path / "out" / "report.json").read_text()
    code, _, err = _matrix(cli, tmp_path, "ort-int8,ort-int8-b", model=yolo_yaml, data=small_data)
    _one_line_error(code, err, "already holds a previous export (target ort-int8)", "--force")
    assert (tmp_path / "out" / "report.json").read_text() == before


def test_single_target_flags_are_refused_in_a_matrix(cli, tmp_path, yolo_yaml, small_data):
    code, _, err = _matrix(cli, tmp_path, "ort-int8,ort-int8-b", "--max-drop", "50%", model=yolo_yaml,
                           data=small_data)
    _one_line_error(code, err, "--max-drop 50%", "give points")
    code, _, err = cli("export", "--target", "ort-int8", "--fast", "--out", tmp_path / "o")
    _one_line_error(code, err, "--fast applies to runs of several targets")


def test_baseline_without_an_ultralytics_format_is_listed_not_an_error(cli, tmp_path, demo_pt, small_data):
    """--baseline for targets Ultralytics has no format for: each is listed as not available, the run succeeds."""
    code, _, err = _matrix(cli, tmp_path, "ort-int8,ort-int8-b", "--baseline", "ultralytics", model=demo_pt,
                           data=small_data)
    assert code == 0, err
    text = (tmp_path / "out" / "report.md").read_text()
    assert "## Against the default path" in text
    assert text.count("not built here: Ultralytics has no export format") == 2


def _entry(name, role, drop, layout="detached"):
    from edgeq.report import ArtifactEntry

    detail = {"weights": "int8", "activations": "int8", "head": "fp32", "exceptions": []}
    return ArtifactEntry(name=name, target="t", variant="", path=f"{name}.onnx", precision="int8+fp32-head",
                         map50_95=50.0 - drop, map50=70.0, drop_map50_95=drop, size_mb=1.0, latency_ms=None,
                         status="measured", note="", layout=layout, role=role, precision_detail=detail)


def test_default_path_section_states_the_gain_and_hatches_the_baseline(tmp_path):
    from edgeq.matrix.report import MatrixReport, TargetOutcome

    record = {"source": "Ultralytics 8.4.190", "command": "yolo export model=m.pt format=onnx quantize=8",
              "status": "built", "reason": "", "log": "logs/x.log", "artifact": "ultralytics-onnx-int8"}
    built = TargetOutcome("cpu", "built", artifacts=[_entry("edgeq-int8", "deployable", 0.12),
                                                     _entry("ultralytics-onnx-int8", "baseline", 0.73, "normalized")],
                          baseline=record)
    matrix = MatrixReport(targets_requested="cpu", model="m.pt", imgsz=320, data="d.yaml", val_images=20,
                          calib_images=16, reference={"map50_95": 50.0, "map50": 70.0, "runtime": "torch"},
                          onnx_fp32=_entry("onnx-fp32", "reference", 0.0), outcomes=[built], shared_timings={},
                          seconds=1.0)
    rows = matrix.default_path_rows()
    assert len(rows) == 1 and rows[0]["gain"] == pytest.approx(0.61)
    text = matrix.markdown()
    assert "| cpu | edgeq-int8 | 0.12 | ultralytics-onnx-int8 (measured) | 0.73 | **+0.61** |" in text
    matrix.plot(tmp_path / "report.png")
    assert (tmp_path / "report.png").stat().st_size > 5000
