"""`edgeq qat --target openvino` on a tiny job (CPU, one epoch): NNCF instruments the graph with the decode head,
the trained ONNX becomes an IR beside the PTQ one, and both are scored by the same evaluator."""

from __future__ import annotations

import json

import pytest


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    from edgeq.synthetic import generate_dataset

    return generate_dataset(tmp_path_factory.mktemp("tiny") / "shapes", train=8, val=8, imgsz=320, seed=3,
                            progress=False)


@pytest.fixture(scope="module")
def qat_run(tiny_data, tmp_path_factory):
    from edgeq.cli import main

    out = tmp_path_factory.mktemp("qat") / "ov"
    code = main(["qat", "--target", "openvino", "--data", str(tiny_data), "--set", "options.detach_head=false",
                 "--epochs", "1", "--batch", "4", "--workers", "0", "--calib-images", "8", "--val-images", "8",
                 "--out", str(out), "--no-progress"])
    return code, out


def test_qat_builds_the_trained_ir_beside_the_ptq_one(qat_run):
    import openvino as ov

    code, out = qat_run
    assert code == 0
    report = json.loads((out / "export-openvino" / "report.json").read_text())
    rows = {a["name"]: a for a in report["artifacts"]}
    assert {"openvino-int8-qat", "openvino-int8-attached-head"} <= set(rows)
    assert report["artifacts"][1]["name"] == "openvino-int8-qat"  # first INT8 row: the deployable one
    qat, ptq = rows["openvino-int8-qat"], rows["openvino-int8-attached-head"]
    assert qat["status"] == "measured" and qat["map50_95"] is not None
    assert abs(qat["map50_95"] - ptq["map50_95"]) < 15  # one epoch on 8 images must not wreck the model
    ir = ov.Core().read_model(str(out / "export-openvino" / qat["path"]))
    head_fq = [op for op in ir.get_ops() if op.get_type_name() == "FakeQuantize"
               and "/head/" in " ".join(i.get_node().get_friendly_name() for i in op.output(0).get_target_inputs())]
    assert head_fq, "the decode head was trained quantized, so its IR must quantize it too"
    assert qat["size_mb"] < 1.3 * ptq["size_mb"]  # weights stored as INT8, not FP32 behind a FakeQuantize


def test_qat_report_records_training(qat_run):
    _, out = qat_run
    report = json.loads((out / "qat.json").read_text())
    assert report["library"].startswith("NNCF") and len(report["history"]) == 1
    assert report["calibration_images"] == 8 and report["train_images"] == 8
    assert (out / report["qat_onnx"]).is_file()


def test_export_refuses_a_missing_qat_onnx(cli, tmp_path):
    code, _, err = cli("export", "--target", "openvino", "--qat-onnx", str(tmp_path / "none.onnx"),
                       "--out", str(tmp_path / "o"))
    assert code == 2 and "--qat-onnx" in err and "does not exist" in err
