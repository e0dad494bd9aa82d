"""Calibration methods on distributions whose answer is known."""

import numpy as np
import pytest

from edgeq.analyze.ranges import BINS, Range, TensorHistogram


def _hist(*chunks):
    h = TensorHistogram()
    for c in chunks:
        h.update(np.asarray(c, np.float32))
    return h


def test_range_doubling_keeps_every_count_and_the_exact_extremes():
    rng = np.random.default_rng(0)
    small, large = rng.normal(0, 1, 10_000), rng.normal(0, 40, 10_000)
    h = _hist(small, large)
    assert h.hist.sum() == 20_000
    assert h.lo == pytest.approx(min(small.min(), large.min()), rel=1e-6)
    assert h.hi == pytest.approx(max(small.max(), large.max()), rel=1e-6)
    assert h.amax >= max(abs(h.lo), abs(h.hi)) and h.hist.shape == (BINS,)
    # the small values, binned before the range grew, still sit in the central bins
    centre = h.hist[BINS // 2 - BINS // 64: BINS // 2 + BINS // 64].sum()
    assert centre > 10_000


def test_minmax_percentile_entropy_mse_on_a_tail():
    rng = np.random.default_rng(1)
    values = np.concatenate([rng.normal(0, 1, 200_000), [60.0, -55.0]])  # two outliers
    h = _hist(values)
    minmax = h.range("minmax", symmetric=True)
    assert (minmax.lo, minmax.hi) == (pytest.approx(-55.0), pytest.approx(60.0))
    p4 = h.range("percentile-99.99", symmetric=True)
    assert 3.0 < p4.hi < 5.5 and p4.lo == pytest.approx(-p4.hi)  # |x| 99.99th percentile of N(0,1) ~ 3.9
    p5 = h.range("percentile-99.999", symmetric=True)
    assert p4.hi <= p5.hi < 60.0
    entropy = h.range("entropy", symmetric=True)
    assert 1.5 < entropy.hi < 20.0  # KL ignores the two outliers' mass

    def expected_error(t):  # what mse minimises: rounding inside the range, clipping outside
        a = np.abs(values)
        return float(np.sum(np.where(a > t, (a - t) ** 2, (2 * t / 254) ** 2 / 12)))

    mse = h.range("mse", symmetric=True)
    assert mse.hi < 60.0
    assert expected_error(mse.hi) <= 1.01 * min(expected_error(60.0), expected_error(p4.hi), expected_error(20.0))
    asym = h.range("percentile-99.99", symmetric=False)
    assert asym.lo < 0 < asym.hi < 5.5


def test_qparams_symmetric_and_asymmetric():
    scale, zero = Range(-1.0, 2.54).qparams(symmetric=True)
    assert scale == pytest.approx(2.54 / 127) and zero == 0
    scale, zero = Range(0.5, 2.55).qparams(symmetric=False)  # the range always holds 0
    assert scale == pytest.approx(2.55 / 255) and zero == 0
    scale, zero = Range(-1.0, 1.55).qparams(symmetric=False)
    assert zero == round(1.0 / scale)


def test_unknown_method_is_refused():
    with pytest.raises(ValueError):
        _hist([1.0, 2.0]).range("kl", symmetric=True)
