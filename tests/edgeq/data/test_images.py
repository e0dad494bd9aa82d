from pathlib import Path

import numpy as np
import pytest

from edgeq.data import BadImage, preprocess, read_image, subsample, usable_images
from edgeq.data.images import shown
from edgeq.errors import EdgeqError


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


def _jpeg(path, size=64):
    import cv2

    image = np.full((size, size, 3), 128, np.uint8)
    cv2.circle(image, (size // 2, size // 2), size // 4, (0, 0, 255), -1)
    path.write_bytes(cv2.imencode(".jpg", image)[1].tobytes())
    return path


def test_an_image_name_that_is_not_utf8_is_read_not_crashed_on(tmp_path):
    """OpenCV's Python binding segfaulted (exit 139) on such a name; the bytes are read by Python instead."""
    import os
    import subprocess
    import sys

    name = os.fsdecode(tmp_path / os.fsdecode(b"caf\xe9-\xff.jpg"))
    _jpeg(Path(name))
    probe = "import sys, os; from edgeq.data import read_image; print(read_image(os.fsdecode(sys.argv[1])).shape)"
    done = subprocess.run([sys.executable, "-c", probe, os.fsencode(name)], capture_output=True, text=True,
                          check=False, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "(64, 64, 3)", (done.returncode, done.stderr)
    assert "\\xe9-\\xff.jpg" in shown(Path(name))  # printable wherever it is named


@pytest.mark.parametrize("cut, words", [(0.6, "the JPEG ends before its end-of-image marker"),
                                        (0.05, "a JPEG with no image data")])
def test_a_truncated_jpeg_is_named_not_decoded_grey(tmp_path, cut, words):
    """libjpeg decodes a truncated file without an error ("Premature end of JPEG file" on stderr, the rest grey)."""
    data = _jpeg(tmp_path / "full.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[:int(len(data) * cut)])
    with pytest.raises(BadImage, match=f"image '.*cut.jpg' is truncated \\({words}\\)") as refused:
        read_image(tmp_path / "cut.jpg")
    assert "--bad-images skip" in str(refused.value)


def test_complete_images_decode_and_garbage_is_refused(tmp_path):
    import cv2

    data = _jpeg(tmp_path / "a.jpg").read_bytes()
    (tmp_path / "trailing.jpg").write_bytes(data + b"\x00" * 100)  # bytes after the end marker (cameras do this)
    assert read_image(tmp_path / "trailing.jpg").shape == (64, 64, 3)
    png = cv2.imencode(".png", read_image(tmp_path / "a.jpg"))[1].tobytes()
    (tmp_path / "cut.png").write_bytes(png[:-20])
    with pytest.raises(BadImage, match="the PNG ends before its IEND chunk"):
        read_image(tmp_path / "cut.png")
    (tmp_path / "text.jpg").write_text("not an image")
    with pytest.raises(BadImage, match="cannot be decoded"):
        read_image(tmp_path / "text.jpg")
    with pytest.raises(BadImage, match="cannot be read"):
        read_image(tmp_path / "missing.jpg")


def test_bad_images_are_refused_or_skipped_by_the_policy(tmp_path):
    good = [_jpeg(tmp_path / f"{i}.jpg") for i in range(3)]
    (tmp_path / "bad.jpg").write_bytes(good[0].read_bytes()[:-30])
    paths = [*good, tmp_path / "bad.jpg"]
    with pytest.raises(BadImage, match="bad.jpg"):
        usable_images(paths, "refuse")
    logged = []
    kept = usable_images(paths, "skip", logged.append)
    assert kept.paths == good and [b.path.name for b in kept.skipped] == ["bad.jpg"]
    assert logged == [f"skipped: image '{tmp_path / 'bad.jpg'}' is truncated (the JPEG ends before its end-of-image "
                      "marker)"]
    with pytest.raises(EdgeqError, match="none of the 1 images can be used"):
        usable_images([tmp_path / "bad.jpg"], "skip")
