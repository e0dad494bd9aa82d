"""What mAP hides, from the kept per-image matches (edgeq.evaluation.matches): per-class AP, precision, recall and
F1 at a deployment's fixed threshold, and how the scores of the objects both models find moved.

mAP50-95 ranks detections by score within each class; it does not move when an INT8 artifact squeezes every
confidence (0.85 -> 0.45) or when one class of several collapses. A deployment does: it keeps detections above a
fixed threshold. These figures say what that deployment sees, for FP32 and for each artifact, on the same images.
"""

from __future__ import annotations

import numpy as np

from edgeq.evaluation.matches import MatchTable


def class_ap(table: MatchTable) -> list[float | None]:
    """AP50-95 per class in percent (None: no ground truth of that class in these images)."""
    ap = table.average_precision()[0].mean(axis=1) * 100.0
    return [None if np.isnan(v) else round(float(v), 2) for v in ap]


def at_threshold(table: MatchTable, conf: float) -> dict:
    """Precision, recall and F1 (percent, IoU 0.5) of the detections scoring at least `conf`, over all classes and
    per class, as a deployment keeping those detections sees them."""
    kept = table.det_score >= conf
    tp = table.det_tp[0] & kept
    detections, hits, objects = int(kept.sum()), int(tp.sum()), len(table.gt_class)
    precision = hits / detections if detections else 0.0
    recall = hits / objects if objects else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    class_recall, class_precision = [], []
    for k in range(table.nc):
        n, found = int(np.sum(table.gt_class == k)), int(np.sum(tp & (table.det_class == k)))
        kept_k = int(np.sum(kept & (table.det_class == k)))
        class_recall.append(None if n == 0 else round(100.0 * found / n, 2))
        class_precision.append(None if n == 0 else round(100.0 * found / kept_k, 2) if kept_k else 0.0)
    return {"conf": round(float(conf), 4), "precision": round(100 * precision, 2), "recall": round(100 * recall, 2),
            "f1": round(100 * f1, 2), "detections": detections, "class_recall": class_recall,
            "class_precision": class_precision}


def best_f1_threshold(table: MatchTable) -> float:
    """The score threshold at which `table`'s F1 (IoU 0.5, all classes) is highest: FP32's own operating point.
    A threshold keeps every detection of a tied score or none of them, so F1 is counted only where the score
    changes (the last of each tie)."""
    if not len(table.det_score) or not len(table.gt_class):
        return 0.25
    order = np.argsort(-table.det_score, kind="mergesort")
    scores = table.det_score[order]
    hits = np.cumsum(table.det_tp[0, order])
    kept = np.arange(1, len(order) + 1)
    f1 = 2 * hits / (kept + len(table.gt_class))  # 2PR/(P+R) with P = hits/kept, R = hits/objects
    cuts = np.flatnonzero(np.append(scores[1:] != scores[:-1], True))  # last index of each score
    return float(scores[cuts[int(np.argmax(f1[cuts]))]])


def confidence_shift(reference: MatchTable, table: MatchTable) -> dict:
    """Scores of the objects both find (matched at IoU 0.5): their median change (artifact minus FP32) and
    medians; the histogram in the report's picture is drawn from `scores`."""
    both = ~np.isnan(reference.gt_score) & ~np.isnan(table.gt_score)
    if not both.any():
        return {"matched": 0, "median_change": None, "fp32_median": None, "median": None}
    change = table.gt_score[both] - reference.gt_score[both]
    return {"matched": int(both.sum()), "median_change": round(float(np.median(change)), 4),
            "fp32_median": round(float(np.median(reference.gt_score[both])), 4),
            "median": round(float(np.median(table.gt_score[both])), 4)}


def matched_scores(table: MatchTable) -> list[float]:
    """The score of every object found at IoU 0.5, for the histogram (rounded: report.json stays small)."""
    return [round(float(s), 3) for s in table.gt_score[~np.isnan(table.gt_score)]]


def describe(table: MatchTable, reference: MatchTable, deploy_conf: float, fp32_best_conf: float) -> dict:
    """Every figure above for one artifact (or the reference itself) against the FP32 reference; `fp32_class_ap`
    is the reference's on the same images, which a --fast subset's per-class drops are taken against."""
    return {"class_ap": class_ap(table), "fp32_class_ap": class_ap(reference),
            "at_deploy_conf": at_threshold(table, deploy_conf),
            "at_fp32_best_f1": at_threshold(table, fp32_best_conf),
            "confidence_shift": confidence_shift(reference, table),
            "matched_scores": matched_scores(table), "size_ap": dict(table.size_ap)}
