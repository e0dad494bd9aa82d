"""The kernel check and the parallel reference runner on a real converted file (160 px, trained ReLU6 demo): the
check's verdict is what LiteRT computes, and several reference interpreters side by side give the very outputs
of one."""

from __future__ import annotations

import numpy as np
import pytest
from tflite_testlib import make_job, need_stack

need_stack()


@pytest.fixture(scope="module")
def nxp_artifact(onnx_pair, calib_160, tmp_path_factory):
    from edgeq_tflite import TFLiteBackend

    models, detector = onnx_pair("demo-yolov8n-relu6-320.pt")
    job = make_job("nxp", models, detector.head, tmp_path_factory.mktemp("out") / "artifacts",
                   calibration=calib_160[0])
    (artifact,) = TFLiteBackend().build(job).artifacts
    return job, artifact


def _images(calib, n):
    return [np.asarray(calib[i], dtype=np.float32) for i in range(n)]


def test_the_check_counts_what_litert_computes(nxp_artifact, calib_160) -> None:
    from edgeq_tflite.kernels import check_kernels
    from edgeq_tflite.runner import LiteRTRunner

    job, artifact = nxp_artifact
    record = artifact.extra["kernel_check"]
    assert record["images"] == job.options.kernel_check_images == 4
    images = _images(calib_160[0], 4)
    with LiteRTRunner(artifact.path, head=job.head, layout=artifact.layout, resolver="BUILTIN_REF") as ref, \
            LiteRTRunner(artifact.path, head=job.head, layout=artifact.layout, resolver="AUTO") as fast:
        differ = sum(int(np.count_nonzero(ref.infer(x)[k] != fast.infer(x)[k]))
                     for x in images for k in job.head.body_outputs)
    assert record["differing_elements"]["AUTO"] == differ  # the check's count is LiteRT's, element by element
    check = check_kernels(artifact.path, images)
    assert check.record() == record  # deterministic: the same images give the same verdict
    if check.identical:
        assert check.chosen in artifact.note and not artifact.slow_evaluation
    else:
        assert "reference kernels" in artifact.note and artifact.slow_evaluation
        assert check.ops and all(d.elements > 0 and d.max_steps >= 1 for d in check.ops)


def test_parallel_reference_interpreters_give_the_outputs_of_one(nxp_artifact, calib_160) -> None:
    from edgeq_tflite.runner import LiteRTRunner

    job, artifact = nxp_artifact
    images = np.concatenate(_images(calib_160[0], 3))
    with LiteRTRunner(artifact.path, head=job.head, layout=artifact.layout, resolver="BUILTIN_REF") as one:
        expected = [one.infer(images[i:i + 1]) for i in range(3)]
    with LiteRTRunner(artifact.path, head=job.head, layout=artifact.layout, resolver="BUILTIN_REF",
                      parallel=2) as two:
        assert two.eval_batch == 2 and "2 processes" in two.runtime
        got = [two.infer(images[:2]), two.infer(images[2:])]
    for name in job.head.body_outputs:
        assert np.array_equal(np.concatenate([e[name] for e in expected]), np.concatenate([g[name] for g in got]))
        assert got[0][name].shape[1:] == expected[0][name].shape[1:]  # NCHW, as one interpreter gives
