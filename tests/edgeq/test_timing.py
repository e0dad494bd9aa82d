"""Interleaved timing: every (artifact, batch) runner loaded first, then timed in rotating rounds."""

import time
from typing import ClassVar

import numpy as np
import pytest

from edgeq.evaluation.timing import TimedArtifact, time_interleaved
from edgeq.runners import BatchNotSupported, Runner


class _Recorder(Runner):
    """A runner whose only job is to record when it is called (the timing logic is what is under test)."""

    calls: ClassVar[list[tuple[str, int]]] = []

    def __init__(self, name: str, resizable: bool = True) -> None:
        super().__init__(name)
        self.name, self.resizable, self.batch = name, resizable, 1
        self.runtime = "recorder"

    def load(self) -> None:
        pass

    def resize(self, batch: int) -> None:
        if not self.resizable:
            raise BatchNotSupported(f"{self.name} is fixed at batch 1")
        self.batch = batch

    def infer(self, images: np.ndarray) -> dict[str, np.ndarray]:
        assert images.shape[0] == self.batch
        self.calls.append((self.name, self.batch))
        time.sleep(0.001 * self.batch)
        return {"output0": images}


def test_rounds_rotate_over_every_runner_and_large_batches_get_fewer():
    _Recorder.calls = []
    artifacts = [TimedArtifact("a", lambda: _Recorder("a")), TimedArtifact("b", lambda: _Recorder("b"))]
    sample = np.zeros((1, 3, 8, 8), np.float32)
    timings = time_interleaved(artifacts, sample, batches=[1, 4], runs=20, warmup=2, progress=False)
    timed = _Recorder.calls[2 * 4:]  # after two warm-up calls of each of the four runners
    assert timed.count(("a", 1)) == 20 and timed.count(("a", 4)) == 5  # 20 / 4 rounds for batch 4
    first_round = timed[:4]
    assert sorted(first_round) == sorted({("a", 1), ("a", 4), ("b", 1), ("b", 4)})  # each once per round
    assert timed[4] != timed[0]  # the order rotates
    for t in timings:
        assert t.median_ms is not None and t.q1_ms <= t.median_ms <= t.q3_ms
        assert t.images_per_s == pytest.approx(1000 * t.batch / t.median_ms, rel=1e-2)


def test_a_runner_that_cannot_change_batch_says_why_and_the_rest_are_timed():
    _Recorder.calls = []
    artifacts = [TimedArtifact("fixed", lambda: _Recorder("fixed", resizable=False)),
                 TimedArtifact("free", lambda: _Recorder("free"))]
    timings = {(t.artifact, t.batch): t for t in time_interleaved(
        artifacts, np.zeros((1, 3, 8, 8), np.float32), batches=[1, 8], runs=10, warmup=1, progress=False)}
    assert timings[("fixed", 8)].median_ms is None and "fixed at batch 1" in timings[("fixed", 8)].note
    assert timings[("fixed", 1)].median_ms is not None and timings[("free", 8)].median_ms is not None


def test_static_onnx_in_onnxruntime_is_not_resized(yolo_yaml, tmp_path):
    from edgeq.model import export_onnx, load_detector
    from edgeq.runners.onnxruntime import OnnxRuntimeRunner

    models = export_onnx(load_detector(yolo_yaml, 320), tmp_path)
    with OnnxRuntimeRunner(models.full) as runner, pytest.raises(BatchNotSupported, match="only at the batch"):
        runner.resize(4)
