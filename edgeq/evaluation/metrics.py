"""COCO mAP50-95 / mAP50 through faster-coco-eval.

Why faster-coco-eval: it is maintained (pycocotools' last real change was years ago), it is the
pycocotools algorithm with a C++ core, so figures match the numbers deployment write-ups quote, and it is
several times faster, which matters when every artifact of an export is evaluated on the same images.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass, field

import numpy as np

from edgeq.evaluation.matches import MatchTable, match_images


@dataclass
class CocoAccumulator:
    """Collects ground truth and detections per image, then scores them in one pass."""

    nc: int
    images: list[dict] = field(default_factory=list)
    annotations: list[dict] = field(default_factory=list)
    detections: list[list[float]] = field(default_factory=list)
    size_ap: dict[str, float | None] = field(default_factory=dict)  # COCO's small/medium/large AP, set by score()

    def add(self, shape: tuple[int, int], labels: np.ndarray, detections: np.ndarray) -> None:
        """labels: (n, 5) class cx cy w h normalised; detections: (m, 6) x1 y1 x2 y2 score class in pixels."""
        image_id = len(self.images) + 1
        h, w = shape
        self.images.append({"id": image_id, "width": w, "height": h})
        for cls, cx, cy, bw, bh in labels.tolist():
            box = [(cx - bw / 2) * w, (cy - bh / 2) * h, bw * w, bh * h]
            self.annotations.append({"id": len(self.annotations) + 1, "image_id": image_id,
                                     "category_id": int(cls), "bbox": box, "area": box[2] * box[3],
                                     "iscrowd": 0})
        for x1, y1, x2, y2, score, cls in detections.tolist():
            self.detections.append([image_id, x1, y1, x2 - x1, y2 - y1, score, int(cls)])

    def score(self) -> tuple[float, float]:
        """(mAP50-95, mAP50) in percent."""
        from faster_coco_eval import COCO, COCOeval_faster

        if not self.detections or not self.annotations:
            return 0.0, 0.0
        gt = COCO()
        gt.dataset = {"images": self.images, "annotations": self.annotations,
                      "categories": [{"id": i, "name": str(i)} for i in range(self.nc)]}
        with contextlib.redirect_stdout(io.StringIO()):
            gt.createIndex()
            dt = gt.loadRes(np.asarray(self.detections, dtype=np.float64))
            ev = COCOeval_faster(gt, dt, "bbox", print_function=lambda *a, **k: None)
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
        self.size_ap = {size: None if ev.stats[i] < 0 else round(float(ev.stats[i]) * 100.0, 2)
                        for i, size in ((3, "small"), (4, "medium"), (5, "large"))}
        return float(ev.stats[0]) * 100.0, float(ev.stats[1]) * 100.0

    def matches(self) -> MatchTable:
        """The per-image matches behind `score()`, for the figures derived from them (edgeq.evaluation.matches)."""
        table = match_images(len(self.images), self.nc, self.annotations, self.detections)
        table.size_ap = dict(self.size_ap)
        return table
