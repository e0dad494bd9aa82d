"""COCO mAP50-95 / mAP50 through faster-coco-eval.

Why faster-coco-eval: it is maintained (pycocotools' last real change was years ago), it is the
pycocotools algorithm with a C++ core, so figures match the numbers deployment write-ups quote, and it is
several times faster, which matters when every artifact of an export is evaluated on the same images.

The accumulator and the scoring call are `edgeq.hostside`'s, the module every deploy kit ships, so
`infer.py --validate` scores on the device with exactly this code; here it also keeps the per-image matches.
"""

from __future__ import annotations

from edgeq.evaluation.matches import MatchTable, match_images
from edgeq.hostside import CocoAccumulator as _KitAccumulator


class CocoAccumulator(_KitAccumulator):
    """Collects ground truth and detections per image, then scores them in one pass."""

    def matches(self) -> MatchTable:
        """The per-image matches behind `score()`, for the figures derived from them (edgeq.evaluation.matches)."""
        table = match_images(len(self.images), self.nc, self.annotations, self.detections)
        table.size_ap = dict(self.size_ap)
        return table
