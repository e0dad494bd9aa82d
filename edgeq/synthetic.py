"""Deterministic synthetic detection dataset: six geometric shape classes on cluttered backgrounds.

It is edgeq's embedded demo data. The demo detectors shipped under ``edgeq/assets`` were trained on it, the
demo calibration and validation sets are drawn from it, and nothing has to be downloaded for any of that.

Every image is a pure function of ``(seed, split, index, imgsz)``: its generator is
``numpy.random.default_rng([seed, split_id, index])``, so regenerating a dataset gives identical bytes, a
larger dataset is a superset of a smaller one with the same seed, and ``val`` never repeats a ``train``
image. Boxes are the tight axis-aligned boxes of each shape's drawn pixels, clipped to the image.

``generate_dataset`` writes any renderer of that signature (``render=``, ``class_names=``): the benchmark's
second generator (scripts/shapes_v2.py) is written by the same code.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import cv2
import numpy as np
from edgeq.env import cpus

__all__ = ["CLASS_NAMES", "SPLITS", "generate_dataset", "render_sample"]

CLASS_NAMES: tuple[str, ...] = ("circle", "square", "triangle", "star", "cross", "ring")
SPLITS: dict[str, int] = {"train": 0, "val": 1}  # split name -> split_id in the rng key

JPEG_QUALITY = 95
_MAX_OBJECTS = 8
_IOU_MAX = 0.4  # skip a placement whose box IoU with an earlier box is above this
_IOA_MAX = 0.7  # ... or that nests inside (or around) an earlier box
_VISIBLE_MIN = 0.6  # ... or that hides more than 40 % of an earlier shape's pixels
_MIN_CONTRAST = 110.0  # wanted RGB distance between a shape's colour and its local background


# ----------------------------------------------------------------------------------------------------------
# shapes
# ----------------------------------------------------------------------------------------------------------


def _rot(points: np.ndarray, angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return points @ np.array([[c, s], [-s, c]], dtype=np.float64)


def _star(r: float, inner: float, angle: float) -> np.ndarray:
    k = np.arange(10)
    radius = np.where(k % 2 == 0, r, r * inner)
    theta = k * math.pi / 5 - math.pi / 2
    return _rot(np.stack([radius * np.cos(theta), radius * np.sin(theta)], axis=1), angle)


def _cross(r: float, arm: float, angle: float) -> np.ndarray:
    a = r * arm  # half-width of an arm
    pts = np.array(
        [(-a, -r), (a, -r), (a, -a), (r, -a), (r, a), (a, a), (a, r), (-a, r), (-a, a), (-r, a), (-r, -a), (-a, -a)],
        dtype=np.float64,
    )
    return _rot(pts, angle)


def _draw_shape_mask(cls: int, cx: float, cy: float, size: float, rng: np.random.Generator, imgsz: int) -> np.ndarray:
    """Return a uint8 coverage mask (0..255, anti-aliased) of one shape of class ``cls``, ``size`` px across."""
    mask = np.zeros((imgsz, imgsz), np.uint8)
    r = size / 2.0
    shift = 4  # sub-pixel precision for cv2 drawing
    scale = 1 << shift
    centre = (int(round(cx * scale)), int(round(cy * scale)))
    angle = float(rng.uniform(0, 2 * math.pi))
    if cls == 0:  # circle: filled disc
        cv2.circle(mask, centre, int(round(r * scale)), 255, -1, cv2.LINE_AA, shift)
    elif cls == 5:  # ring: hollow disc with a thick outline, background shows through the hole
        thick = float(rng.uniform(0.22, 0.34)) * r
        cv2.circle(mask, centre, int(round(r * scale)), 255, -1, cv2.LINE_AA, shift)
        hole = np.zeros_like(mask)
        cv2.circle(hole, centre, int(round((r - thick) * scale)), 255, -1, cv2.LINE_AA, shift)
        mask = cv2.subtract(mask, hole)
    else:
        if cls == 1:  # square, rotated
            h = r * float(rng.uniform(0.72, 0.8))  # half side; the nominal size is about the rotated extent
            pts = _rot(np.array([(-h, -h), (h, -h), (h, h), (-h, h)], dtype=np.float64), angle)
        elif cls == 2:  # triangle: equilateral-ish, rotated
            theta = np.array([0.0, 2 * math.pi / 3, 4 * math.pi / 3]) + rng.uniform(-0.12, 0.12, 3)
            pts = _rot(np.stack([r * np.cos(theta), r * np.sin(theta)], axis=1), angle)
        elif cls == 3:  # five-pointed star
            pts = _star(r, float(rng.uniform(0.38, 0.5)), angle)
        else:  # cross (plus sign), rotated
            pts = _cross(r, float(rng.uniform(0.17, 0.26)), angle)
        pts = np.round((pts + (cx, cy)) * scale).astype(np.int32)
        cv2.fillPoly(mask, [pts], 255, cv2.LINE_AA, shift)
    return mask


# ----------------------------------------------------------------------------------------------------------
# background and clutter
# ----------------------------------------------------------------------------------------------------------


def _noise(rng: np.random.Generator, shape: tuple[int, ...], sigma: float) -> np.ndarray:
    """Zero-mean uniform pixel noise with standard deviation ``sigma`` (much cheaper than Gaussian draws)."""
    u = np.frombuffer(rng.bytes(int(np.prod(shape))), np.uint8).reshape(shape).astype(np.float32)
    return (u - np.float32(127.5)) * np.float32(sigma / 73.9)


def _background(rng: np.random.Generator, imgsz: int) -> np.ndarray:
    """Smooth random colour field plus low-frequency mottling and fine noise, float32 HxWx3 in 0..255."""
    low = max(imgsz // 4, 8)  # build the smooth part at low resolution, then upsample once
    g = int(rng.integers(2, 5))
    grid = rng.uniform(0, 255, (g, g, 3)).astype(np.float32)
    field = cv2.resize(grid, (low, low), interpolation=cv2.INTER_CUBIC if g > 2 else cv2.INTER_LINEAR)
    m = int(rng.integers(6, 16))
    mottle = rng.normal(0, float(rng.uniform(5, 25)), (m, m, 3)).astype(np.float32)
    field += cv2.resize(mottle, (low, low), interpolation=cv2.INTER_CUBIC)
    img = cv2.resize(field, (imgsz, imgsz), interpolation=cv2.INTER_LINEAR)
    img += _noise(rng, img.shape, float(rng.uniform(2, 10)))
    return img


def _rand_colour(rng: np.random.Generator) -> tuple[float, float, float]:
    return tuple(float(v) for v in rng.uniform(0, 255, 3))


def _clutter(img: np.ndarray, rng: np.random.Generator, imgsz: int, n_lines: int, n_curves: int, n_blobs: int) -> None:
    """Draw distractors that are not in the class set: straight lines, curves, arcs and small blobs."""
    s = imgsz
    for _ in range(n_lines):
        p1 = tuple(int(v) for v in rng.integers(-s // 4, s + s // 4, 2))
        p2 = tuple(int(v) for v in rng.integers(-s // 4, s + s // 4, 2))
        cv2.line(img, p1, p2, _rand_colour(rng), int(rng.integers(1, max(2, s // 80) + 1)), cv2.LINE_AA)
    for _ in range(n_curves):
        if rng.random() < 0.5:  # open polyline through a smoothed random walk
            k = int(rng.integers(4, 9))
            pts = np.cumsum(rng.normal(0, s * 0.08, (k, 2)), axis=0) + rng.uniform(0, s, 2)
            t = np.linspace(0, k - 1, 6 * k)
            xs = np.interp(t, np.arange(k), pts[:, 0])
            ys = np.interp(t, np.arange(k), pts[:, 1])
            xs = cv2.GaussianBlur(xs.reshape(1, -1), (1, 9), 0).ravel()
            ys = cv2.GaussianBlur(ys.reshape(1, -1), (1, 9), 0).ravel()
            curve = np.stack([xs, ys], axis=1).round().astype(np.int32)
            cv2.polylines(img, [curve], False, _rand_colour(rng), int(rng.integers(1, 4)), cv2.LINE_AA)
        else:  # open arc of an ellipse (never closes into a ring)
            centre = tuple(int(v) for v in rng.uniform(0, s, 2))
            axes = tuple(int(v) for v in rng.uniform(s * 0.05, s * 0.3, 2))
            start = float(rng.uniform(0, 360))
            cv2.ellipse(img, centre, axes, float(rng.uniform(0, 180)), start, start + float(rng.uniform(40, 200)),
                        _rand_colour(rng), int(rng.integers(1, 4)), cv2.LINE_AA)
    for _ in range(n_blobs):  # small irregular blobs, well under the smallest object size
        centre = rng.uniform(0, s, 2)
        k = int(rng.integers(7, 13))  # many lumpy vertices: never a clean triangle, square or star
        theta = np.sort(rng.uniform(0, 2 * math.pi, k))
        rad = rng.uniform(0.006, 0.03, k) * s
        pts = np.stack([centre[0] + rad * np.cos(theta), centre[1] + rad * np.sin(theta)], axis=1)
        cv2.fillPoly(img, [pts.round().astype(np.int32)], _rand_colour(rng), cv2.LINE_AA)


# ----------------------------------------------------------------------------------------------------------
# one sample
# ----------------------------------------------------------------------------------------------------------


def _box_of(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """Tight box (x0, y0, x1, y1), x1/y1 exclusive, of the pixels at least half covered."""
    on = mask >= 128
    cols = np.flatnonzero(on.any(axis=0))
    if cols.size == 0:
        return None
    rows = np.flatnonzero(on.any(axis=1))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def _iou_ioa(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> tuple[float, float]:
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0, 0.0
    inter = iw * ih
    area_a = (a[2] - a[0]) * (a[3] - a[1])
    area_b = (b[2] - b[0]) * (b[3] - b[1])
    return inter / (area_a + area_b - inter), inter / min(area_a, area_b)


def _placement(
    mask: np.ndarray,
    objects: list[Box],
    owner: np.ndarray,
    visible: list[int],
    areas: list[int],
    *,
    iou_max: float,
    ioa_max: float,
    visible_min: float,
) -> tuple[tuple[int, int, int, int], np.ndarray, np.ndarray] | None:
    """Whether a drawn shape may join the image: (its box, its solid pixels inside the box, the pixels each
    earlier object would lose under it), or None when it is under 4 px, overlaps an earlier box too much, or
    would leave an earlier shape less than ``visible_min`` of its pixels. ``owner`` maps each pixel to the
    object on top (-1: none)."""
    box = _box_of(mask)
    if box is None or min(box[2] - box[0], box[3] - box[1]) < 4:
        return None
    if any(iou > iou_max or ioa > ioa_max for iou, ioa in (_iou_ioa(box, o[1:]) for o in objects)):
        return None
    x0, y0, x1, y1 = box
    solid = mask[y0:y1, x0:x1] >= 128
    lost = np.bincount(owner[y0:y1, x0:x1][solid].astype(np.int64) + 1, minlength=len(objects) + 1)[1:]
    if objects and np.any(np.asarray(visible) - lost < visible_min * np.asarray(areas)):
        return None
    return box, solid, lost


def _pick_colour(rng: np.random.Generator, local: np.ndarray) -> np.ndarray:
    """A random colour that stands out from the local background mean (best of a few draws)."""
    best, best_d = None, -1.0
    for _ in range(24):
        c = rng.uniform(0, 255, 3)
        d = float(np.linalg.norm(c - local))
        if d >= _MIN_CONTRAST:
            return c
        if d > best_d:
            best, best_d = c, d
    return best  # type: ignore[return-value]


Box = tuple[int, int, int, int, int]  # (cls, x0, y0, x1, y1) in pixels, x1/y1 exclusive
Renderer = Callable[[int, str, int, int], tuple[np.ndarray, list[Box]]]  # (seed, split, index, imgsz) -> sample


def render_sample(seed: int, split: str | int, index: int, imgsz: int = 320) -> tuple[np.ndarray, list[Box]]:
    """Render one image. Returns (BGR uint8 image, [(cls, x0, y0, x1, y1), ...]) with pixel boxes, x1/y1 exclusive."""
    split_id = SPLITS[split] if isinstance(split, str) else int(split)
    rng = np.random.default_rng([int(seed), split_id, int(index)])
    s = imgsz
    img = _background(rng, s)
    _clutter(img, rng, s, int(rng.integers(0, 7)), int(rng.integers(0, 5)), int(rng.integers(0, 13)))

    n_want = int(rng.integers(1, _MAX_OBJECTS + 1))
    owner = np.full((s, s), -1, np.int16)  # which object owns each visible pixel
    areas: list[int] = []
    visible: list[int] = []  # pixels of each object still on top
    objects: list[Box] = []
    tries = 0
    while len(objects) < n_want and tries < n_want * 6:
        tries += 1
        cls = int(rng.integers(0, len(CLASS_NAMES)))
        frac = rng.uniform(0.09, 0.16) if rng.random() < 0.3 else rng.uniform(0.14, 0.45)
        size = float(frac) * s
        over = 0.12 * size  # how far a shape may poke out of the image
        cx = float(rng.uniform(size / 2 - over, s - size / 2 + over))
        cy = float(rng.uniform(size / 2 - over, s - size / 2 + over))
        mask = _draw_shape_mask(cls, cx, cy, size, rng, s)
        placed = _placement(mask, objects, owner, visible, areas, iou_max=_IOU_MAX, ioa_max=_IOA_MAX,
                            visible_min=_VISIBLE_MIN)
        if placed is None:
            continue
        (x0, y0, x1, y1), solid, lost = placed
        roi = img[y0:y1, x0:x1]
        outside = mask[y0:y1, x0:x1] < 128
        local = roi[outside].mean(axis=0) if outside.any() else roi.mean(axis=(0, 1))
        colour = _pick_colour(rng, local).astype(np.float32)
        # soft shading so flat fills are not the only cue
        alpha = (mask[y0:y1, x0:x1].astype(np.float32) / 255.0)[..., None]
        shade = 1.0 + float(rng.uniform(-0.15, 0.15)) * np.linspace(-1, 1, x1 - x0, dtype=np.float32)[None, :, None]
        roi[:] = roi * (1 - alpha) + np.clip(colour * shade, 0, 255) * alpha
        owner[y0:y1, x0:x1][solid] = len(objects)
        visible = [v - int(n) for v, n in zip(visible, lost)] + [int(solid.sum())]
        areas.append(visible[-1])
        objects.append((cls, x0, y0, x1, y1))

    if rng.random() < 0.3:  # a thin line or two across everything, objects included
        _clutter(img, rng, s, int(rng.integers(1, 3)), 0, 0)
    if rng.random() < 0.35:
        img = cv2.GaussianBlur(img, (0, 0), float(rng.uniform(0.5, 1.1)))
    if rng.random() < 0.5:
        img += _noise(rng, img.shape, float(rng.uniform(2, 8)))
    out = np.clip(img, 0, 255).astype(np.uint8)
    return out[..., ::-1].copy(), objects  # drawn as RGB, returned as BGR for cv2


def _label_text(objects: list[Box], imgsz: int) -> str:
    lines = []
    for cls, x0, y0, x1, y1 in objects:
        cx, cy = (x0 + x1) / 2 / imgsz, (y0 + y1) / 2 / imgsz
        w, h = (x1 - x0) / imgsz, (y1 - y0) / imgsz
        lines.append(f"{cls} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}")
    return "\n".join(lines) + ("\n" if lines else "")


_Job = tuple[Path, int, str, int, int, Renderer]


def _write_one(job: _Job) -> None:
    root, seed, split, index, imgsz, render = job
    img, objects = render(seed, split, index, imgsz)
    stem = f"{split}_{index:06d}"
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise RuntimeError(f"JPEG encoding failed for {stem}")
    (root / "images" / split / f"{stem}.jpg").write_bytes(buf.tobytes())
    (root / "labels" / split / f"{stem}.txt").write_text(_label_text(objects, imgsz))


def _run(jobs: list[_Job]) -> Iterator[None]:
    workers = min(cpus(), 16)
    if workers < 2 or len(jobs) < 200:
        for job in jobs:
            yield _write_one(job)
        return
    import multiprocessing as mp

    with mp.get_context("spawn" if os.name == "nt" else None).Pool(workers) as pool:
        yield from pool.imap_unordered(_write_one, jobs, chunksize=32)


def generate_dataset(
    root: Path,
    *,
    train: int,
    val: int,
    imgsz: int = 320,
    seed: int = 0,
    progress: bool = False,
    render: Renderer = render_sample,
    class_names: Sequence[str] = CLASS_NAMES,
    title: str = "edgeq synthetic shapes",
) -> Path:
    """Write ``train`` + ``val`` synthetic images and YOLO labels under ``root``; return ``root/data.yaml``.

    Layout: ``root/images/{train,val}/*.jpg``, ``root/labels/{train,val}/*.txt`` and ``root/data.yaml``.
    Files a previous, larger generation left behind are removed, as is Ultralytics' label cache.
    ``render`` draws each image (a module-level function, so worker processes can pickle it by name) and
    ``class_names`` names its classes in data.yaml; ``title`` heads data.yaml's comment.
    """
    root = Path(root).resolve()
    jobs: list[_Job] = []
    for split, count in (("train", int(train)), ("val", int(val))):
        if count < 0:
            raise ValueError(f"{split} count must be >= 0, got {count}")
        img_dir, lbl_dir = root / "images" / split, root / "labels" / split
        img_dir.mkdir(parents=True, exist_ok=True)
        lbl_dir.mkdir(parents=True, exist_ok=True)
        keep = {f"{split}_{i:06d}" for i in range(count)}
        for d, ext in ((img_dir, ".jpg"), (lbl_dir, ".txt")):
            for f in d.glob(f"{split}_*{ext}"):
                if f.stem not in keep:
                    f.unlink()
        (root / "labels" / f"{split}.cache").unlink(missing_ok=True)
        jobs += [(root, int(seed), split, i, int(imgsz), render) for i in range(count)]

    it = _run(jobs)
    if progress:
        from tqdm import tqdm

        it = tqdm(it, total=len(jobs), desc=f"synthetic data (seed {seed})", unit="img")
    for _ in it:
        pass

    names = "\n".join(f"  {i}: {n}" for i, n in enumerate(class_names))
    yaml_path = root / "data.yaml"
    # Ultralytics resolves a relative `path` against the working directory, not the yaml's folder, so the
    # dataset root is written absolute.
    yaml_path.write_text(
        f"# {title}: seed {seed}, imgsz {imgsz}, {train} train / {val} val images\n"
        f"path: {root.as_posix()}\ntrain: images/train\nval: images/val\nnc: {len(class_names)}\nnames:\n{names}\n"
    )
    return yaml_path
