"""`edgeq qat` for the TensorRT family on a tiny job (CPU, one epoch): ModelOpt instruments the convolutions, the
trained weights come back as a plain body ONNX, and the emitters build it beside the PTQ artifacts (DLA: with the
PTQ cache the training started from; GPU: Q/DQ placed and calibrated on the trained weights)."""

from __future__ import annotations

import json

import onnx
import pytest


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    from edgeq.synthetic import generate_dataset

    return generate_dataset(tmp_path_factory.mktemp("tiny") / "shapes", train=8, val=8, imgsz=320, seed=3,
                            progress=False)


def _qat(out, data, target: str, *extra: str) -> int:
    from edgeq.cli import main

    return main(["qat", "--target", target, "--data", str(data), "--epochs", "1", "--batch", "4", "--workers", "0",
                 "--calib-images", "8", "--val-images", "8", "--out", str(out), "--no-progress", *extra])


def test_dla_qat_trains_against_the_ptq_cache_and_builds_beside_it(tiny_data, tmp_path, demo_pt):
    from edgeq.cli import main

    out = tmp_path / "qat"
    assert _qat(out, tiny_data, "dla", "--set", "options.fp16_last_convs=false", "--no-export") == 0
    report = json.loads((out / "qat.json").read_text())
    assert "ModelOpt" in report["library"] and "entropy" in report["scheme"] and report["export"] is None
    assert "--qat-onnx" in report["finish_with"] and "options.fp16_last_convs=false" in report["finish_with"]
    trained = onnx.load(str(out / report["qat_onnx"]))
    assert not [n for n in trained.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]  # DLA: no Q/DQ
    export = tmp_path / "export"
    assert main(["export", "--target", "dla", "--data", str(tiny_data), "--set", "options.fp16_last_convs=false",
                 "--calib-images", "8", "--val-images", "8", "--out", str(export), "--no-progress",
                 "--qat-onnx", str(out / report["qat_onnx"])]) == 0
    rows = {a["name"]: a for a in json.loads((export / "report.json").read_text())["artifacts"]}
    assert rows["dla-int8-qat"]["status"] == "emulated" and rows["dla-int8-qat"]["map50_95"] is not None
    assert (export / "dla-qat" / "tensorrt10" / "model.cache").read_text() == \
        (export / "dla" / "tensorrt10" / "model.cache").read_text()
    # the QAT weights feed TensorRT 11.4.1's strongly typed graph too, with the same scales as Q/DQ nodes
    assert rows["dla-trt11-int8-qat"]["status"] == "emulated" and rows["dla-trt11-int8-qat"]["map50_95"] is not None
    assert rows["dla-trt11-int8-qat"]["role"] == "comparison" and rows["dla-int8-qat"]["role"] == "qat"


def test_tensorrt_qat_builds_a_qdq_graph_of_the_trained_weights(tiny_data, tmp_path):
    out = tmp_path / "qat"
    assert _qat(out, tiny_data, "tensorrt", "--set", "calibration.method=minmax") == 0
    rows = {a["name"]: a for a in json.loads((out / "export-tensorrt" / "report.json").read_text())["artifacts"]}
    assert rows["tensorrt-int8-qat-qdq"]["map50_95"] is not None
    qdq = onnx.load(str(out / "export-tensorrt" / rows["tensorrt-int8-qat-qdq"]["path"]))
    assert sum(n.op_type == "QuantizeLinear" for n in qdq.graph.node) > 50


def test_conv_module_names_follow_the_body_export(tmp_path, demo_pt):
    from edgeq_tensorrt.qat import conv_module

    from edgeq.model import export_onnx, load_detector
    from edgeq.train.graph import TrainingGraph

    detector = load_detector(demo_pt)
    body = export_onnx(detector, tmp_path).body
    graph = TrainingGraph(detector, with_head=False)

    class Job:
        body_onnx = body

    for node in onnx.load(str(body)).graph.node:
        if node.op_type == "Conv":
            assert isinstance(graph.get_submodule(conv_module(node.name, Job)), __import__("torch").nn.Conv2d)
