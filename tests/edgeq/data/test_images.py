import numpy as np

from edgeq.data import preprocess, subsample


def test_letterbox_round_trip():
    image = np.zeros((100, 200, 3), np.uint8)
    batch, box = preprocess(image, 320)
    assert batch.shape == (1, 3, 320, 320) and batch.dtype == np.float32
    assert box.ratio == 1.6 and box.pad == (0, 80)
    original = np.array([[10, 20, 110, 70]], np.float32)
    letterboxed = original * box.ratio + np.array([0, 80, 0, 80])
    np.testing.assert_allclose(box.to_original(letterboxed), original, atol=1e-4)


def test_subsample_is_deterministic_and_sorted(tmp_path):
    paths = [tmp_path / f"{i:03}.jpg" for i in range(100)]
    a, b = subsample(paths, 10, seed=0), subsample(list(reversed(paths)), 10, seed=0)
    assert a == b == sorted(a) and len(set(a)) == 10
    assert subsample(paths, 10, seed=1) != a
    assert subsample(paths, 1000) == paths
