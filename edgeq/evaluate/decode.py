"""Host-side decoding in numpy: the FP32 half of a detached head, then the head's selection of detections
(class-aware NMS, or Ultralytics' NMS-free top-k for end-to-end heads) for every layout.

The detached decoder mirrors `edgeq.head.build_decode_head` operation for operation; a test holds the two
to the same numbers.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from edgeq.head import OUTPUT_NAME, HeadLayout, HeadSpec


def _sigmoid(x: np.ndarray) -> np.ndarray:
    """The logistic function without overflow for large negative logits (INT8 outputs reach -128 * scale)."""
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def decode_detached(outputs: Mapping[str, np.ndarray], spec: HeadSpec) -> np.ndarray:
    """Per-scale logits -> (4 + nc, A) with xywh in input pixels and sigmoid scores."""
    r = spec.reg_max
    box = np.concatenate([outputs[n].reshape(4 * r, -1) for n in spec.box_outputs], axis=1).astype(np.float32)
    cls = np.concatenate([outputs[n].reshape(spec.nc, -1) for n in spec.cls_outputs], axis=1).astype(np.float32)
    if r > 1:
        logits = box.reshape(4, r, -1)
        logits = np.exp(logits - logits.max(axis=1, keepdims=True))
        dist = (logits / logits.sum(axis=1, keepdims=True) * np.arange(r, dtype=np.float32)[None, :, None]).sum(1)
    else:
        dist = box
    points, strides = spec.anchors()
    lt, rb = dist[:2], dist[2:]
    centre = points.T + (rb - lt) * 0.5
    xywh = np.concatenate([centre, lt + rb], axis=0) * strides[None]
    return np.concatenate([xywh, _sigmoid(cls)], axis=0)


def to_pixel_predictions(outputs: Mapping[str, np.ndarray], layout: HeadLayout, spec: HeadSpec) -> np.ndarray:
    """Any artifact's outputs -> (4 + nc, A) predictions, xywh in input pixels."""
    if layout is HeadLayout.DETACHED:
        return decode_detached(outputs, spec)
    pred = np.asarray(outputs[OUTPUT_NAME], dtype=np.float32).reshape(4 + spec.nc, -1)
    if layout is HeadLayout.NORMALIZED:
        pred = pred.copy()
        pred[:4] *= spec.imgsz
    return pred


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float, max_keep: int) -> np.ndarray:
    """Greedy non-maximum suppression on xyxy boxes; returns kept indices, best first."""
    order = np.argsort(-scores, kind="stable")
    x1, y1, x2, y2 = boxes.T
    areas = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    keep = []
    while order.size and len(keep) < max_keep:
        i = order[0]
        keep.append(i)
        rest = order[1:]
        w = np.clip(np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]), 0, None)
        h = np.clip(np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]), 0, None)
        inter = w * h
        iou = inter / (areas[i] + areas[rest] - inter + 1e-9)
        order = rest[iou <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)


def select_detections(outputs: Mapping[str, np.ndarray], layout: HeadLayout, spec: HeadSpec, conf: float = 0.001,
                      iou: float = 0.7, max_det: int = 300) -> np.ndarray:
    """Any artifact's outputs -> (N, 6) detections [x1, y1, x2, y2, score, class] in input pixels, chosen the
    way the head is meant to be deployed."""
    if layout is HeadLayout.SELECTED:
        dets = np.asarray(next(iter(outputs.values())), np.float32).reshape(-1, 6)
        return dets[dets[:, 4] > conf]
    pred = to_pixel_predictions(outputs, layout, spec)
    if spec.end2end:
        return topk_select(pred, conf, min(max_det, spec.max_det))
    return postprocess(pred, conf, iou, max_det)


def topk_select(pred: np.ndarray, conf: float = 0.001, max_det: int = 300) -> np.ndarray:
    """Ultralytics' end-to-end selection (Detect.get_topk_index), no NMS: the max_det anchors with the best
    class score, then the best max_det (anchor, class) pairs among them; then the confidence threshold."""
    scores = pred[4:]  # (nc, A)
    nc, anchors = scores.shape
    k = min(max_det, anchors)
    best_anchors = _topk(scores.max(0), k)
    pair_scores = scores[:, best_anchors].T.reshape(-1)  # (k * nc), anchor-major as Ultralytics flattens
    pairs = _topk(pair_scores, k)
    anchor, cls = best_anchors[pairs // nc], pairs % nc
    score = pair_scores[pairs]
    xywh = pred[:4, anchor].T
    xyxy = np.concatenate([xywh[:, :2] - xywh[:, 2:] / 2, xywh[:, :2] + xywh[:, 2:] / 2], axis=1)
    dets = np.concatenate([xyxy, score[:, None], cls[:, None].astype(np.float32)], axis=1).astype(np.float32)
    return dets[score > conf]


def _topk(values: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest values, largest first (ties: lower index first, as torch.topk on CPU)."""
    part = np.argpartition(-values, k - 1)[:k] if k < values.size else np.arange(values.size)
    return part[np.lexsort((part, -values[part]))]


def postprocess(pred: np.ndarray, conf: float = 0.001, iou: float = 0.7, max_det: int = 300,
                max_candidates: int = 30000) -> np.ndarray:
    """(4 + nc, A) pixel predictions -> (N, 6) detections [x1, y1, x2, y2, score, class], class-aware NMS."""
    scores_all = pred[4:]
    cls = scores_all.argmax(0)
    score = scores_all[cls, np.arange(cls.size)]
    mask = score > conf
    if not mask.any():
        return np.zeros((0, 6), np.float32)
    xywh, score, cls = pred[:4, mask].T, score[mask], cls[mask]
    if score.size > max_candidates:
        top = np.argsort(-score)[:max_candidates]
        xywh, score, cls = xywh[top], score[top], cls[top]
    xyxy = np.concatenate([xywh[:, :2] - xywh[:, 2:] / 2, xywh[:, :2] + xywh[:, 2:] / 2], axis=1)
    offset = cls[:, None].astype(np.float32) * 7680.0  # class-aware NMS in one pass (boxes never overlap across classes)
    keep = nms(xyxy + offset, score, iou, max_det)
    return np.concatenate([xyxy[keep], score[keep, None], cls[keep, None].astype(np.float32)], axis=1)
