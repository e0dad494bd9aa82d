"""One source of truth for the scheme: the groups of tensors the build gives one scale are the groups the emulation
(`edgeq analyze`, the search) ties, and the tensors ModelOpt quantizes are the ones the scheme says it does."""

import json

import numpy as np
import onnx
import pytest
from edgeq_tensorrt import TensorRTBackend
from edgeq_tensorrt.qdq import GraphIndex, activation_quantizers
from edgeq_tensorrt.unify import scale_groups

from edgeq.analyze.fakequant import QuantGraph
from edgeq.backend import make_job
from edgeq.head import HEAD_PREFIX

pytest.importorskip("modelopt")


def _build(tmp_path, target, yolo_onnx, calib_images, **options):
    body, full, head = yolo_onnx["silu"]
    staging = tmp_path / "staging"
    staging.mkdir()
    options = {"tensorrt": "10", **options}  # the scheme is the generations' shared calibration: one suffices
    job = make_job(TensorRTBackend(), target, options=options, head=head, body_onnx=body, full_onnx=full,
                   calibration=calib_images, staging=staging, activations={}, progress=False)
    return job, TensorRTBackend().build(job)


def _emulated_groups(job, path) -> set[frozenset[str]]:
    return set(QuantGraph(onnx.load(str(path)), job.plan.scheme).tied.values())


def test_gpu_build_ties_exactly_the_groups_the_emulation_ties(tmp_path, yolo_onnx, calib_images):
    job, built = _build(tmp_path, "tensorrt", yolo_onnx, calib_images)
    qdq = onnx.load(str(built.shipped().path))
    index = GraphIndex(qdq)
    quantized = {q.tensor for q in activation_quantizers(index)}
    built_groups = {frozenset(g & quantized) for g in scale_groups(qdq, job.plan.scheme.unified, HEAD_PREFIX)
                    if len(g & quantized) > 1}
    assert built_groups and built_groups == _emulated_groups(job, job.full_onnx)
    scales = {q.tensor: q.scale for q in activation_quantizers(index)}
    assert all(len({scales[t] for t in group}) == 1 for group in built_groups)  # and the build unified them


def test_modelopt_quantizes_the_inputs_the_scheme_names(tmp_path, yolo_onnx, calib_images):
    job, built = _build(tmp_path, "tensorrt", yolo_onnx, calib_images)
    qdq = onnx.load(str(built.shipped().path))
    quantized = {q.tensor for q in activation_quantizers(GraphIndex(qdq))}
    emulated = {t for t in QuantGraph(onnx.load(str(job.full_onnx)), job.plan.scheme).activation_tensors()
                if not t.startswith(HEAD_PREFIX)}
    assert quantized == emulated


def test_unify_scales_off_reaches_the_plan_and_the_build(tmp_path, yolo_onnx, calib_images):
    job, built = _build(tmp_path, "tensorrt", yolo_onnx, calib_images, unify_scales=False)
    assert job.plan.scheme.unified == () and not _emulated_groups(job, job.full_onnx)
    assert built.shipped().extra["merged_quantizers"] == 0


def test_dla_cache_gives_each_emulated_group_one_scale(tmp_path, yolo_onnx, calib_images):
    job, built = _build(tmp_path, "dla", yolo_onnx, calib_images)
    folder = built.shipped().path.parent
    scales = json.loads((folder / "model-precision.json").read_text())["int8_tensor_scales"]
    groups = [g for g in _emulated_groups(job, job.body_onnx) if sum(t in scales for t in g) > 1]
    assert groups
    for group in groups:
        values = {scales[t] for t in group if t in scales}
        assert np.ptp(list(values)) == 0, group
