"""The images behind an export's figures, on record: every calibration image by path and content hash, and one
hash for the evaluation set (its images' and label files' contents), so a report says exactly what it was
calibrated and scored on, and a figure from elsewhere (a device's validation) can be checked against the same set.

By content, not by name: a dataset that copies an image into both splits under two names (a Roboflow re-export,
a val folder made from train) still calibrates on images it then scores, and its figures look better than the
deployment will see. That overlap is refused unless asked for (`calibration.allow_overlap`, `--allow-overlap`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from edgeq import hostside
from edgeq.data.labels import label_path
from edgeq.errors import EdgeqError


def content_hash(path: Path) -> str:
    """SHA-256 of the file's bytes, hex; the empty string for a file that does not exist (an unlabelled image)."""
    return hostside.file_sha256(path)


@dataclass(frozen=True)
class ImageSets:
    """The calibration images (path, hash) and the evaluation images' hashes, with the set hash the report keeps."""

    calibration: list[dict[str, str]]  # [{"path": ..., "sha256": ...}] in calibration order
    evaluation_hashes: list[str]
    evaluation_sha256: str
    overlap: list[tuple[str, str]]  # (calibration path, evaluation path) of each calibration image also evaluated

    def record(self) -> dict:
        """What report.json keeps under data: the calibration list and the evaluation set's hash."""
        return {"calibration_set": self.calibration,
                "evaluation_set": {"images": len(self.evaluation_hashes), "sha256": self.evaluation_sha256},
                "overlap_images": len(self.overlap)}


def evaluation_set_hash(images: Sequence[Path], image_hashes: Sequence[str] | None = None) -> str:
    """One SHA-256 over the evaluation images and their label files by content, independent of their order and
    names: the same images with the same labels, wherever they lie, give the same hash. The formula is the deploy
    kit's (`edgeq.hostside`), so `infer.py --validate` on the device states the same hash for the same set."""
    image_hashes = image_hashes if image_hashes is not None else [content_hash(p) for p in images]
    return hostside.evaluation_set_hash(image_hashes, [content_hash(label_path(p)) for p in images])


def image_sets(calibration: Sequence[Path], evaluation: Sequence[Path], root: Path) -> ImageSets:
    """Hash both subsets (paths relative to the dataset root where they lie inside it) and find the calibration
    images whose content is also an evaluation image's."""
    calib_hashes = [content_hash(p) for p in calibration]
    eval_hashes = [content_hash(p) for p in evaluation]
    evaluated = dict(zip(eval_hashes, evaluation))
    overlap = [(_shown(c, root), _shown(evaluated[h], root)) for c, h in zip(calibration, calib_hashes)
               if h in evaluated]
    return ImageSets(calibration=[{"path": _shown(p, root), "sha256": h} for p, h in zip(calibration, calib_hashes)],
                     evaluation_hashes=eval_hashes, evaluation_sha256=evaluation_set_hash(evaluation, eval_hashes),
                     overlap=overlap)


def refuse_overlap(sets: ImageSets, calib_split: str, val_split: str) -> None:
    """One line naming how many calibration images are also evaluation images, an example pair, and the fix."""
    if not sets.overlap:
        return
    calib, evaluated = sets.overlap[0]
    same = "the same file" if calib == evaluated else f"the same content as '{evaluated}'"
    raise EdgeqError(
        f"{len(sets.overlap)} of the {len(sets.calibration)} calibration images (split '{calib_split}') are also "
        f"among the {len(sets.evaluation_hashes)} evaluation images (split '{val_split}'), by content (e.g. "
        f"'{calib}' is {same}): the figures would be scored partly on the images INT8 was calibrated on",
        "calibrate and evaluate on disjoint images (separate train and val splits; a flat images/ folder serves "
        "both: split it into images/train and images/val), or pass --allow-overlap (recipe key calibration.allow_overlap) to accept it")


def _shown(path: Path, root: Path) -> str:
    """The path relative to the dataset root when it lies inside it, else as given."""
    try:
        return str(Path(path).resolve().relative_to(root))
    except ValueError:
        return str(path)
