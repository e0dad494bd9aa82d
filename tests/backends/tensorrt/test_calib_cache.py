"""TensorRT calibration cache: exact round trip, header version codes, the documented example line."""

import math
import struct

import numpy as np
import pytest
from edgeq_tensorrt.calib_cache import float32, hex_to_scale, parse_cache, scale_to_hex, version_code, write_cache

from edgeq.errors import EdgeqError


def test_one_over_127_is_the_documented_hex():
    assert scale_to_hex(1 / 127) == "3c010204"
    assert hex_to_scale("3c010204") == float32(1 / 127)


@pytest.mark.parametrize("version, code", [("10.3", 100300), ("10.3.0", 100300), ("8.6.1", 8601), ("8.6", 8600),
                                           ("10.7.0", 100700), ("9.2", 90200)])
def test_version_codes_follow_nvinferversion(version, code):
    assert version_code(version) == code


def test_round_trip_is_bit_exact(tmp_path):
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.uniform(1e-6, 10, 500), 10.0 ** rng.uniform(-30, 30, 100),
                             [1 / 127, np.finfo(np.float32).tiny, np.finfo(np.float32).max]]).astype(np.float32)
    scales = {f"/model.{i}/conv/Conv_output_0": float(v) for i, v in enumerate(values)}
    scales["name: with colon"] = 0.5
    scales["images"] = 1 / 127
    path = write_cache(tmp_path / "m.cache", scales, "10.3")
    cache = parse_cache(path)
    assert cache.version == 100300 and cache.calibrator == "EntropyCalibration2"
    assert list(cache.scales) == list(scales)  # order kept
    for name, value in scales.items():
        got = cache.scales[name]
        assert struct.pack(">f", got) == struct.pack(">f", value), name  # bit for bit
    assert path.read_text().splitlines()[0] == "TRT-100300-EntropyCalibration2"
    assert "images: 3c010204" in path.read_text().splitlines()


def test_hex_is_always_eight_digits(tmp_path):
    tiny = float(np.finfo(np.float32).tiny)  # 0x00800000: leading zeros must be written
    assert scale_to_hex(tiny) == "00800000"
    write_cache(tmp_path / "t.cache", {"t": tiny})
    assert (tmp_path / "t.cache").read_text().splitlines()[1] == "t: 00800000"


@pytest.mark.parametrize("bad", [0.0, -1.0, math.inf, math.nan])
def test_writer_refuses_unusable_scales(tmp_path, bad):
    with pytest.raises(EdgeqError, match="positive finite"):
        write_cache(tmp_path / "b.cache", {"t": bad})
    assert not (tmp_path / "b.cache").exists()


def test_parser_names_the_bad_line(tmp_path):
    path = tmp_path / "x.cache"
    path.write_text("TRT-8600-EntropyCalibration2\nok: 3c010204\nbroken line\n")
    with pytest.raises(EdgeqError, match="line 3"):
        parse_cache(path)
    path.write_text("not a header\n")
    with pytest.raises(EdgeqError, match="header"):
        parse_cache(path)


def test_version_errors_are_one_line():
    with pytest.raises(EdgeqError) as info:
        version_code("ten")
    assert "\n" not in str(info.value) and "Fix:" in str(info.value)
