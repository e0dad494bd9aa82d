"""The ethos-u target: Arm's Vela runs on the converted full-integer file (160 px, trained ReLU6 demo weights).
Its placement and estimates reach the artifact; an op Vela cannot map is found before conversion by the rule
table and after it in Vela's own CPU-op list; bad settings and inputs are one line."""

from __future__ import annotations

import importlib.util
import shutil

import numpy as np
import onnx
import pytest
from onnx import helper
from tflite_testlib import make_job, need_stack

from edgeq.errors import EdgeqError, StageError

need_stack()
if importlib.util.find_spec("ethosu.vela") is None:
    pytest.skip("Vela not installed: pip install 'edgeq[tflite]'", allow_module_level=True)


def _with_unmappable_ops(body_path, out_path):
    """The body with SpaceToDepth -> DepthToSpace (blocksize 2) on its input: the same image back (DCR is
    SpaceToDepth's inverse), but two ops outside both of Vela's operator tables."""
    model = onnx.load(str(body_path))
    graph = model.graph
    source = graph.input[0].name
    for node in graph.node:
        node.input[:] = ["edgeq_test/d2s" if name == source else name for name in node.input]
    graph.node.insert(0, helper.make_node("DepthToSpace", ["edgeq_test/s2d"], ["edgeq_test/d2s"], blocksize=2,
                                          mode="DCR", name="edgeq_test/DepthToSpace"))
    graph.node.insert(0, helper.make_node("SpaceToDepth", [source], ["edgeq_test/s2d"], blocksize=2,
                                          name="edgeq_test/SpaceToDepth"))
    onnx.save(model, str(out_path))
    return out_path


@pytest.fixture(scope="module")
def relu6(onnx_pair):
    return onnx_pair("demo-yolov8n-relu6-320.pt")


@pytest.fixture(scope="module")
def compiled(relu6, calib_160, tmp_path_factory):
    """The i.MX93 defaults on the ReLU6 body: one conversion, one Vela run."""
    from edgeq_tflite import TFLiteBackend

    models, detector = relu6
    job = make_job("ethos-u", models, detector.head, tmp_path_factory.mktemp("eu") / "artifacts",
                   calibration=calib_160[0])
    backend = TFLiteBackend()
    findings = backend.check(job)
    result = backend.build(job)
    return job, findings, result


def test_relu6_compiles_whole_with_estimates_next_to_the_input(compiled) -> None:
    job, findings, result = compiled
    assert not [f for f in findings if f.rule == "ethos-u.unmapped-op"]
    (art,) = result.artifacts
    assert art.name == "ethos-u-int8-detached-per-channel" and art.status == "emulated" and not art.measure_latency
    vela_file = art.path.with_name(f"{art.path.stem}_vela.tflite")
    assert vela_file.is_file() and vela_file in art.companions
    assert vela_file.read_bytes() != art.path.read_bytes()
    report = art.extra["vela"]
    assert report["figure"].startswith("estimated")
    assert report["cpu_ops"] == [] and report["npu_ops"] > 50
    assert report["accelerator_config"] == "ethos-u65-256" and report["clock_mhz"] == 1000
    assert 0 < report["inference_ms"] < 100 and report["inferences_per_s"] == pytest.approx(
        1000 / report["inference_ms"], rel=1e-3)
    assert report["sram_kib"] > 0 and report["off_chip"] == "DRAM" and report["off_chip_kib"] > 0
    assert report["macs"] > 1e8  # a 160 px YOLOv8n is about 0.25 GMACs
    assert "(estimated)" in art.note and "ops on the NPU" in art.note
    assert "Vela's placement" in art.path.with_name(f"{art.path.stem}-ops.md").read_text()
    with art.open_runner() as runner:
        assert "reference" in runner.runtime
        assert sorted(runner.infer(np.asarray(job.calibration[0]))) == sorted(job.head.body_outputs)


def test_unmappable_op_is_found_before_conversion_and_listed_by_vela_after(relu6, calib_160, tmp_path) -> None:
    from edgeq_tflite import TFLiteBackend

    models, detector = relu6
    body = _with_unmappable_ops(models.body, tmp_path / "body-s2d.onnx")
    job = make_job("ethos-u", type(models)(body=body, full=models.full), detector.head, tmp_path / "artifacts",
                   calibration=calib_160[0])
    backend = TFLiteBackend()
    before = [f for f in backend.check(job) if f.rule == "ethos-u.unmapped-op"]
    assert {f.where for f in before} == {"edgeq_test/SpaceToDepth", "edgeq_test/DepthToSpace"}
    assert all(f.severity.value == "fallback" and "Vela" in f.message and f.fix for f in before)
    result = backend.build(job)
    (art,) = result.artifacts
    cpu = art.extra["vela"]["cpu_ops"]
    assert sorted(op["op"] for op in cpu) == ["DEPTH_TO_SPACE", "SPACE_TO_DEPTH"]
    assert all(op["reason"] == "Unsupported opType" for op in cpu)
    after = [f for f in result.findings if f.rule == "ethos-u.vela-cpu-op"]
    assert len(after) == 2 and all("Vela placed" in f.message and f.fix for f in after)
    assert "2 on the CPU" in art.note
    # ai-edge-litert 2.3 has no kernel for DEPTH_TO_SPACE version 2: the kernel check says so, the build goes on
    assert "LiteRT here cannot run this file" in art.note and art.extra["kernel_check"]["unloadable"]


def test_unmappable_op_is_refused_without_fallback(relu6, calib_160, tmp_path) -> None:
    from edgeq_tflite import TFLiteBackend

    models, detector = relu6
    body = _with_unmappable_ops(models.body, tmp_path / "body-s2d.onnx")
    job = make_job("ethos-u", type(models)(body=body, full=models.full), detector.head, tmp_path / "artifacts",
                   calibration=calib_160[0], allow_fallback=False)
    with pytest.raises(EdgeqError, match="CPU"):
        job.fallback.enforce(TFLiteBackend().check(job), where="check")


@pytest.mark.parametrize(("key", "value", "suggested"), [
    ("accelerator_config", "ethos-u65-265", "ethos-u65-256"),
    ("system_config", "Ethos_U65_HighEnd", "Ethos_U65_High_End"),
    ("memory_mode", "Dedicated_SRAM", "Dedicated_Sram"),
])
def test_unknown_vela_names_are_one_line_with_close_matches(relu6, tmp_path, key, value, suggested) -> None:
    from edgeq_tflite import TFLiteBackend

    models, detector = relu6
    job = make_job("ethos-u", models, detector.head, tmp_path / "artifacts", **{key: value})
    with pytest.raises(EdgeqError) as info:
        TFLiteBackend().check(job)
    line = info.value.one_line()
    assert f"options.{key} '{value}'" in line and f"did you mean {suggested}" in line and "\n" not in line


def test_model_that_does_not_fit_the_sram_is_one_line_with_the_log_kept(compiled, tmp_path) -> None:
    from edgeq_tflite import vela

    job, _, result = compiled
    source = tmp_path / "m.tflite"
    shutil.copyfile(result.artifacts[0].path, source)
    settings = vela.VelaSettings("ethos-u55-128", "Ethos_U55_High_End_Embedded", "Shared_Sram", sram_kib=16)
    keep = tmp_path / "logs" / "ethos-u-vela.log"
    with pytest.raises(EdgeqError) as info:
        vela.compile_model(source, settings, tmp_path / "work", keep, 300)
    line = info.value.one_line()
    assert "does not fit memory mode Shared_Sram" in line and "the device has 16 KiB" in line and str(keep) in line
    assert "Network summary" in keep.read_text()


def test_float_tflite_is_refused_before_vela(tmp_path) -> None:
    from pathlib import Path

    from edgeq_tflite import vela

    fixture = Path(__file__).parent / "fixtures" / "demo-yolov8n-silu-320_ultralytics-litert-int8.tflite"
    settings = vela.VelaSettings("ethos-u65-256", "Ethos_U65_High_End", "Dedicated_Sram_384KB")
    with pytest.raises(EdgeqError, match="is not a full-integer TFLite"):  # float I/O: Ultralytics' LiteRT file
        vela.compile_model(fixture, settings, tmp_path, tmp_path / "keep.log", 300)
    assert not (tmp_path / "vela").exists()


def test_vela_failure_is_a_stage_error_with_the_log_kept(compiled, tmp_path) -> None:
    from edgeq_tflite import vela

    _, _, result = compiled
    source = tmp_path / "m.tflite"
    shutil.copyfile(result.artifacts[0].path, source)
    settings = vela.VelaSettings("ethos-u65-256", "Ethos_U65_High_End", "Dedicated_Sram_384KB",
                                 config=tmp_path / "empty.ini")
    (tmp_path / "empty.ini").write_text("; no sections\n")
    keep = tmp_path / "keep.log"
    with pytest.raises(StageError) as info:
        vela.compile_model(source, settings, tmp_path / "work", keep, 300)
    assert info.value.stage == "vela" and keep.is_file()


def test_missing_vela_makes_only_ethos_u_unavailable(monkeypatch) -> None:
    from edgeq_tflite import TFLiteBackend

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name.startswith("ethosu") else
                        real(name, *a))
    backend = TFLiteBackend()
    assert backend.missing("ethos-u") == ["ethosu.vela"]
    assert backend.missing("tflite") == [] and backend.missing("nxp") == []
    with pytest.raises(EdgeqError, match="edgeq\\[tflite\\]"):
        backend.ensure_available("ethos-u")


def test_a_cpu_ops_reason_ends_at_the_next_warning_of_any_kind() -> None:
    """Vela printed its own config warning right under the last op's reason (no blank line between) where Vela
    lives outside a virtual environment's default path: that line is not part of the reason."""
    from edgeq_tflite import vela

    text = ("Warning (supported operators) operator: DEPTH_TO_SPACE, ofm: 'm/d2s'\nReason: Unsupported opType\n\n"
            "Warning (supported operators) operator: SPACE_TO_DEPTH, ofm: 'm/s2d'\nReason: Unsupported opType\n"
            "Warning: Consider accessing the configuration by --config Arm/vela.ini since it is located inside the "
            "config_files directory.\n\nCPU operators = 2 (1.3%)\n"
            "   CPU: Passthrough = m/s2d (outputs [1, 80, 80, 12])\n"
            "   CPU: Passthrough = m/d2s (outputs [1, 160, 160, 3])\n"
            "   NPU: Conv2D = m/conv (outputs [1, 80, 80, 16])\n")
    report = vela.parse(text, None, vela.VelaSettings("ethos-u65-256", "Ethos_U65_High_End", "Dedicated_Sram_384KB"))
    assert report.npu_ops == 1
    assert report.cpu_ops == [{"op": "SPACE_TO_DEPTH", "name": "m/s2d", "reason": "Unsupported opType"},
                              {"op": "DEPTH_TO_SPACE", "name": "m/d2s", "reason": "Unsupported opType"}]
