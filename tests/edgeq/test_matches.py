"""The kept per-image matches reproduce faster-coco-eval's figure, and the paired bootstrap is seeded and paired."""

import numpy as np
import pytest

from edgeq.evaluation.metrics import CocoAccumulator
from edgeq.evaluation.uncertainty import PairedBootstrap, compare, noise_words, small_set_warning


def _random_accumulator(seed: int, images: int = 30, nc: int = 3, jitter: float = 6.0) -> CocoAccumulator:
    """Boxes with noisy detections, spurious ones and misses: every branch of the COCO matching gets used."""
    rng = np.random.default_rng(seed)
    acc = CocoAccumulator(nc=nc)
    for _ in range(images):
        n = int(rng.integers(0, 6))
        labels = np.column_stack([rng.integers(0, nc, n), rng.uniform(0.2, 0.8, (n, 2)), rng.uniform(0.05, 0.3, (n, 2))])
        w, h = 320, 240
        dets = []
        for cls, cx, cy, bw, bh in labels:
            if rng.random() < 0.85:
                x1, y1 = (cx - bw / 2) * w, (cy - bh / 2) * h
                x1, y1 = x1 + rng.normal(0, jitter), y1 + rng.normal(0, jitter)
                dets.append([x1, y1, x1 + bw * w, y1 + bh * h, rng.uniform(0.2, 1.0),
                             cls if rng.random() < 0.9 else (cls + 1) % nc])
        for _ in range(int(rng.integers(0, 8))):
            x1, y1 = rng.uniform(0, 250), rng.uniform(0, 180)
            dets.append([x1, y1, x1 + rng.uniform(5, 60), y1 + rng.uniform(5, 60), rng.uniform(0.001, 0.6),
                         int(rng.integers(0, nc))])
        acc.add((h, w), labels.astype(np.float32), np.asarray(dets, np.float32).reshape(-1, 6))
    return acc


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_matches_reproduce_faster_coco_eval(seed):
    acc = _random_accumulator(seed)
    official, _ = acc.score()
    table = acc.matches()
    assert table.map50_95() == pytest.approx(official, abs=1e-9)


def test_bootstrap_is_seeded_paired_and_wider_on_fewer_images():
    ref, worse = _random_accumulator(0, images=60), _random_accumulator(0, images=60, jitter=12.0)
    ref_t, worse_t = ref.matches(), worse.matches()
    boot = PairedBootstrap(ref_t)
    drop = boot.drop(worse_t)
    point = ref_t.map50_95() - worse_t.map50_95()
    assert drop.low < point < drop.high and drop.low > 0  # doubled jitter is a real loss on 60 images
    assert PairedBootstrap(ref_t).drop(worse_t) == drop  # same seed, same figure
    assert boot.drop(ref_t).low == boot.drop(ref_t).high == 0.0  # paired: an artifact identical to FP32 has no spread
    small = boot.subset(15).drop(worse_t.subset(15))
    assert small.high - small.low > drop.high - drop.low
    rows = compare({"ref": ref_t, "worse": worse_t, "same": ref.matches()}, boot)
    assert [r["within_noise"] for r in rows] == [False, True, False]
    assert "ref and same" in noise_words(rows) and "Told apart" in noise_words(rows)
    assert small_set_warning(15) and small_set_warning(500) is None
