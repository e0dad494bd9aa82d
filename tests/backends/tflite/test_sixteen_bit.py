"""16x8 (int16 activations, int8 weights) beside INT8, from the real converter on the trained ReLU6 demo (160 px):
one conversion makes both files; the 16x8 file is full-integer of its own kind, compiles whole with Vela, runs on
LiteRT's reference kernels and is closer to FP32 than the INT8 file on the same images; targets whose device
runs INT8 only refuse it in one line."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from tflite_testlib import make_job, need_stack

from edgeq.errors import EdgeqError

need_stack()
if importlib.util.find_spec("ethosu.vela") is None:
    pytest.skip("Vela not installed: pip install 'edgeq[tflite]'", allow_module_level=True)


@pytest.fixture(scope="module")
def both(onnx_pair, calib_160, tmp_path_factory):
    """ethos-u with `activations: [int8, int16]`: one onnx2tf run, two quantized files, each through Vela."""
    from edgeq_tflite import TFLiteBackend

    models, detector = onnx_pair("demo-yolov8n-relu6-320.pt")
    job = make_job("ethos-u", models, detector.head, tmp_path_factory.mktemp("sixteen") / "artifacts",
                   calibration=calib_160[0], activations=["int8", "int16"])
    result = TFLiteBackend().build(job)
    return job, models, {a.extra["activations"]: a for a in result.artifacts}


def test_one_export_builds_int8_and_16x8_files_each_full_integer_of_its_kind(both) -> None:
    from edgeq_tflite.backend import full_integer_problems
    from edgeq_tflite.graph import read_tflite

    _, _, arts = both
    int8, wide = arts["int8"], arts["int16"]
    assert int8.role.value == "deployable" and wide.role.value == "comparison"
    assert wide.name == "ethos-u-16x8-detached-per-channel" and wide.precision.label() == "w8a16+fp32-head"
    assert wide.extra["io_dtype"] == "int16" and int8.extra["io_dtype"] == "int8"
    graph = read_tflite(wide.path)
    assert full_integer_problems(graph, "int16") == [] and full_integer_problems(graph, "int8")
    dtypes = {t.dtype for layer in graph.layers for t in (*layer.inputs, *layer.outputs)}
    assert {"int16", "int64"} <= dtypes and "float32" not in dtypes  # int16 features, int64 biases
    assert "16x8 (int16 activations" in wide.note and "16x8 kernels" in wide.note


def test_vela_compiles_the_16x8_file_whole_and_estimates_it_slower(both) -> None:
    _, _, arts = both
    int8, wide = arts["int8"].extra["vela"], arts["int16"].extra["vela"]
    assert wide["cpu_ops"] == [] and wide["npu_ops"] > 50
    assert arts["int16"].path.with_name(f"{arts['int16'].path.stem}_vela.tflite") in arts["int16"].companions
    assert wide["macs"] == pytest.approx(int8["macs"], rel=1e-3)  # the same convolutions
    assert wide["inference_ms"] > int8["inference_ms"]  # twice the feature-map bytes to move


def test_16x8_is_closer_to_fp32_on_the_reference_kernels(both) -> None:
    """The error of each file against the FP32 ONNX on calibration images, through the runners the evaluator uses."""
    from edgeq.runners.onnxruntime import OnnxRuntimeRunner

    job, models, arts = both
    images = [np.asarray(job.calibration[i], dtype=np.float32) for i in range(4)]
    with OnnxRuntimeRunner(models.body) as runner:
        reference = [runner.infer(x) for x in images]
    error = {}
    for kind, art in arts.items():
        with art.open_runner() as runner:
            assert f"reference {'16x8' if kind == 'int16' else 'INT8'} kernels" in runner.runtime
            outputs = [runner.infer(x) for x in images]
        error[kind] = sum(float(np.sum((o[n] - r[n]) ** 2)) for o, r in zip(outputs, reference) for n in r)
    # int16 activations remove the activations' rounding, not the int8 weights': the rest of the error is theirs
    assert error["int16"] < error["int8"] / 2, error


@pytest.mark.parametrize("recipe", ["coral-usb-edgetpu", "nxp-imx8mp"])
def test_targets_that_run_int8_only_refuse_16x8_in_one_line(recipe) -> None:
    from edgeq.backend import backend_for
    from edgeq.intake import validated_options
    from edgeq.recipe import load_recipe

    loaded = load_recipe(recipe, sets=["options.activations=[int8, int16]"])
    with pytest.raises(EdgeqError) as info:
        validated_options(backend_for(loaded.target), loaded)
    line = info.value.one_line()
    assert "options.activations" in line and "16x8" in line and "tflite and ethos-u" in line and "\n" not in line


def test_keep_float_is_refused_where_16x8_is_the_whole_model_only(onnx_pair, tmp_path) -> None:
    from edgeq.intake import check_keep_float

    models, detector = onnx_pair("demo-yolov8n-relu6-320.pt")
    job = make_job("ethos-u", models, detector.head, tmp_path / "artifacts")
    with pytest.raises(EdgeqError) as info:
        check_keep_float(job, ["/model.0/conv/Conv"])
    line = info.value.one_line()
    assert "no per-layer higher precision" in line and "options.activations: int16" in line and "\n" not in line


@pytest.mark.slow
def test_max_drop_search_builds_the_whole_model_in_16x8_as_its_one_step(small_data, tmp_path) -> None:
    """--max-drop on the tflite target: no ranking, one step (the 16x8 file, built and scored like any step), and
    the report says that there is no per-layer step."""
    import json

    from edgeq.errors import AccuracyGateError
    from edgeq.pipeline import ExportRequest, run_export
    from edgeq.recipe import load_recipe

    recipe = load_recipe("tflite-int8-cpu", sets=[f"data={small_data}", "calibration.images=16",
                                                  "evaluation.images=16", "evaluation.latency_runs=3",
                                                  "options.heads=[detached]", "max_drop=1%"])
    try:
        run_export(ExportRequest(recipe=recipe, out=tmp_path / "out", progress=False))
    except AccuracyGateError:
        pass  # 16x8 may still be over a 1% budget: the search ran either way
    search = json.loads((tmp_path / "out" / "report.json").read_text())["search"]
    start, step = search["steps"]
    assert start["drop_map50_95"] > 0 and search["ranked"] == []
    assert step["kept"] == ["*"] and step["artifact"] == "tflite-16x8-detached-per-channel"
    assert step["map50_95"] > 0 and (tmp_path / "out" / step["path"]).is_file()
    assert search["higher_precision"].startswith("int16 (the TFLite converter's 16x8 mode")
    md = (tmp_path / "out" / "report.md").read_text()
    assert "keeps the whole model in the higher precision" in md and "| 1 | all |" in md
