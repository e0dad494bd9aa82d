"""How much of a drop is the images: a paired bootstrap over evaluation images.

Every decision edgeq offers compares drops of a few tenths of a point measured on a few hundred images. Drawing
the images with replacement, the same draws for FP32 and for each artifact (paired: an image that is hard for
one is hard for the other, which is most of the spread), and re-scoring the kept per-image matches
(edgeq.evaluation.matches) gives the spread of the drop without running any model again. Seeded: a figure
reproduces. Percentile interval.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgeq.evaluation.matches import MatchTable, map50_95

RESAMPLES = 1000
SEED = 0
CONFIDENCE = 0.95
SMALL_EVAL_SET = 50  # below this many images an interval is wide enough to say so once


@dataclass(frozen=True)
class Interval:
    low: float
    high: float

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high

    def as_list(self) -> list[float]:
        return [round(self.low, 2), round(self.high, 2)]

    def text(self) -> str:
        return f"{self.low:.2f} to {self.high:.2f}"


def small_set_warning(images: int) -> str | None:
    """The one line said when the evaluation set is too small for a useful interval, else None."""
    if images >= SMALL_EVAL_SET:
        return None
    return (f"only {images} evaluation images: the {CONFIDENCE:.0%} intervals on the drops are wide (figures "
            f"differing by less than their interval are not told apart); use --val-images {SMALL_EVAL_SET} or more "
            "for decisions")


class PairedBootstrap:
    """Resamples of one evaluation set, shared by the FP32 reference and every artifact scored on those images."""

    def __init__(self, reference: MatchTable, resamples: int = RESAMPLES, seed: int = SEED,
                 confidence: float = CONFIDENCE) -> None:
        self.reference, self.resamples, self.seed, self.confidence = reference, resamples, seed, confidence
        draws = np.random.default_rng(seed).integers(0, reference.n_images, (resamples, reference.n_images))
        self.weights = np.stack([np.bincount(row, minlength=reference.n_images) for row in draws]).astype(np.float64)
        self._maps: dict[int, tuple[MatchTable, np.ndarray]] = {}
        self._subsets: dict[int, PairedBootstrap] = {}

    @property
    def images(self) -> int:
        return self.reference.n_images

    def subset(self, images: int) -> PairedBootstrap:
        """The bootstrap of the first `images` images (the --fast subset), against the reference on them."""
        if images >= self.images:
            return self
        if images not in self._subsets:
            self._subsets[images] = PairedBootstrap(self.reference.subset(images), self.resamples, self.seed,
                                                    self.confidence)
        return self._subsets[images]

    def resampled_map(self, table: MatchTable) -> np.ndarray:
        """(resamples,) mAP50-95 of `table` on each resample (cached per table)."""
        if table.n_images != self.images:
            raise ValueError(f"matches of {table.n_images} images against a bootstrap of {self.images}")
        key = id(table)
        if key not in self._maps:
            self._maps[key] = (table, map50_95(table.average_precision(self.weights)))  # kept: its id stays its own
        return self._maps[key][1]

    def _interval(self, values: np.ndarray) -> Interval:
        tail = (1.0 - self.confidence) / 2.0 * 100.0
        low, high = np.nanpercentile(values, [tail, 100.0 - tail])
        return Interval(float(low), float(high))

    def drop(self, table: MatchTable) -> Interval:
        """The interval of the reference's mAP50-95 minus `table`'s (points, positive = worse)."""
        return self._interval(self.resampled_map(self.reference) - self.resampled_map(table))

    def difference(self, a: MatchTable, b: MatchTable) -> Interval:
        """The interval of `a`'s mAP50-95 minus `b`'s, on the same resamples."""
        return self._interval(self.resampled_map(a) - self.resampled_map(b))

    def record(self) -> dict:
        """What report.json says about how the intervals were made."""
        return {"method": "paired bootstrap over evaluation images (percentile interval)",
                "resamples": self.resamples, "seed": self.seed, "confidence": self.confidence,
                "images": self.images, "warning": small_set_warning(self.images)}


def snr_lead(signal: np.ndarray, noise_best: np.ndarray, noise_next: np.ndarray, resamples: int = RESAMPLES,
             seed: int = SEED, confidence: float = CONFIDENCE) -> Interval:
    """The interval of one output SNR's lead over another's (dB), paired over the images they were measured on:
    per image its signal energy and each method's error energy, SNR = 10 log10(sum signal / sum error)."""
    draws = np.random.default_rng(seed).integers(0, len(signal), (resamples, len(signal)))
    w = np.stack([np.bincount(row, minlength=len(signal)) for row in draws]).astype(np.float64)
    s, a, b = w @ signal, np.maximum(w @ noise_best, 1e-30), np.maximum(w @ noise_next, 1e-30)
    lead = 10.0 * np.log10(s / a) - 10.0 * np.log10(s / b)
    tail = (1.0 - confidence) / 2.0 * 100.0
    low, high = np.percentile(lead, [tail, 100.0 - tail])
    return Interval(float(low), float(high))


def compare(named: dict[str, MatchTable], boot: PairedBootstrap) -> list[dict]:
    """Every pair of `named` (all scored on `boot`'s images): the difference of their mAP50-95 with its interval
    and whether that interval contains 0 (within noise: these images cannot tell them apart)."""
    names = list(named)
    rows = []
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            interval = boot.difference(named[a], named[b])
            point = float(map50_95(named[a].average_precision())[0] - map50_95(named[b].average_precision())[0])
            rows.append({"a": a, "b": b, "difference": round(point, 2), "interval": interval.as_list(),
                         "within_noise": interval.contains(0.0)})
    return rows


def oriented(comparisons: list[dict], a: str, b: str) -> dict | None:
    """The recorded comparison of a and b as a minus b (None when not recorded)."""
    for c in comparisons:
        if (c["a"], c["b"]) == (a, b):
            return c
        if (c["b"], c["a"]) == (a, b):
            low, high = c["interval"]
            return {**c, "a": a, "b": b, "difference": -c["difference"], "interval": [-high, -low]}
    return None


def noise_words(comparisons: list[dict]) -> str:
    """One sentence naming the pairs that are within noise of each other, and the pairs that are told apart."""
    same = [c for c in comparisons if c["within_noise"]]
    apart = [c for c in comparisons if not c["within_noise"]]

    def pair(c: dict) -> str:
        low, high = c["interval"]
        return f"{c['a']} and {c['b']} ({c['a']} {c['difference']:+.2f}, interval {low:.2f} to {high:.2f})"

    parts = []
    if same:
        parts.append("Within noise of each other (the 95% interval of the difference contains 0, so these images "
                     "cannot tell them apart): " + "; ".join(pair(c) for c in same) + ".")
    if apart:
        parts.append("Told apart: " + "; ".join(pair(c) for c in apart) + ".")
    return " ".join(parts)
