"""Calibration images reach the worker unchanged: 8-bit letterboxed images as exact uint8, others as float32."""

from __future__ import annotations

import numpy as np
from edgeq_tflite.convert import write_calibration


def test_8bit_images_are_stored_exactly_as_uint8_nhwc(tmp_path) -> None:
    images = [np.random.default_rng(i).integers(0, 256, (1, 3, 16, 16)).astype(np.float32) / 255 for i in range(3)]
    assert write_calibration(images, tmp_path / "c.npy") == 3
    stored = np.load(tmp_path / "c.npy")
    assert stored.dtype == np.uint8 and stored.shape == (3, 16, 16, 3)
    for x, s in zip(images, stored):
        np.testing.assert_array_equal(s.astype(np.float32) / 255, np.transpose(x[0], (1, 2, 0)))


def test_other_images_fall_back_to_float32(tmp_path) -> None:
    images = [np.zeros((1, 3, 8, 8), np.float32), np.full((1, 3, 8, 8), 0.1234567, np.float32)]
    write_calibration(images, tmp_path / "c.npy")
    stored = np.load(tmp_path / "c.npy")
    assert stored.dtype == np.float32
    np.testing.assert_array_equal(stored[1], np.transpose(images[1][0], (1, 2, 0)))
