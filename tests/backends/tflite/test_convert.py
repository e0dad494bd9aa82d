"""Real conversions (onnx2tf + TFLite converter, 160 px, trained ReLU6 demo weights) read back from the file:
full-integer, granularity, op tables, companions, and the LiteRT runner's output naming."""

from __future__ import annotations

import numpy as np
import pytest
from tflite_testlib import make_job, need_stack

from edgeq.errors import EdgeqError
from edgeq.head import HeadLayout, HeadSpec

need_stack()


@pytest.fixture(scope="module")
def built(onnx_pair, calib_160, tmp_path_factory):
    """tflite target, detached head, per-channel and per-tensor: one onnx2tf run, two quantized files."""
    from edgeq_tflite import TFLiteBackend

    models, detector = onnx_pair("demo-yolov8n-relu6-320.pt")
    calib, _ = calib_160
    job = make_job("tflite", models, detector.head, tmp_path_factory.mktemp("out") / "artifacts",
                   calibration=calib, heads=["detached"], granularity=["per-channel", "per-tensor"])
    artifacts = TFLiteBackend().build(job).artifacts
    return job, {a.extra["granularity"]: a for a in artifacts}


def test_two_artifacts_with_companions_and_no_leftovers(built) -> None:
    job, arts = built
    assert sorted(arts) == ["per-channel", "per-tensor"]
    for granularity, a in arts.items():
        assert a.name == f"tflite-int8-detached-{granularity}" and a.path.exists()
        assert a.status == "measured" and a.measure_latency and a.layout is HeadLayout.DETACHED
        assert a.precision.label() == "int8+fp32-head"
        head_json, ops_md = a.companions[:2]
        assert HeadSpec.from_json(head_json) == job.head
        assert "decode_detached" in a.note and head_json.name in a.note
        assert "| # | op |" in ops_md.read_text()
        assert a.extra["full_integer"] and a.extra["fp32_conversion_rel_error"] < 1e-3
    assert not (job.staging / f".{job.target}-work").exists()
    assert {p.name for p in job.staging.iterdir()} == {"tflite"}


def test_file_is_full_integer_with_the_asked_granularity(built) -> None:
    from edgeq_tflite.backend import full_integer_problems
    from edgeq_tflite.graph import read_tflite

    _, arts = built
    for granularity, a in arts.items():
        graph = read_tflite(a.path)
        assert full_integer_problems(graph) == []
        assert [t.dtype for t in graph.inputs] == ["int8"] and {t.dtype for t in graph.outputs} == {"int8"}
        assert graph.inputs[0].shape == (1, 160, 160, 3)
        convs = [layer for layer in graph.layers if layer.op == "CONV_2D"]
        weight_scales = {len(layer.inputs[1].scale) for layer in convs}
        if granularity == "per-tensor":
            assert weight_scales == {1}
        else:
            assert max(weight_scales) > 1
        assert sorted(graph.signature_outputs) == ["box_0", "box_1", "box_2", "cls_0", "cls_1", "cls_2"]


def test_relu6_detached_maps_whole_on_edgetpu_and_nxp_wants_per_tensor(built) -> None:
    from edgeq_tflite.graph import read_tflite
    from edgeq_tflite.optable import build_op_table

    _, arts = built
    tpu = build_op_table("edgetpu", read_tflite(arts["per-channel"].path))
    assert tpu.first_unmapped is None and tpu.on_accelerator == len(tpu.rows)
    assert [f.rule for f in tpu.findings] == []
    nxp_pc = build_op_table("nxp", read_tflite(arts["per-channel"].path))
    nxp_pt = build_op_table("nxp", read_tflite(arts["per-tensor"].path))
    assert {f.rule for f in nxp_pc.findings} == {"nxp.per-tensor"}
    assert nxp_pt.findings == []  # nearest resizes came out with half_pixel_centers=false


def _reference(job, images):
    import onnxruntime as ort

    sess = ort.InferenceSession(str(job.body_onnx), providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {"images": images})))


def test_runner_names_and_layout_match_the_onnx_body(built, calib_160) -> None:
    from edgeq_tflite import TFLiteBackend
    from edgeq_tflite.runner import LiteRTRunner

    job, arts = built
    images = np.asarray(calib_160[0][3])
    ref = _reference(job, images)
    with arts["per-channel"].open_runner() as runner:
        out = runner.infer(images)
    assert sorted(out) == sorted(ref)
    for name, value in out.items():
        assert value.shape == ref[name].shape and value.dtype == np.float32
        corr = np.corrcoef(value.ravel(), ref[name].ravel())[0, 1]
        assert corr > 0.98, (name, corr)  # INT8 vs FP32 of the same tensor, not a swapped one
    with TFLiteBackend().runner_for(arts["per-channel"].path) as found:  # what `edgeq eval x.tflite` opens
        assert found.input_shape == (1, 3, 160, 160)
    with LiteRTRunner(arts["per-channel"].path, reference_kernels=True) as plain:  # names from the signature
        again = plain.infer(images)
        steps = {name: d["quantization"][0] for name, d in plain.outputs}
        assert "reference" in plain.runtime
    assert sorted(again) == sorted(out)
    for name in out:  # reference and optimized INT8 kernels round differently, by a few steps at most
        diff = np.abs(again[name] - out[name]) / steps[name]
        assert diff.max() <= 4.01 and diff.mean() <= 1.0, (name, diff.max(), diff.mean())


def _without_signature(src, dst) -> None:
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromObj(schema.Model.GetRootAs(src.read_bytes(), 0))
    model.signatureDefs = []
    for t in model.subgraphs[0].tensors:  # and names that say nothing
        t.name = b"t"
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    dst.write_bytes(bytes(builder.Output()))


def test_runner_maps_by_shape_without_a_signature(built, calib_160, tmp_path) -> None:
    from edgeq_tflite.runner import LiteRTRunner

    job, arts = built
    bare = tmp_path / "bare.tflite"
    _without_signature(arts["per-channel"].path, bare)
    images = np.asarray(calib_160[0][5])
    with arts["per-channel"].open_runner() as runner:
        want = runner.infer(images)
    with LiteRTRunner(bare, head=job.head, layout=HeadLayout.DETACHED) as runner:
        got = runner.infer(images)
    assert sorted(got) == sorted(want)
    for name in want:
        np.testing.assert_array_equal(got[name], want[name])
    square = HeadSpec(nc=64, reg_max=16, strides=job.head.strides, imgsz=job.head.imgsz, names=tuple(map(str, range(64))))
    with pytest.raises(EdgeqError, match="cannot be told apart"):
        LiteRTRunner(bare, head=square, layout=HeadLayout.DETACHED).load()


def test_edgetpu_artifact_ships_the_compile_command(onnx_pair, calib_160, tmp_path) -> None:
    """No edgetpu_compiler here: the .tflite is built, the exact command is left beside it, the figures are
    emulated with the INT8 reference kernels, and the compiled file is declared not built."""
    import shutil

    from edgeq_tflite import TFLiteBackend

    if shutil.which("edgetpu_compiler"):
        pytest.skip("edgetpu_compiler is installed: the compile path runs instead")
    models, detector = onnx_pair("demo-yolov8n-relu6-320.pt")
    job = make_job("edgetpu", models, detector.head, tmp_path / "artifacts", calibration=calib_160[0])
    (art,) = TFLiteBackend().build(job).artifacts
    assert art.name == "edgetpu-int8-detached-per-channel" and art.status == "emulated"
    assert not art.measure_latency
    script = art.path.parent / "compile_edgetpu.sh"
    assert script in art.companions
    assert f"edgetpu_compiler -s -o . {art.path.name}" in script.read_text().splitlines()
    assert art.extra["edgetpu_compiler"] == "not on PATH" and "not on PATH" in art.note
    assert art.extra["ops_on_accelerator"] == art.extra["ops"] and art.extra["first_unmapped_op"] is None
    with art.open_runner() as runner:
        assert "reference" in runner.runtime
        out = runner.infer(np.asarray(calib_160[0][0]))
    assert sorted(out) == sorted(job.head.body_outputs)


def test_nxp_uint8_io_is_still_full_integer(onnx_pair, calib_160, tmp_path) -> None:
    from edgeq_tflite import TFLiteBackend
    from edgeq_tflite.backend import full_integer_problems
    from edgeq_tflite.graph import read_tflite

    models, detector = onnx_pair("demo-yolov8n-relu6-320.pt")
    job = make_job("nxp", models, detector.head, tmp_path / "artifacts", calibration=calib_160[0], io_dtype="uint8")
    (art,) = TFLiteBackend().build(job).artifacts
    graph = read_tflite(art.path)
    assert full_integer_problems(graph) == []
    assert graph.inputs[0].dtype == "uint8" and graph.inputs[0].zero_point == (0,)
    assert abs(graph.inputs[0].scale[0] - 1 / 255) < 1e-6  # camera pixels feed in unchanged
    assert graph.layers[0].op == "QUANTIZE" and {t.dtype for t in graph.outputs} == {"uint8"}
    assert art.extra["granularity"] == "per-tensor" and art.extra["findings"] == []
    images = np.asarray(calib_160[0][1])
    ref = _reference(job, images)
    with art.open_runner() as runner:
        out = runner.infer(images)
    for name in ref:
        assert np.corrcoef(out[name].ravel(), ref[name].ravel())[0, 1] > 0.98, name


def test_a_second_build_takes_its_file_from_the_cache_and_a_changed_option_misses(onnx_pair, calib_160, tmp_path,
                                                                                   monkeypatch, capsys) -> None:
    import hashlib

    from edgeq_tflite import TFLiteBackend

    monkeypatch.setenv("EDGEQ_CACHE", str(tmp_path / "cache"))
    models, detector = onnx_pair("demo-yolov8n-relu6-320.pt")
    body = hashlib.sha256(models.body.read_bytes()).hexdigest()

    def build(folder: str, **options):
        job = make_job("nxp", models, detector.head, tmp_path / folder, calibration=calib_160[0], **options)
        (art,) = TFLiteBackend().build(job).artifacts
        return art

    first = build("first")
    assert first.extra["conversion_cached"] is None and first.extra["export_s"]["onnx2tf"] > 0
    assert hashlib.sha256(models.body.read_bytes()).hexdigest() == body  # onnx2tf never writes the run's ONNX
    capsys.readouterr()
    second = build("second", kernel_check_images=1)  # an evaluation setting: nothing converts again
    assert second.extra["conversion_cached"] and second.extra["conversion_cached"] in second.note
    assert "conversion taken from the cache" in capsys.readouterr().err
    assert second.path.read_bytes() == first.path.read_bytes()
    changed = build("changed", io_dtype="uint8")  # a conversion option: converted anew
    assert changed.extra["conversion_cached"] is None and changed.path.read_bytes() != first.path.read_bytes()


def test_the_same_conversion_asked_twice_at_once_waits_for_the_first(tmp_path, monkeypatch) -> None:
    """Two --jobs workers converting one ONNX on one image set: the second enters only when the first is done
    (then its files are in the cache); another model does not wait."""
    import threading
    import time

    from edgeq_tflite import convert

    monkeypatch.setenv("EDGEQ_CACHE", str(tmp_path / "cache"))
    parts = {"onnx": "a" * 64, "calibration": "b" * 64, "io_dtype": "int8", "granularity": "per-channel",
             "worker": "c" * 64, "tools": {}}
    other = {**parts, "onnx": "d" * 64}
    order, first_inside = [], threading.Event()

    def first():
        with convert._converting(parts):
            first_inside.set()
            time.sleep(0.5)
            order.append("first done")

    def second(which, name):
        first_inside.wait()
        with convert._converting(which):
            order.append(name)

    threads = [threading.Thread(target=first), threading.Thread(target=second, args=(parts, "same model")),
               threading.Thread(target=second, args=(other, "other model"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert order.index("other model") < order.index("first done") < order.index("same model")
