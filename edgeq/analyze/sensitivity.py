"""Per-layer sensitivity: each candidate layer quantized alone (the rest float) under the target's scheme, scored
against the FP32 outputs on a calibration batch by MSE, SNR and cosine similarity, then by mAP50-95 for the
layers the cheap metrics rank highest (YOLOv6's partial-PTQ recipe, seed 002).

Outputs are compared in units where boxes and scores weigh alike: pixel boxes divided by the input size, class
scores as they are; a detached head compares its per-scale logits.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from edgeq.analyze.fakequant import QuantGraph, fake_quant, session_for
from edgeq.analyze.ranges import Range
from edgeq.progress import bar
from edgeq.runners import Runner


@dataclass
class LayerScore:
    name: str
    op: str
    mse: float
    snr_db: float
    cosine: float
    rank: int = 0  # 1 = most sensitive: by mAP drop where measured, then by the cheap metrics together
    ranks: dict[str, int] = field(default_factory=dict)  # by mse, snr, cosine alone; cheap: the three together
    map50_95: float | None = None  # with only this layer quantized (None: not among the top layers evaluated)
    drop_map50_95: float | None = None  # against the FP32 ONNX on the same images
    marks: list[str] = field(default_factory=list)  # what the head / rule tables already do with this layer
    toolkit_cosine: float | None = None  # the target toolkit's own per-layer figure (ToolkitLayerErrors), if any


class MemoryRunner(Runner):
    """Runs an in-memory ONNX model (an emulation graph) for the evaluator."""

    def __init__(self, model, label: str = "emulation") -> None:
        super().__init__(label)
        self.model = model

    def load(self) -> None:
        import onnxruntime as ort

        self.session = session_for(self.model)
        self.input_name = self.session.get_inputs()[0].name
        self.input_shape = tuple(self.session.get_inputs()[0].shape)
        self.names = [o.name for o in self.session.get_outputs()]
        self.runtime = f"onnxruntime {ort.__version__} (edgeq emulation)"

    def infer(self, images: np.ndarray) -> dict[str, np.ndarray]:
        return dict(zip(self.names, self.session.run(self.names, {self.input_name: images.astype(np.float32)})))


def comparable(outputs: Mapping[str, np.ndarray], imgsz: int) -> np.ndarray:
    """One image's outputs as one vector: pixel boxes / imgsz next to scores; logits as they are."""
    parts = []
    for name in sorted(outputs):
        value = np.asarray(outputs[name], np.float64)
        if name == "output0" and value.ndim == 3:
            parts += [value[:, :4].ravel() / imgsz, value[:, 4:].ravel()]
        else:
            parts.append(value.ravel())
    return np.concatenate(parts)


def score(reference: Sequence[np.ndarray], quantized: Sequence[np.ndarray]) -> tuple[float, float, float]:
    """(MSE, SNR in dB, mean cosine similarity) of quantized against reference vectors, one per image."""
    a, b = np.concatenate(reference), np.concatenate(quantized)
    noise = float(np.sum((a - b) ** 2))
    snr = 10.0 * np.log10(float(np.sum(a * a)) / noise) if noise > 0 else 200.0
    cos = [float(np.dot(x, y) / (np.linalg.norm(x) * np.linalg.norm(y) + 1e-20)) for x, y in zip(reference, quantized)]
    return float(np.mean((a - b) ** 2)), float(snr), float(np.mean(cos))


CONFIDENT = 0.25  # Ultralytics' default predict threshold: the anchors that become detections


def confident_vectors(reference: Sequence[Mapping[str, np.ndarray]], quantized: Sequence[Mapping[str, np.ndarray]],
                      imgsz: int, normalized: bool = False) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per image, the outputs at the anchors FP32 is confident about (class score >= CONFIDENT; the top 10 when
    none is), as comparable vectors. Over all anchors, methods that clip outliers win on average error and lose
    mAP; on these anchors the real artifacts order like their mAP (TensorRT entropy over mse, NNCF's default
    over percentile-99.999 on the hard-hat model). `normalized`: the quantized boxes are in 0..1."""
    refs, quants = [], []
    for ref, out in zip(reference, quantized):
        if "output0" in ref:
            r, q = np.asarray(ref["output0"][0], np.float64), np.asarray(out["output0"][0], np.float64)
            if normalized:
                q = np.concatenate([q[:4] * imgsz, q[4:]])
            keep = _confident(r[4:])
            refs.append(np.concatenate([(r[:4, keep] / imgsz).ravel(), r[4:, keep].ravel()]))
            quants.append(np.concatenate([(q[:4, keep] / imgsz).ravel(), q[4:, keep].ravel()]))
            continue
        r_parts, q_parts = [], []
        for cls_name in sorted(n for n in ref if n.startswith("cls_")):
            box_name = "box_" + cls_name.removeprefix("cls_")
            rc = np.asarray(ref[cls_name][0], np.float64).reshape(ref[cls_name].shape[1], -1)
            keep = _confident(1.0 / (1.0 + np.exp(-rc)))
            for name in (box_name, cls_name):
                rv = np.asarray(ref[name][0], np.float64).reshape(ref[name].shape[1], -1)
                qv = np.asarray(out[name][0], np.float64).reshape(ref[name].shape[1], -1)
                r_parts.append(rv[:, keep].ravel())
                q_parts.append(qv[:, keep].ravel())
        refs.append(np.concatenate(r_parts))
        quants.append(np.concatenate(q_parts))
    return refs, quants


def _confident(scores: np.ndarray) -> np.ndarray:
    best = scores.max(axis=0)
    keep = best >= CONFIDENT
    if keep.sum() < 10:
        keep = np.zeros_like(keep)
        keep[np.argsort(best)[-10:]] = True
    return keep


def run_outputs(model, images: Sequence[np.ndarray], imgsz: int) -> list[np.ndarray]:
    session = session_for(model)
    names = [o.name for o in session.get_outputs()]
    input_name = session.get_inputs()[0].name
    return [comparable(dict(zip(names, session.run(names, {input_name: x}))), imgsz) for x in images]


def sweep(qgraph: QuantGraph, ranges: Mapping[str, Range], candidates: Sequence[str], images: Sequence[np.ndarray],
          imgsz: int, progress: bool = True, cached: Mapping[str, tuple[float, float, float]] | None = None
          ) -> list[LayerScore]:
    """Every candidate quantized alone; returns the scores ranked (1 = most sensitive)."""
    reference = run_outputs(qgraph.model, images, imgsz)
    results = []
    for name in bar(candidates, desc="sensitivity sweep", enabled=progress, total=len(candidates)):
        if cached and name in cached:
            mse, snr, cos = cached[name]
        else:
            mse, snr, cos = score(reference, run_outputs(fake_quant(qgraph, ranges, [name]), images, imgsz))
        results.append(LayerScore(name, qgraph.layers[name].op, mse, snr, cos))
    return rank(results)


def rank(scores: list[LayerScore]) -> list[LayerScore]:
    """Rank by each cheap metric (high MSE, low SNR, low cosine = sensitive) and by the mean of those ranks."""
    keys = {"mse": lambda s: -s.mse, "snr": lambda s: s.snr_db, "cosine": lambda s: s.cosine}
    for metric, key in keys.items():
        for position, s in enumerate(sorted(scores, key=key), start=1):
            s.ranks[metric] = position
    ordered = sorted(scores, key=lambda s: (sum(s.ranks.values()), s.ranks["snr"]))
    for position, s in enumerate(ordered, start=1):
        s.rank = s.ranks["cheap"] = position
    return ordered


def add_map(scores: list[LayerScore], top: int, evaluate_model: Callable[[object, str], float],
            qgraph: QuantGraph, ranges: Mapping[str, Range], fp32_map: float,
            also: Sequence[str] = ()) -> list[LayerScore]:
    """mAP50-95 with only one layer quantized, for the `top` layers by the cheap rank and the layers in `also`
    (the quantized decode head: box pixels next to scores hurt mAP more than the output error shows); returns
    the scores re-ranked: those layers first by their mAP drop (the metric that decides), the rest as the cheap
    rank had them."""
    chosen = [s for i, s in enumerate(scores) if i < top or s.name in set(also)]
    for s in chosen:
        value = evaluate_model(fake_quant(qgraph, ranges, [s.name]), s.name)
        s.map50_95 = round(value, 2)
        s.drop_map50_95 = round(fp32_map - value, 2)
    measured = sorted(chosen, key=lambda s: (-s.drop_map50_95, s.ranks["cheap"]))
    for position, s in enumerate(measured, start=1):
        s.ranks["map"] = position
    ordered = [*measured, *[s for s in scores if s.map50_95 is None]]
    for position, s in enumerate(ordered, start=1):
        s.rank = position
    return ordered
