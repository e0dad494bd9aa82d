"""The TensorRT backend through its Backend interface: bad input refused in one line with nothing written, and
real DLA / GPU builds (ModelOpt PTQ on CPU ONNX Runtime) of the demo-shaped YOLOv8n."""

import json
import subprocess
import sys

import numpy as np
import pytest
from edgeq_tensorrt import DLAOptions, TensorRTBackend
from trt_graphs import make_model, rule_breaker

from edgeq.backend import make_job
from edgeq.errors import EdgeqError
from edgeq.head import HeadLayout

pytest.importorskip("modelopt")


def _job(tmp_path, target, body, full, head, calibration=(), allow_fallback=True, **options):
    staging = tmp_path / "staging"
    staging.mkdir(exist_ok=True)
    return make_job(TensorRTBackend(), target, options=options, allow_fallback=allow_fallback,
                    fallback_flag="--no-gpu-fallback", head=head, body_onnx=body, full_onnx=full,
                    calibration=calibration, staging=staging, activations={}, progress=False)


def _save(model, path):
    import onnx

    onnx.save(model, str(path))
    return path


def test_package_imports_without_heavy_dependencies():
    code = ("import sys, edgeq_tensorrt; heavy = [m for m in ('modelopt', 'tensorrt', 'onnx', 'onnxruntime', 'torch')"
            " if m in sys.modules]; print(heavy); assert not heavy")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stdout + run.stderr


def test_registered_targets_and_options():
    backend = TensorRTBackend()
    assert set(backend.targets) == {"tensorrt", "dla"}
    assert backend.requires == ("modelopt", "onnx_graphsurgeon", "onnxscript", "lief")  # what ModelOpt ONNX imports
    assert {t: p.fallback_default for t, p in backend.profiles.items()} == {"tensorrt": True, "dla": True}
    with pytest.raises(Exception, match="extra"):
        DLAOptions(calibration_methd="max")
    with pytest.raises(Exception, match="JetPack"):
        DLAOptions(trt_version="11.2")
    assert DLAOptions().detach_head and DLAOptions().fp16_last_convs


def test_dynamic_shapes_are_refused_for_dla_and_nothing_is_written(tmp_path, yolo_onnx):
    _, _, head = yolo_onnx["relu6"]
    path = _save(rule_breaker(), tmp_path / "dynamic.onnx")
    job = _job(tmp_path, "dla", path, path, head)
    findings = TensorRTBackend().check(job)
    assert any(f.rule == "dla.static-shapes" and f.severity.value == "error" for f in findings)
    with pytest.raises(EdgeqError, match="dynamic shape") as info:
        TensorRTBackend().build(job)
    assert "\n" not in str(info.value) and "Fix:" in str(info.value)
    assert list(job.staging.iterdir()) == []


def test_layer_dla_cannot_run_is_refused_without_gpu_fallback(tmp_path, yolo_onnx):
    from onnx import TensorProto, helper, numpy_helper

    _, _, head = yolo_onnx["relu6"]
    model = make_model([helper.make_node("Div", ["images", "two"], ["out"], name="divide")],
                       [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 32, 32])],
                       [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 3, 32, 32])],
                       [numpy_helper.from_array(np.array(2.0, np.float32), "two")])
    path = _save(model, tmp_path / "div.onnx")
    job = _job(tmp_path, "dla", path, path, head, allow_fallback=False)
    with pytest.raises(EdgeqError, match="divide: element-wise Div") as info:
        TensorRTBackend().build(job)
    assert "drop --no-gpu-fallback" in str(info.value) and "\n" not in str(info.value)
    assert list(job.staging.iterdir()) == []


def test_fallback_policy_refuses_the_check_findings_with_exit_2(tmp_path, yolo_onnx):
    _, _, head = yolo_onnx["relu6"]
    path = _save(rule_breaker(), tmp_path / "rb.onnx")
    job = _job(tmp_path, "dla", path, path, head, allow_fallback=False)
    with pytest.raises(EdgeqError) as info:
        job.fallback.enforce(TensorRTBackend().check(job))
    assert info.value.exit_code == 2


@pytest.fixture(scope="module")
def dla_build(tmp_path_factory, yolo_onnx, calib_images):
    body, full, head = yolo_onnx["relu6"]
    tmp = tmp_path_factory.mktemp("dla")
    job = _job(tmp, "dla", body, full, head, calibration=calib_images, allow_fallback=False)
    return job, TensorRTBackend().build(job).artifacts


def test_dla_build_emits_cache_scripts_and_table(dla_build):
    import onnx
    from edgeq_tensorrt.calib_cache import parse_cache

    job, artifacts = dla_build
    assert sorted(p.name for p in (job.staging / "dla").iterdir()) == ["tensorrt10", "tensorrt11"]
    out = job.staging / "dla" / "tensorrt10"
    assert sorted(p.name for p in out.iterdir()) == ["build_dla.py", "build_dla.sh", "emulation",
                                                     "model-dla-layers.md", "model-head.json",
                                                     "model-precision.json", "model.cache", "model.onnx"]
    assert sorted(p.name for p in (job.staging / "dla" / "tensorrt11").iterdir()) == [
        "build_dla.py", "build_dla.sh", "emulation", "model-dla-layers.md", "model-head.json", "model-io.json",
        "model.onnx"]
    assert not (job.staging / f".{job.target}-work").exists()
    model = onnx.load(str(out / "model.onnx"))
    assert not [n for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    assert [o.name for o in model.graph.output] == job.head.body_outputs  # detached: ends at box_i / cls_i
    cache = parse_cache(out / "model.cache")
    assert cache.version == 100300 and cache.scales["images"] == pytest.approx(1 / 127, rel=1e-6)
    activations = [o for n in model.graph.node for o in n.output if o not in job.head.body_outputs]
    assert set(activations) <= set(cache.scales)  # every tensor DLA needs, incl. every Concat input
    concat_groups = [[*n.input, n.output[0]] for n in model.graph.node if n.op_type == "Concat"]
    assert all(len({cache.scales[t] for t in g}) == 1 for g in concat_groups)
    by_name = {a.name: a for a in artifacts}
    assert set(by_name) == {"dla-int8-fp16-last-convs", "dla-int8", "dla-engine", "dla-trt11-int8-fp16-last-convs",
                            "dla-trt11-engine"}
    assert [a.name for a in artifacts if a.role.value == "deployable"] == ["dla-int8-fp16-last-convs"]
    assert by_name["dla-trt11-int8-fp16-last-convs"].role.value == "comparison"
    assert by_name["dla-trt11-int8-fp16-last-convs"].note.startswith("TensorRT 11.x (tensorrt11/")
    assert by_name["dla-int8-fp16-last-convs"].note.startswith("TensorRT 10.x (tensorrt10/")
    assert by_name["dla-int8-fp16-last-convs"].status == "emulated"
    assert by_name["dla-int8-fp16-last-convs"].layout is HeadLayout.DETACHED
    from edgeq_tensorrt.runner import dla_cores

    if dla_cores():  # on a Jetson the engine is built and run
        assert by_name["dla-engine"].status == "measured"
    else:
        assert by_name["dla-engine"].status == "not-built" and "tensorrt10/build_dla.sh" in by_name["dla-engine"].note
        assert "tensorrt11/build_dla.sh" in by_name["dla-trt11-engine"].note
    extra = by_name["dla-int8-fp16-last-convs"].extra
    assert extra["gpu_fallback_layers"] == 0 and extra["dla_subgraphs"] == 1 and extra["merged_quantizers"] > 0
    assert "0 GPU fallback, 1 DLA subgraph" in (out / "model-dla-layers.md").read_text()
    fp16 = json.loads((out / "model-precision.json").read_text())["fp16_layers"]
    assert len(fp16) == 6 and all(n.endswith("2/Conv") for n in fp16)  # the final conv of each cv2/cv3 branch


def test_dla_build_script_has_the_trtexec_flags(dla_build):
    job, _ = dla_build
    script = (job.staging / "dla" / "tensorrt10" / "build_dla.sh").read_text()
    for flag in ("--onnx=model.onnx", "--useDLACore=0", "--int8", "--fp16", "--calib=model.cache",
                 "--inputIOFormats=int8:dla_hwc4", "--outputIOFormats=fp16:chw16", "--precisionConstraints=obey",
                 "--layerPrecisions=/cv2.0/cv2.0.2/Conv:fp16", "--buildDLAStandalone", "--saveEngine=model.loadable",
                 "--allowGPUFallback"):
        assert flag in script, flag
    assert 'mode="${1:-standalone}"' in script  # --no-gpu-fallback: standalone loadable by default
    assert subprocess.run(["bash", "-n", str(job.staging / "dla" / "tensorrt10" / "build_dla.sh")],
                          check=False).returncode == 0
    source = (job.staging / "dla" / "tensorrt10" / "build_dla.py").read_text()
    compile(source, "build_dla.py", "exec")
    for api in ("IInt8EntropyCalibrator2", "DeviceType.DLA", "DLA_core", "OBEY_PRECISION_CONSTRAINTS",
                "DLA_HWC4", "CHW16", "DLA_STANDALONE", "GPU_FALLBACK", "/cv3.2/cv3.2.2/Conv"):
        assert api in source, api


def test_dla_emulation_runs_and_differs_from_float(dla_build, calib_images):
    import onnxruntime as ort

    job, artifacts = dla_build
    x = np.asarray(calib_images[0])
    ref = ort.InferenceSession(str(job.body_onnx), providers=["CPUExecutionProvider"]).run(None, {"images": x})
    for artifact in artifacts:
        if artifact.open_runner is None:
            continue
        with artifact.open_runner() as runner:
            got = runner.infer(x)
        assert set(got) == set(job.head.body_outputs)
        diffs = [np.abs(got[name] - r).max() for name, r in zip(job.head.body_outputs, ref)]
        assert all(np.isfinite(d) for d in diffs) and max(diffs) > 0


def test_gpu_build_unifies_scales(tmp_path, yolo_onnx, calib_images):
    import onnx
    from edgeq_tensorrt.unify import group_scale_spread

    body, full, head = yolo_onnx["silu"]
    job = _job(tmp_path, "tensorrt", body, full, head, calibration=calib_images)
    artifacts = TensorRTBackend().build(job).artifacts
    qdq, typed, engine, typed_engine = artifacts
    from edgeq_tensorrt.runner import tensorrt_available

    assert qdq.status == typed.status == "emulated"
    assert qdq.path.parent.name == "tensorrt10" and typed.path.parent.name == "tensorrt11"
    if tensorrt_available():
        assert "measured" in (engine.status, typed_engine.status)
    else:
        assert engine.status == "not-built" and "tensorrt/tensorrt10/build_engine.sh" in engine.note
        assert typed_engine.status == "not-built" and "tensorrt/tensorrt11/build_engine.sh" in typed_engine.note
    assert qdq.extra["merged_quantizers"] > 10
    model = onnx.load(str(qdq.path))
    assert not [g for g in group_scale_spread(model, job.plan.scheme.unified) if g[1] != g[2]]
    head_q = [n for n in model.graph.node if n.op_type == "QuantizeLinear" and
              any(n.input[0].startswith(p) for p in ("edgeq_head/",))]
    assert not head_q  # decode head stays float
    with qdq.open_runner() as runner:
        out = runner.infer(np.asarray(calib_images[0]))["output0"]
    assert out.shape == (1, 4 + head.nc, 2100) and np.isfinite(out).all()
    # our own GPU Q/DQ graph translates to a DLA cache: every body tensor gets a scale, read or inferred
    from edgeq_tensorrt.translate import translate_model

    translation = translate_model(model)
    assert translation.inferred and not translation.weight_mismatch
    assert all(t.startswith("edgeq_head/") or t in head.body_outputs for t in translation.unscaled)
    # TensorRT 11: the same Q/DQ scales, the body's float layers typed FP16 by AutoCast, the decode head FP32
    typed_model = onnx.load(str(typed.path))
    # AutoCast stores the scales of the Q/DQ it types FP16 as FP16: the same scales rounded to FP16, the ones
    # below FP16's smallest value (this untrained graph's near-zero tensors) raised to it
    assert _quantizer_scales(typed_model) == {t: pytest.approx(max(float(np.float16(v)), 2.0 ** -24), rel=1e-6)
                                              for t, v in _quantizer_scales(model).items()}
    elem = _output_types(typed_model)
    body_convs = [n for n in typed_model.graph.node if n.op_type == "Conv" and not n.name.startswith("edgeq_head/")]
    head_nodes = [n for n in typed_model.graph.node if n.name.startswith("edgeq_head/")]
    assert body_convs and all(elem[n.output[0]] == onnx.TensorProto.FLOAT16 for n in body_convs)
    assert head_nodes and all(elem[n.output[0]] == onnx.TensorProto.FLOAT for n in head_nodes)
    assert typed.extra["fp16_nodes"] > typed.extra["fp32_nodes"] > 0
    for artifact in (qdq, typed):  # every emitted trtexec line holds to its generation's flag table
        _check_trtexec_lines(artifact.companions[0], artifact.extra["tensorrt"])


def _quantizer_scales(model) -> dict[str, float]:
    """Tensor (looked through AutoCast's Casts) -> the largest scale of its QuantizeLinear."""
    from onnx import numpy_helper

    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    casts = {n.output[0]: n.input[0] for n in model.graph.node if n.op_type == "Cast"}
    return {casts.get(n.input[0], n.input[0]): float(inits[n.input[1]].max()) for n in model.graph.node
            if n.op_type == "QuantizeLinear"}


def _output_types(model) -> dict[str, int]:
    import onnx

    typed = onnx.shape_inference.infer_shapes(model)
    return {v.name: v.type.tensor_type.elem_type for v in (*typed.graph.value_info, *typed.graph.output)}


def _check_trtexec_lines(script, generation: str) -> int:
    """Every trtexec command of `script` uses only flags its TensorRT generation accepts; returns how many."""
    import shlex

    from edgeq_tensorrt.generations import generations, removed_flags

    lines = [line.split('"$TRTEXEC"', 1)[1] for line in script.read_text().splitlines()
             if '"$TRTEXEC" --' in line and "--version" not in line]  # the build commands, not the version probe
    for line in lines:
        argv = ["trtexec", *shlex.split(line.replace(";;", "").replace('"$@"', ""))]
        assert removed_flags(argv, generations()[generation]) == [], (script, line)
    assert lines
    return len(lines)


def test_dla_tensorrt11_graph_is_strongly_typed_with_the_cache_scales(dla_build):
    """The TensorRT 11.4.1 DLA ONNX: INT8 input, a Q/DQ pair with the cache's scale on every DLA layer's INT8
    tensors, INT8 weights on the INT8 convs, the last convs typed FP16 behind a Cast, FP16 outputs."""
    import onnx
    from edgeq_tensorrt.calib_cache import parse_cache
    from edgeq_tensorrt.emulate import fused_silu_tensors
    from edgeq_tensorrt.qdq import GraphIndex
    from onnx import TensorProto, numpy_helper

    job, artifacts = dla_build
    folder = job.staging / "dla"
    plain = onnx.load(str(folder / "tensorrt10" / "model.onnx"))
    cache = parse_cache(folder / "tensorrt10" / "model.cache").scales
    fp16 = set(json.loads((folder / "tensorrt10" / "model-precision.json").read_text())["fp16_layers"])
    typed = onnx.load(str(folder / "tensorrt11" / "model.onnx"))
    assert [i.type.tensor_type.elem_type for i in typed.graph.input] == [TensorProto.INT8]
    assert {o.type.tensor_type.elem_type for o in typed.graph.output} == {TensorProto.FLOAT16}
    inits = {i.name: numpy_helper.to_array(i) for i in typed.graph.initializer}
    producer = {o: n for n in typed.graph.node for o in n.output}
    quantized = {}  # float tensor -> scale of the Q/DQ pair on it
    for q in (n for n in typed.graph.node if n.op_type == "QuantizeLinear"):
        dqs = [n for n in typed.graph.node if n.op_type == "DequantizeLinear" and n.input[0] == q.output[0]]
        assert len(dqs) == 1 and float(inits[dqs[0].input[1]]) == float(inits[q.input[1]])
        quantized[q.input[0]] = float(inits[q.input[1]])
    # every DLA layer's INT8 tensor (not the inside of a fused Conv + SiLU, not a network output) has its pair,
    # with the scale of the TensorRT 10 cache: both generations quantize identically
    inside = fused_silu_tensors(GraphIndex(plain))
    outputs = {o.name for o in plain.graph.output}
    int8_tensors = [o for n in plain.graph.node if n.name not in fp16 for o in n.output
                    if o not in inside and o not in outputs and o in cache]
    assert len(int8_tensors) > 100
    assert all(quantized.get(t) == pytest.approx(cache[t], rel=1e-6) for t in int8_tensors)
    assert float(inits[next(n for n in typed.graph.node if n.input[0] == "images").input[1]]) == \
        pytest.approx(cache["images"], rel=1e-6)
    convs = [n for n in typed.graph.node if n.op_type == "Conv"]
    assert len(convs) == sum(n.op_type == "Conv" for n in plain.graph.node)
    for conv in convs:
        weight = producer.get(conv.input[1])
        if conv.name in fp16:  # FP16 in (a Cast where the type changes), FP16 weights, FP16 out
            assert producer[conv.input[0]].op_type == "Cast" and inits[conv.input[1]].dtype == np.float16
            assert producer[producer[conv.input[0]].input[0]].op_type == "DequantizeLinear"
            assert conv.output[0] in outputs
        else:  # INT8: dequantized INT8 activations and per-channel INT8 weights
            assert producer[conv.input[0]].op_type == "DequantizeLinear"
            assert weight.op_type == "DequantizeLinear" and inits[weight.input[0]].dtype == np.int8
    assert {c.name for c in convs if c.name in fp16} == {n for n in fp16 if n.endswith("2/Conv")}
    for script in ("build_dla.sh",):
        assert _check_trtexec_lines(folder / "tensorrt11" / script, "11") == 2
        assert _check_trtexec_lines(folder / "tensorrt10" / script, "10") == 2
    source = (folder / "tensorrt11" / "build_dla.py").read_text()
    from edgeq_tensorrt.generations import generations

    assert not [api for api in generations()["11"].python_removed if api in source]


def test_cli_refuses_a_layer_dla_cannot_run_under_no_gpu_fallback(tmp_path, cli):
    """The decode head kept in the engine has 3-D reshapes DLA cannot run: exit 2, one error line, no output."""
    out = tmp_path / "out"
    code, _, err = cli("export", "--target", "dla", "--no-gpu-fallback", "--set", "options.detach_head=false",
                       "--calib-images", "4", "--val-images", "4", "--out", out, "--no-progress")
    errors = [line for line in err.splitlines() if line.startswith("edgeq: error:")]
    assert code == 2 and len(errors) == 1
    assert "edgeq_head/" in errors[0] and "Fix:" in errors[0] and "drop --no-gpu-fallback" in errors[0]
    assert not out.exists() and not list(tmp_path.glob(".out.edgeq-partial-*"))


def test_cli_refuses_a_tensorrt_without_dla_for_the_cache_header(tmp_path, cli):
    out = tmp_path / "out"
    code, _, err = cli("export", "--target", "dla", "--set", "options.trt_version=11.1", "--out", out,
                       "--no-progress")
    assert code == 2 and "options.trt_version" in err and "JetPack's TensorRT 10.x" in err
    assert not out.exists()
