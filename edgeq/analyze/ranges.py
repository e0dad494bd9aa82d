"""Activation ranges by calibration method, from histograms streamed over the calibration images.

One `TensorHistogram` per tensor: exact min/max plus a signed histogram over [-amax, amax] whose range doubles
(merging bin pairs, so nothing is re-binned approximately) when a larger value arrives. Every method reads the
same histogram, so trying several costs one pass over the images:

    minmax             the exact observed min and max
    percentile-P       the P-th percentile (of |x| for symmetric schemes, of each tail for asymmetric ones)
    entropy            TensorRT's KL-divergence threshold on the |x| histogram (128 quantized levels)
    mse                the clip range minimising expected squared error: rounding inside, clipping outside
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

BINS = 4096  # signed bins over [-amax, amax]; the |x| histogram has BINS // 2


@dataclass(frozen=True)
class Range:
    lo: float
    hi: float

    def qparams(self, symmetric: bool) -> tuple[float, int]:
        """(scale, zero point): symmetric int8 (zero point 0) or asymmetric uint8, the range always holding 0."""
        if symmetric:
            amax = max(abs(self.lo), abs(self.hi), 1e-12)
            return amax / 127.0, 0
        lo, hi = min(self.lo, 0.0), max(self.hi, 0.0)
        scale = max(hi - lo, 1e-12) / 255.0
        return scale, int(np.clip(np.round(-lo / scale), 0, 255))


class TensorHistogram:
    def __init__(self) -> None:
        self.lo, self.hi, self.amax = np.inf, -np.inf, 0.0
        self.hist = np.zeros(BINS, np.int64)

    def update(self, values: np.ndarray) -> None:
        x = np.asarray(values, np.float32).ravel()
        x = x[np.isfinite(x)]
        if x.size == 0:
            return
        lo, hi = float(x.min()), float(x.max())
        self.lo, self.hi = min(self.lo, lo), max(self.hi, hi)
        need = max(abs(lo), abs(hi), 1e-12)
        if self.amax == 0.0:
            self.amax = need
        while need > self.amax:  # double the range: bin pairs merge into the central half
            merged = self.hist.reshape(-1, 2).sum(axis=1)
            self.hist = np.zeros(BINS, np.int64)
            self.hist[BINS // 4: BINS // 4 + BINS // 2] = merged
            self.amax *= 2.0
        idx = ((x / self.amax + 1.0) * (BINS / 2)).astype(np.int64)
        self.hist += np.bincount(np.clip(idx, 0, BINS - 1), minlength=BINS)

    @property
    def centers(self) -> np.ndarray:
        return (-1.0 + (np.arange(BINS) + 0.5) * 2.0 / BINS) * self.amax

    def abs_hist(self) -> np.ndarray:
        """Counts of |x| in BINS // 2 bins over [0, amax]."""
        half = BINS // 2
        return self.hist[half:] + self.hist[:half][::-1]

    def range(self, method: str, symmetric: bool) -> Range:
        if self.amax == 0.0:
            return Range(0.0, 0.0)
        if method == "minmax":
            return Range(self.lo, self.hi)
        if method.startswith("percentile-"):
            return self._percentile(float(method.split("-", 1)[1]) / 100.0, symmetric)
        if method == "entropy":
            amax = _kl_threshold(self.abs_hist(), self.amax)
            return Range(max(self.lo, -amax), min(self.hi, amax))
        if method == "mse":
            return self._mse(symmetric)
        raise ValueError(f"unknown calibration method {method!r}")

    def _percentile(self, p: float, symmetric: bool) -> Range:
        if symmetric:
            counts = self.abs_hist()
            amax = _quantile_edge(counts, p, self.amax / (BINS // 2))
            return Range(max(self.lo, -amax), min(self.hi, amax))
        cdf = np.cumsum(self.hist) / self.hist.sum()
        width = 2.0 * self.amax / BINS
        lo = -self.amax + int(np.searchsorted(cdf, 1.0 - p)) * width
        hi = -self.amax + (int(np.searchsorted(cdf, p)) + 1) * width
        return Range(max(self.lo, lo), min(self.hi, hi))

    def _mse(self, symmetric: bool) -> Range:
        c, n = self.centers, self.hist.astype(np.float64)
        base = Range(-max(abs(self.lo), abs(self.hi)), max(abs(self.lo), abs(self.hi))) if symmetric \
            else Range(min(self.lo, 0.0), max(self.hi, 0.0))
        levels = 254.0 if symmetric else 255.0
        best, best_err = base, np.inf
        for f in np.linspace(0.02, 1.0, 99):
            lo, hi = base.lo * f, base.hi * f
            step = (hi - lo) / levels
            clipped = np.clip(c, lo, hi)
            err = float(np.sum(n * ((c - clipped) ** 2 + np.where(c == clipped, step * step / 12.0, 0.0))))
            if err < best_err:
                best, best_err = Range(float(lo), float(hi)), err
        return Range(float(max(self.lo, best.lo)), float(min(self.hi, best.hi)))


def _quantile_edge(counts: np.ndarray, p: float, width: float) -> float:
    cdf = np.cumsum(counts) / max(counts.sum(), 1)
    return (int(np.searchsorted(cdf, p)) + 1) * width


def _kl_threshold(counts: np.ndarray, amax: float, levels: int = 128) -> float:
    """TensorRT's entropy calibration: the |x| threshold whose 128-level quantized histogram is closest (KL) to
    the clipped reference (outliers folded into the last bin)."""
    counts = counts.astype(np.float64)
    nbins = len(counts)
    width = amax / nbins
    if counts.sum() == 0:
        return amax
    nonzero = np.nonzero(counts)[0]
    top = int(nonzero[-1]) + 1
    if top <= levels:
        return top * width
    best_i, best_kl = top, np.inf
    for i in range(levels, top + 1, max(1, (top - levels) // 256)):
        ref = counts[:i].copy()
        ref[-1] += counts[i:].sum()
        # quantize the first i bins (outliers excluded) into `levels` groups, each group's mass spread over its
        # non-empty bins
        bounds = (np.arange(levels + 1) * i) // levels
        sliced = counts[:i]
        nonempty = sliced > 0
        mass = np.add.reduceat(sliced, bounds[:-1])
        filled = np.add.reduceat(nonempty.astype(np.float64), bounds[:-1])
        q = np.repeat(mass / np.maximum(filled, 1.0), np.diff(bounds)) * nonempty
        p_sum, q_sum = ref.sum(), q.sum()
        if q_sum == 0:
            continue
        pn, qn = ref / p_sum, q / q_sum
        mask = pn > 0
        qn = np.where(qn > 0, qn, 1e-12)
        kl = float(np.sum(pn[mask] * np.log(pn[mask] / qn[mask])))
        if kl < best_kl:
            best_i, best_kl = i, kl
    return (best_i + 0.5) * width


def collect_histograms(onnx_model, tensors: Sequence[str], images: Iterable[np.ndarray]) -> dict[str, TensorHistogram]:
    """Run the FP32 model on `images` with `tensors` exposed as outputs; one histogram per tensor."""
    from edgeq.analyze.fakequant import session_for, with_outputs

    session = session_for(with_outputs(onnx_model, tensors))
    names = [o.name for o in session.get_outputs()]
    wanted = set(tensors)
    hists = {t: TensorHistogram() for t in tensors}
    input_name = session.get_inputs()[0].name
    for x in images:
        for name, value in zip(names, session.run(names, {input_name: np.asarray(x, np.float32)})):
            if name in wanted:
                hists[name].update(value)
    return hists
