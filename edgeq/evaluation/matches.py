"""Per-image COCO matches, kept so that every figure derived from an evaluation (a bootstrap interval, per-class
AP, precision and recall at a threshold, the score of each matched object) is computed from them without running
the model again.

The matching is the COCO protocol's (pycocotools' `evaluateImg`, which faster-coco-eval runs in C++): per image
and class, detections in descending score (stable), the first 100 kept, each matched greedily to the unmatched
ground truth of highest IoU at or above each threshold 0.50:0.05:0.95. `average_precision` is COCO's `accumulate`
over those matches with a weight per image: an image drawn twice by a bootstrap resample counts twice, exactly as
if it had been evaluated twice (tests hold the unweighted figure to faster-coco-eval's).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

IOU_THRESHOLDS = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)
RECALL_THRESHOLDS = np.linspace(0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1, endpoint=True)
MAX_DETECTIONS = 100  # COCO's maxDets[-1], which its mAP50-95 summary uses


@dataclass
class MatchTable:
    """One evaluation's matches, flat over images. Detections are in image order, each image's in descending
    score, so one stable sort by score reproduces COCO's ordering."""

    n_images: int
    nc: int
    det_image: np.ndarray  # (D,) image index
    det_class: np.ndarray  # (D,)
    det_score: np.ndarray  # (D,)
    det_tp: np.ndarray  # (T, D) bool: matched at each IoU threshold
    gt_image: np.ndarray  # (G,)
    gt_class: np.ndarray  # (G,)
    gt_area: np.ndarray  # (G,) pixels
    gt_score: np.ndarray  # (G,) score of the detection matching it at IoU 0.5 (NaN: unmatched)
    size_ap: dict = field(default_factory=dict)  # COCO's small/medium/large AP of the whole set (faster-coco-eval)

    def subset(self, images: int) -> MatchTable:
        """The first `images` images' matches (the --fast subset)."""
        d, g = self.det_image < images, self.gt_image < images
        return MatchTable(images, self.nc, self.det_image[d], self.det_class[d], self.det_score[d],
                          self.det_tp[:, d], self.gt_image[g], self.gt_class[g], self.gt_area[g], self.gt_score[g])

    def map50_95(self) -> float:
        """mAP50-95 in percent, unweighted: the figure faster-coco-eval gives for the same images."""
        return float(map50_95(self.average_precision())[0])

    def gt_counts(self) -> np.ndarray:
        """(nc, n_images): ground-truth objects per class and image."""
        counts = np.zeros((self.nc, self.n_images))
        np.add.at(counts, (self.gt_class, self.gt_image), 1)
        return counts

    def average_precision(self, weights: np.ndarray | None = None) -> np.ndarray:
        """(B, nc, T) AP per image weighting (B, n_images), default one unweighted row; NaN for a class without
        ground truth under that weighting (COCO leaves it out of the mean)."""
        weights = np.ones((1, self.n_images)) if weights is None else np.asarray(weights, dtype=np.float64)
        result = np.full((len(weights), self.nc, len(IOU_THRESHOLDS)), np.nan)
        counts = self.gt_counts()
        for k in range(self.nc):
            positives = weights @ counts[k]  # (B,)
            present = positives > 0
            if not present.any():
                continue
            for t in range(len(IOU_THRESHOLDS)):
                ap = np.zeros(len(weights))
                cumulative = self._cumulative(k, t)
                if cumulative is not None:
                    tp_sum, fp_sum = weights @ cumulative[0], weights @ cumulative[1]
                    precision = tp_sum / (tp_sum + fp_sum + np.spacing(1))
                    precision = np.maximum.accumulate(precision[:, ::-1], axis=1)[:, ::-1]  # the envelope
                    ap = _interpolated_ap(tp_sum, positives, precision)
                result[present, k, t] = ap[present]
        return result

    def _cumulative(self, k: int, t: int) -> tuple[np.ndarray, np.ndarray] | None:
        """(n_images, n_tp) each: per image, its true positives of class k at IoU threshold t up to each TP in
        score order, and its false positives before it; None without a TP.

        Precision's envelope at the first detection reaching a recall is attained at a true positive, so only
        true positives need scoring (FPs after the last TP move no recall), and a resample's counts are one
        matrix product with its image weights. Cached: every resample of every comparison reuses them."""
        cache = self.__dict__.setdefault("_cumulative_cache", {})
        if (k, t) not in cache:
            sel = np.flatnonzero(self.det_class == k)
            order = sel[np.argsort(-self.det_score[sel], kind="mergesort")]
            images, tp = self.det_image[order], self.det_tp[t, order]
            hits, misses = np.flatnonzero(tp), np.flatnonzero(~tp)
            if not len(hits):
                cache[k, t] = None
            else:
                tp_counts = np.zeros((len(hits), self.n_images))
                tp_counts[np.arange(len(hits)), images[hits]] = 1.0
                fp_counts = np.zeros((len(hits) + 1, self.n_images))
                np.add.at(fp_counts, (np.searchsorted(hits, misses), images[misses]), 1.0)  # FP -> the TP it precedes
                cache[k, t] = (np.cumsum(tp_counts, axis=0).T.copy(), np.cumsum(fp_counts[:-1], axis=0).T.copy())
        return cache[k, t]


def _interpolated_ap(tp_sum: np.ndarray, positives: np.ndarray, precision: np.ndarray) -> np.ndarray:
    """(B,) COCO's 101-point AP per row: the envelope precision at the first detection whose recall
    (tp_sum / positives, in float as COCO divides) reaches each recall threshold, 0 past the last.

    One searchsorted for every row, exactly: true-positive counts are whole numbers, so "recall reaches t" is
    "tp_sum >= m" for the least whole m with m / positives >= t in float; rows are shifted apart by whole
    numbers, which float64 holds exactly."""
    rows, n = tp_sum.shape
    positives = np.where(positives > 0, positives, 1.0)[:, None]
    need = np.ceil(RECALL_THRESHOLDS[None, :] * positives)
    for _ in range(2):  # ceil of a product can be one off the least m that the float division accepts
        need = np.where((need - 1) / positives >= RECALL_THRESHOLDS, need - 1, need)
        need = np.where(need / positives < RECALL_THRESHOLDS, need + 1, need)
    offsets = (np.arange(rows) * (positives.max() + n + 2))[:, None]
    idx = np.searchsorted((tp_sum + offsets).ravel(), (need + offsets).ravel(), side="left").reshape(rows, -1)
    idx -= (np.arange(rows) * n)[:, None]
    reached = idx < n
    picked = np.where(reached, np.take_along_axis(precision, np.minimum(idx, n - 1), axis=1), 0.0)
    return picked.sum(axis=1) / len(RECALL_THRESHOLDS)


def map50_95(ap: np.ndarray) -> np.ndarray:
    """(B,) mAP50-95 in percent from `average_precision`'s (B, nc, T): the mean over classes with ground truth."""
    with np.errstate(invalid="ignore"):
        return np.nanmean(ap.mean(axis=2), axis=1) * 100.0


def _iou(dt: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """(d, g) IoU of xywh boxes, as pycocotools' bbox IoU (no crowd)."""
    x1 = np.maximum(dt[:, None, 0], gt[None, :, 0])
    y1 = np.maximum(dt[:, None, 1], gt[None, :, 1])
    x2 = np.minimum(dt[:, None, 0] + dt[:, None, 2], gt[None, :, 0] + gt[None, :, 2])
    y2 = np.minimum(dt[:, None, 1] + dt[:, None, 3], gt[None, :, 1] + gt[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    union = (dt[:, None, 2] * dt[:, None, 3]) + (gt[None, :, 2] * gt[None, :, 3]) - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / union, 0.0)


def match_images(images: int, nc: int, annotations: list[dict], detections: list[list[float]]) -> MatchTable:
    """The COCO matches of a CocoAccumulator's contents (annotations as COCO dicts, detections as
    [image_id, x, y, w, h, score, class] rows; image ids from 1)."""
    gts_by_key: dict[tuple[int, int], list[int]] = {}
    for i, a in enumerate(annotations):
        gts_by_key.setdefault((a["image_id"] - 1, a["category_id"]), []).append(i)
    gt_boxes = np.asarray([a["bbox"] for a in annotations], dtype=np.float64).reshape(-1, 4)
    gt_score = np.full(len(annotations), np.nan)
    dets = np.asarray(detections, dtype=np.float64).reshape(-1, 7)
    dets_by_key: dict[tuple[int, int], np.ndarray] = {}
    if len(dets):
        keys = (dets[:, 0].astype(np.int64) - 1) * nc + dets[:, 6].astype(np.int64)
        for key in np.unique(keys):
            dets_by_key[(int(key) // nc, int(key) % nc)] = np.flatnonzero(keys == key)
    rows, tps = [], []
    for image in range(images):
        for k in range(nc):
            idx = dets_by_key.get((image, k))
            if idx is None:
                continue
            idx = idx[np.argsort(-dets[idx, 5], kind="mergesort")][:MAX_DETECTIONS]
            gts = gts_by_key.get((image, k), [])
            tp = np.zeros((len(IOU_THRESHOLDS), len(idx)), dtype=bool)
            if gts:
                ious = _iou(dets[idx, 1:5], gt_boxes[gts])
                for t, threshold in enumerate(IOU_THRESHOLDS):
                    taken = np.zeros(len(gts), dtype=bool)
                    for d in np.flatnonzero(ious.max(axis=1) >= threshold):
                        candidates = np.where(taken, -1.0, ious[d])
                        best = len(gts) - 1 - int(np.argmax(candidates[::-1]))  # the last of equal IoUs, as COCO
                        if candidates[best] < min(threshold, 1 - 1e-10):
                            continue
                        taken[best] = True
                        tp[t, d] = True
                        if t == 0:
                            gt_score[gts[best]] = dets[idx[d], 5]
            rows.append(idx)
            tps.append(tp)
    order = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
    tp = np.concatenate(tps, axis=1) if tps else np.zeros((len(IOU_THRESHOLDS), 0), dtype=bool)
    gt_image = np.asarray([a["image_id"] - 1 for a in annotations], dtype=np.int64)
    return MatchTable(n_images=images, nc=nc, det_image=dets[order, 0].astype(np.int64) - 1,
                      det_class=dets[order, 6].astype(np.int64), det_score=dets[order, 5], det_tp=tp,
                      gt_image=gt_image, gt_class=np.asarray([a["category_id"] for a in annotations], dtype=np.int64),
                      gt_area=np.asarray([a["area"] for a in annotations], dtype=np.float64), gt_score=gt_score)
