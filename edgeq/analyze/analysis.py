"""The analysis behind `edgeq analyze`, `calibration.method: auto` and the search's ranking, on one FP32 ONNX.

`LayerAnalysis` reads the graph under the target's scheme once, streams the activation histograms over the
calibration images once (cached: every method's ranges come from the same histograms), and then answers: the
ranges of a method, the output error of the whole model quantized with a method (`auto` picks the lowest), and
the per-layer sweep (cached by model, scheme, method and images).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeq.analyze.fakequant import QuantGraph, fake_quant
from edgeq.analyze.ranges import BINS, Range, TensorHistogram, collect_histograms
from edgeq.analyze.scheme import QuantScheme
from edgeq.analyze.sensitivity import LayerScore, MemoryRunner, add_map, run_outputs, score, sweep
from edgeq.env import cache_dir
from edgeq.progress import bar


@dataclass(frozen=True)
class MethodScore:
    method: str
    mse: float
    snr_db: float
    cosine: float


class LayerAnalysis:
    def __init__(self, onnx_path: Path, scheme: QuantScheme, range_images: Sequence[np.ndarray],
                 metric_images: Sequence[np.ndarray], imgsz: int, progress: bool = True) -> None:
        import onnx

        self.onnx_path, self.scheme, self.imgsz, self.progress = Path(onnx_path), scheme, imgsz, progress
        self.model = onnx.load(str(onnx_path))
        self.qgraph = QuantGraph(self.model, scheme)
        self.range_images, self.metric_images = range_images, [np.asarray(x) for x in metric_images]
        digest = hashlib.sha256(Path(onnx_path).read_bytes())
        for p in getattr(range_images, "paths", []):
            digest.update(f"{p}:{Path(p).stat().st_size}".encode())
        digest.update(f"{len(range_images)}:{imgsz}".encode())
        self.key = digest.hexdigest()[:20]
        self._hists: dict[str, TensorHistogram] | None = None

    # --- ranges ---------------------------------------------------------------------------------------------

    def histograms(self) -> dict[str, TensorHistogram]:
        if self._hists is None:
            path = cache_dir() / "analyze" / f"hist-{self.key}.npz"
            tensors = self.qgraph.activation_tensors()
            if path.exists():
                self._hists = _load_hists(path)
            if self._hists is None or not set(tensors) <= set(self._hists):
                images = bar(self.range_images, desc="activation ranges", enabled=self.progress,
                             total=len(self.range_images))
                self._hists = collect_histograms(self.model, tensors, images)
                _save_hists(path, self._hists)
        return self._hists

    def ranges(self, method: str) -> dict[str, Range]:
        symmetric = self.scheme.symmetric
        return {t: h.range(method, symmetric) for t, h in self.histograms().items()}

    # --- whole-model error per method (calibration.method: auto) --------------------------------------------

    def method_scores(self, methods: Sequence[str], head_quantized: bool, keep_float: Sequence[str] = ()
                      ) -> list[MethodScore]:
        reference = run_outputs(self.model, self.metric_images, self.imgsz)
        layers = self.qgraph.quantized(head_quantized, keep_float)
        scores = []
        for method in bar(methods, desc="calibration methods", enabled=self.progress, total=len(methods)):
            quantized = run_outputs(fake_quant(self.qgraph, self.ranges(method), layers), self.metric_images,
                                    self.imgsz)
            scores.append(MethodScore(method, *score(reference, quantized)))
        return scores

    def all_quantized(self, method: str, head_quantized: bool, keep_float: Sequence[str] = ()):
        return fake_quant(self.qgraph, self.ranges(method), self.qgraph.quantized(head_quantized, keep_float))

    # --- per-layer sweep ------------------------------------------------------------------------------------

    def sweep(self, method: str, head_quantized: bool, exclude: Sequence[str] = ()) -> list[LayerScore]:
        candidates = [n for n in self.qgraph.candidates(head_quantized) if n not in set(exclude)]
        path = cache_dir() / "analyze" / (f"sweep-{self.key}-{self._scheme_key(method)}-"
                                          f"{len(self.metric_images)}.json")
        cached = {k: tuple(v) for k, v in json.loads(path.read_text()).items()} if path.exists() else {}
        scores = sweep(self.qgraph, self.ranges(method), candidates, self.metric_images, self.imgsz,
                       self.progress, cached)
        cached.update({s.name: (s.mse, s.snr_db, s.cosine) for s in scores})
        _write_atomic(path, json.dumps(cached))
        return scores

    def ranked(self, method: str, head_quantized: bool, exclude: Sequence[str], map_scorer: MapScorer | None,
               map_layers: int) -> list[LayerScore]:
        """The sweep, then the top `map_layers` (and every quantized decode-head layer) re-ranked by the mAP drop
        with each alone quantized."""
        scores = self.sweep(method, head_quantized, exclude)
        if map_scorer is None or not map_layers:
            return scores
        map_scorer.key = self.map_key(method)
        fp32 = map_scorer(self.model, "fp32")
        head = [s.name for s in scores if self.qgraph.layers[s.name].in_head]
        ranked = add_map(scores, map_layers, map_scorer, self.qgraph, self.ranges(method), fp32, also=head)
        map_scorer.save()
        return ranked

    def _scheme_key(self, method: str) -> str:
        return hashlib.sha256(f"{self.scheme.model_dump_json()}|{method}".encode()).hexdigest()[:12]

    def map_key(self, method: str) -> str:
        """What a MapScorer's cached figures depend on besides the evaluation images."""
        return f"{self.key}-{self._scheme_key(method)}"


def _save_hists(path: Path, hists: dict[str, TensorHistogram]) -> None:
    names = sorted(hists)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, names=np.array(names), hist=np.stack([hists[n].hist for n in names]),
                        lo=np.array([hists[n].lo for n in names]), hi=np.array([hists[n].hi for n in names]),
                        amax=np.array([hists[n].amax for n in names]))
    tmp.replace(path)


def _load_hists(path: Path) -> dict[str, TensorHistogram] | None:
    try:
        data = np.load(path)
        hists = {}
        for i, name in enumerate(data["names"]):
            h = TensorHistogram()
            h.hist, h.lo, h.hi, h.amax = data["hist"][i].astype(np.int64), float(data["lo"][i]), \
                float(data["hi"][i]), float(data["amax"][i])
            if h.hist.shape != (BINS,):
                return None
            hists[str(name)] = h
        return hists
    except (OSError, ValueError, KeyError):  # a damaged cache entry is recomputed
        return None


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(path)


class MapScorer:
    """mAP50-95 of emulation graphs on a small evaluation subset, with the shared evaluator; cached by label
    (layer name) under the analysis key, so a second analyze or search reuses them."""

    def __init__(self, eval_set, head, settings) -> None:
        self.eval_set, self.head, self.settings = eval_set, head, settings
        self.key = ""
        self._cache: dict[str, float] | None = None
        self.progress = True

    @property
    def path(self) -> Path:
        return cache_dir() / "analyze" / f"map-{self.key}-{len(self.eval_set)}.json"

    def __call__(self, model, label: str) -> float:
        from edgeq.evaluation.evaluator import evaluate
        from edgeq.head import HeadLayout

        if self._cache is None:
            self._cache = json.loads(self.path.read_text()) if self.path.exists() else {}
        if label not in self._cache:
            with MemoryRunner(model, label) as runner:
                self._cache[label] = evaluate(runner, HeadLayout.PIXEL, self.head, self.eval_set, self.settings,
                                              f"mAP: {label[-40:]}", self.progress).map50_95
        return self._cache[label]

    def save(self) -> None:
        if self._cache is not None:
            _write_atomic(self.path, json.dumps(self._cache))
