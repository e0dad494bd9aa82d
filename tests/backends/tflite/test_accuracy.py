"""Accuracy bound on the trained demo detector, end to end through the pipeline (real mAP, real LiteRT):
the detached head, per-channel, stays within 1.0 mAP50-95 point of FP32 and beats the normalized head."""

from __future__ import annotations

import pytest
from tflite_testlib import need_stack

need_stack()


@pytest.mark.slow
def test_detached_per_channel_within_one_point_of_fp32(small_data, tmp_path) -> None:
    from edgeq.pipeline import ExportRequest, run_export
    from edgeq.recipe import load_recipe

    recipe = load_recipe("tflite-int8-cpu", sets=[f"data={small_data}", "calibration.images=40",
                                                  "evaluation.images=40", "evaluation.latency_runs=3",
                                                  "options.heads=[detached, normalized]"])
    report = run_export(ExportRequest(recipe=recipe, out=tmp_path / "out", progress=False))
    scores = {a.name: a for a in report.artifacts}
    fp32 = scores["onnx-fp32"].map50_95
    detached = scores["tflite-int8-detached-per-channel"]
    assert fp32 > 50, "the demo weights should detect the synthetic shapes"
    assert fp32 - detached.map50_95 <= 1.0, (fp32, detached.map50_95)
    assert detached.map50_95 > scores["tflite-int8-normalized-per-channel"].map50_95
    assert detached.status == "measured" and detached.latency_ms and detached.latency_ms > 0
    out = tmp_path / "out" / "tflite"
    assert (out / "tflite-int8-detached-per-channel-head.json").exists()
    assert (out / "tflite-int8-detached-per-channel-ops.md").exists()
    assert not list(tmp_path.glob(".out*"))  # staging moved into place, nothing half-written left
    throughput = {(t["artifact"], t["batch"]): t for t in report.throughput}
    for batch in (1, 4, 8):  # LiteRT re-plans the batch-1 body (resize_tensor_input), timed interleaved
        assert (throughput[("tflite-int8-detached-per-channel", batch)]["median_ms"] or 0) > 0
    # onnx2tf spells the batch in the head's reshapes: the head-in-graph file runs at batch 1 only, and says so
    assert throughput[("tflite-int8-normalized-per-channel", 1)]["median_ms"] > 0
    assert "fixed at batch 1" in throughput[("tflite-int8-normalized-per-channel", 4)]["note"]
    assert detached.latency_ms == throughput[("tflite-int8-detached-per-channel", 1)]["median_ms"]
