"""The backend's checks before conversion, its refusals, and a converter failure (real onnx2tf)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from edgeq_tflite import TFLiteBackend
from pydantic import ValidationError
from tflite_testlib import IMGSZ, make_job, need_stack

from edgeq.errors import EdgeqError, StageError
from edgeq.rules import Severity

FIX = "swap the activation to ReLU6 and fine-tune with distillation from this model (edgeq adapt)"


def test_package_imports_without_the_heavy_stack() -> None:
    code = ("import sys, edgeq_tflite, edgeq_tflite.backend, edgeq_tflite.optable, edgeq_tflite.runner, "
            "edgeq_tflite.graph, edgeq_tflite.convert, edgeq_tflite.edgetpu\n"
            "heavy = [m for m in ('tensorflow', 'onnx2tf', 'tf_keras', 'ai_edge_litert') if m in sys.modules]\n"
            "assert not heavy, heavy")
    import subprocess

    subprocess.run([sys.executable, "-c", code], check=True)


def test_missing_stack_names_the_one_line_install(monkeypatch) -> None:
    backend = TFLiteBackend()
    monkeypatch.setattr(backend, "requires", ("edgeq_no_such_module_xyz",))
    with pytest.raises(EdgeqError) as err:
        backend.ensure_available("edgetpu")
    assert "edgeq_no_such_module_xyz" in err.value.problem
    assert err.value.fix == "pip install 'edgeq[tflite]'"  # onnx2tf and tf_keras come with it, no manual step


def test_defaults_per_target() -> None:
    backend = TFLiteBackend()
    assert {t: p.fallback_default for t, p in backend.profiles.items()} == {"tflite": True, "edgetpu": False,
                                                                             "nxp": True, "ethos-u": True}
    eu = backend.options_model("ethos-u")()  # NXP i.MX93's Ethos-U65
    assert (eu.accelerator_config, eu.system_config, eu.memory_mode) == (
        "ethos-u65-256", "Ethos_U65_High_End", "Dedicated_Sram_384KB")
    assert eu.heads == ["detached"] and eu.kernels == "reference"
    tfl, tpu, nxp = (backend.options_model(t)() for t in ("tflite", "edgetpu", "nxp"))
    assert tfl.granularity == ["per-channel"] and tfl.heads == ["detached", "normalized", "pixel"]
    assert tpu.granularity == ["per-channel"] and tpu.heads == ["detached"] and tpu.kernels == "reference"
    assert nxp.granularity == ["per-tensor"] and nxp.heads == ["detached"]
    assert backend.options_model("tflite")(granularity="per-tensor").granularity == ["per-tensor"]
    with pytest.raises(ValidationError):
        backend.options_model("nxp")(granularity="per-layer")
    with pytest.raises(ValidationError):
        backend.options_model("nxp")(heads=["detached", "detached"])
    with pytest.raises(ValidationError):
        backend.options_model("tflite")(compile="auto")  # edgetpu-only key


def test_checker_flags_silu_for_edgetpu_once_with_the_fix(onnx_pair, tmp_path) -> None:
    models, detector = onnx_pair("demo-yolov8n-silu.yaml")
    job = make_job("edgetpu", models, detector.head, tmp_path / "s", source_activations=detector.activations)
    findings = TFLiteBackend().check(job)
    assert [f.rule for f in findings] == ["edgetpu.silu"]
    silu = findings[0]
    assert silu.severity is Severity.FALLBACK and silu.fix == FIX
    assert silu.remedy == {"command": "adapt", "activation": "relu6"}  # the table names the command, as data
    assert "more like it" in silu.where and "SiLU" in silu.message


def test_checker_passes_relu6_for_edgetpu_and_nxp(onnx_pair, tmp_path) -> None:
    models, detector = onnx_pair("demo-yolov8n-relu6.yaml")
    for target in ("edgetpu", "nxp", "tflite"):
        assert TFLiteBackend().check(make_job(target, models, detector.head, tmp_path / target)) == []


def test_checker_only_warns_on_silu_for_nxp(onnx_pair, tmp_path) -> None:
    models, detector = onnx_pair("demo-yolov8n-silu.yaml")
    findings = TFLiteBackend().check(make_job("nxp", models, detector.head, tmp_path / "n"))
    assert [(f.rule, f.severity) for f in findings] == [("nxp.silu", Severity.WARNING)]


def test_edgetpu_silu_is_refused_by_the_default_fallback_policy(onnx_pair, tmp_path) -> None:
    """The check only reports; core's policy (the Edge TPU profile: no fallback by default) refuses."""
    models, detector = onnx_pair("demo-yolov8n-silu.yaml")
    job = make_job("edgetpu", models, detector.head, tmp_path / "staging")
    with pytest.raises(EdgeqError) as err:
        job.fallback.enforce(TFLiteBackend().check(job))
    assert "SiLU" in err.value.problem and err.value.fix.startswith(FIX)
    assert "--allow-fallback" in err.value.fix and "host CPU" in err.value.fix
    assert list(job.staging.iterdir()) == []
    accepted = make_job("edgetpu", models, detector.head, tmp_path / "accepted", allow_fallback=True)
    accepted.fallback.enforce(TFLiteBackend().check(accepted))  # the same findings pass when fallback is allowed


def test_cli_edgetpu_silu_is_one_line_exit_2(cli, small_data, tmp_path) -> None:
    need_stack()  # the CLI checks the backend's dependencies before anything else
    out = tmp_path / "out"
    code, _, stderr = cli("export", "--target", "edgetpu", "--model", Path(__file__).parents[3] / "edgeq" /
                               "assets" / "demo-yolov8n-silu.yaml", "--imgsz", IMGSZ, "--data", small_data,
                               "--calib-images", 4, "--val-images", 4, "--out", out, "--no-progress")
    assert code == 2
    error = [line for line in stderr.splitlines() if "error" in line.lower()]
    assert len(error) == 1 and "SiLU" in error[0] and FIX in error[0] and "--allow-fallback" in error[0]
    command = f"edgeq adapt --activation relu6 --model {Path(__file__).parents[3]}/edgeq/assets/demo-yolov8n-silu.yaml"
    assert f"{command} --data {small_data} --target edgetpu" in stderr  # the exact fix for this model and data
    assert "Traceback" not in stderr
    assert not out.exists() and not list(tmp_path.glob(".out*"))


def _unconvertible_onnx(path: Path) -> Path:
    """A valid ONNX file with an op no converter knows: onnx2tf fails on it for real."""
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 32, 32])
    y = helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 3, 32, 32])
    nodes = [helper.make_node("Relu", ["images"], ["r"], name="relu"),
             helper.make_node("EdgeqNoSuchOp", ["r"], ["out"], name="mystery")]
    model = helper.make_model(helper.make_graph(nodes, "bad", [x], [y]), opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, str(path))
    return path


def test_converter_failure_is_a_stage_error_with_the_log_kept(tmp_path) -> None:
    need_stack()
    from edgeq.head import HeadSpec
    from edgeq.model import OnnxModels

    bad = _unconvertible_onnx(tmp_path / "bad.onnx")
    spec = HeadSpec(nc=6, reg_max=16, strides=(8, 16, 32), imgsz=32, names=tuple("abcdef"))
    calib = [np.full((1, 3, 32, 32), v / 255.0, np.float32) for v in (0, 128, 255)]
    root = tmp_path / ".out.partial"
    job = make_job("tflite", OnnxModels(body=bad, full=bad), spec, root / "artifacts", calibration=calib,
                   heads=["detached"])
    with pytest.raises(StageError) as err:
        TFLiteBackend().build(job)
    assert err.value.stage == "onnx2tf"
    log = Path(err.value.log_path)
    assert log.parent == root and log.name == "tflite-detached.log"  # the job's log folder, where core keeps logs
    assert "EdgeqNoSuchOp" in log.read_text() or "Traceback" in log.read_text()
    assert str(log) in err.value.one_line() and "\n" not in err.value.one_line()
    assert not any(job.staging.rglob("*.tflite")) and not (job.staging / f".{job.target}-work").exists()
