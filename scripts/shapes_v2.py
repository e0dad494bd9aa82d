#!/usr/bin/env python3
"""shapes_v2: a second synthetic detection set, unlike edgeq's own (edgeq/synthetic.py), for benchmark detectors.

Why: YOLO26n detectors trained elsewhere, on data other than edgeq's demo shapes, lose far more on DLA INT8 than
edgeq's demo YOLO26n does (issue 23: 2.15 against 0.28 mAP50-95 points). Reproducing and fixing that needs
detectors of our own that learnt from other images, so this generator differs from edgeq's wherever the
activations a detector learns could depend on it:
  - classes: disc, bar, pentagon, arrow, crescent, diamond (none of edgeq's circle/square/triangle/star/cross/ring);
  - backgrounds: linear or radial gradients, fractal noise, warped stripes and tiles, with grain;
  - contrast: low and varying (RGB distance 18..130 from the local background), fills with their own gradient
    or texture, sometimes translucent, and a per-image gamma and contrast gain;
  - sizes: log-uniform from 3.5 % to 50 % of the image (11 to 160 px at 320 px), so many objects are small;
  - occlusion: objects may overlap more than edgeq's, and edge-to-edge bands or ragged blotches cross them (each
    object keeps at least 45 % of its pixels visible; its box stays the whole shape's);
  - degradations: Gaussian or motion blur, sensor noise, and a JPEG round trip at quality 25..95 per image.

Every image is a pure function of (seed, split, index, imgsz): its generator is
numpy.random.default_rng([seed, split_id, index, 2]); the trailing 2 keeps its streams apart from edgeq's for the
same seed. The files, their layout and data.yaml are written by edgeq.synthetic.generate_dataset (Ultralytics'
layout, as edgeq's own data). A benchmark input, not part of the wheel:

    python scripts/shapes_v2.py --out /tmp/shapes_v2 --train 4000 --val 500 --seed 1
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, edgeq not installed

from edgeq.synthetic import SPLITS, Box, _noise, _placement, _rot, generate_dataset

CLASS_NAMES: tuple[str, ...] = ("disc", "bar", "pentagon", "arrow", "crescent", "diamond")
TITLE = "shapes_v2 (scripts/shapes_v2.py)"
_STREAM = 2  # last element of the rng key: edgeq.synthetic uses 3-element keys
_MAX_OBJECTS = 10
_SIZE_RANGE = (0.035, 0.5)  # nominal object size, fraction of the image, drawn log-uniform
_IOU_MAX = 0.55
_IOA_MAX = 0.8
_VISIBLE_MIN = 0.45  # share of an object's pixels that must stay visible under later objects and occluders
_CONTRAST = (18.0, 130.0)  # RGB distance of an object's colour from its local background


# ----------------------------------------------------------------------------------------------------------
# shapes
# ----------------------------------------------------------------------------------------------------------


def _outline(cls: int, r: float, rng: np.random.Generator) -> np.ndarray:
    """Polygon (N x 2, centred, unrotated) of the polygonal classes: bar, pentagon, arrow, diamond."""
    if cls == 1:  # bar: a long thin rectangle
        w = r * float(rng.uniform(0.16, 0.3))
        return np.array([(-r, -w), (r, -w), (r, w), (-r, w)], np.float64)
    if cls == 2:  # pentagon, vertices a little uneven
        theta = np.arange(5) * 2 * math.pi / 5 + rng.uniform(-0.08, 0.08, 5)
        return np.stack([r * np.cos(theta), r * np.sin(theta)], axis=1)
    if cls == 3:  # arrow: shaft and head
        shaft, head, neck = r * float(rng.uniform(0.13, 0.22)), r * float(rng.uniform(0.45, 0.62)), r * 0.1
        return np.array([(-r, -shaft), (neck, -shaft), (neck, -head), (r, 0.0), (neck, head), (neck, shaft),
                         (-r, shaft)], np.float64)
    half = r * float(rng.uniform(0.5, 0.72))  # diamond: a rhombus, long axis 2r
    return np.array([(-r, 0.0), (0.0, -half), (r, 0.0), (0.0, half)], np.float64)


def _shape_mask(cls: int, cx: float, cy: float, size: float, rng: np.random.Generator, s: int) -> np.ndarray:
    """Anti-aliased uint8 coverage mask (0..255) of one shape of class ``cls``, about ``size`` px across."""
    mask = np.zeros((s, s), np.uint8)
    r = size / 2.0
    shift = 4
    scale = 1 << shift
    centre = (round(cx * scale), round(cy * scale))
    angle = float(rng.uniform(0, 2 * math.pi))
    if cls == 0:  # disc: a filled, slightly elliptic disc
        axes = (round(r * scale), round(r * float(rng.uniform(0.82, 1.0)) * scale))
        cv2.ellipse(mask, centre, axes, math.degrees(angle), 0, 360, 255, -1, cv2.LINE_AA, shift)
    elif cls == 4:  # crescent: a disc minus an offset disc
        cv2.circle(mask, centre, round(r * scale), 255, -1, cv2.LINE_AA, shift)
        off = r * float(rng.uniform(0.35, 0.55))
        bite = (round((cx + off * math.cos(angle)) * scale), round((cy + off * math.sin(angle)) * scale))
        hole = np.zeros_like(mask)
        cv2.circle(hole, bite, round(r * float(rng.uniform(0.78, 0.92)) * scale), 255, -1, cv2.LINE_AA, shift)
        mask = cv2.subtract(mask, hole)
    else:
        pts = np.round((_rot(_outline(cls, r, rng), angle) + (cx, cy)) * scale).astype(np.int32)
        cv2.fillPoly(mask, [pts], 255, cv2.LINE_AA, shift)
    return mask


# ----------------------------------------------------------------------------------------------------------
# backgrounds and distractors
# ----------------------------------------------------------------------------------------------------------


def _fractal(rng: np.random.Generator, s: int, base: int) -> np.ndarray:
    """Fractal value noise in 0..1 (float32 s x s): octaves of random grids from ``base`` cells, upsampled."""
    out = np.zeros((s, s), np.float32)
    weight, total = 1.0, 0.0
    cells = base
    while cells <= s // 4:
        grid = rng.random((cells, cells), dtype=np.float32)
        out += weight * cv2.resize(grid, (s, s), interpolation=cv2.INTER_CUBIC)
        total += weight
        weight *= 0.55
        cells *= 2
    out /= total
    lo, hi = float(out.min()), float(out.max())
    return (out - lo) / max(hi - lo, 1e-6)


def _background(rng: np.random.Generator, s: int) -> np.ndarray:
    """A gradient, fractal noise, warped stripes or tiles between two colours, plus grain: float32 s x s x 3."""
    c0 = rng.uniform(0, 255, 3).astype(np.float32)
    c1 = np.clip(c0 + rng.normal(0, 1, 3) * float(rng.uniform(20, 110)), 0, 255).astype(np.float32)
    yy, xx = (v.astype(np.float32) / np.float32(s) for v in np.ogrid[0:s, 0:s])  # broadcast, never s x s
    kind = int(rng.integers(0, 4))
    if kind == 0:  # linear or radial gradient
        if rng.random() < 0.5:
            a = float(rng.uniform(0, 2 * math.pi))
            t = xx * math.cos(a) + yy * math.sin(a)
        else:
            px, py = rng.uniform(-0.2, 1.2, 2)
            t = np.sqrt((xx - px) ** 2 + (yy - py) ** 2)
    elif kind == 1:  # fractal noise
        t = _fractal(rng, s, int(rng.integers(2, 6)))
    elif kind == 2:  # stripes, warped by noise (wood grain, fabric)
        a = float(rng.uniform(0, math.pi))
        freq = float(rng.uniform(3, 18))
        warp = _fractal(rng, s, 3) * float(rng.uniform(0, 6))
        t = 0.5 + 0.5 * np.sin(2 * math.pi * freq * (xx * math.cos(a) + yy * math.sin(a)) + warp)
    else:  # tiles of random shades, softened
        cells = int(rng.integers(4, 20))
        grid = rng.random((cells, cells), dtype=np.float32)
        t = cv2.resize(grid, (s, s), interpolation=cv2.INTER_NEAREST)
        t = cv2.GaussianBlur(t, (0, 0), float(rng.uniform(0.5, 3.0)))
    t = t.astype(np.float32)
    t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    img = c0 + t[..., None] * (c1 - c0)
    img += _noise(rng, img.shape, float(rng.uniform(1, 14)))
    return img


def _distractors(img: np.ndarray, rng: np.random.Generator, s: int) -> None:
    """Scribbles and dot clusters: thin or tiny, never mistaken for a shape of the six classes."""
    for _ in range(int(rng.integers(0, 4))):  # scribble: a jittery open polyline
        k = int(rng.integers(4, 10))
        pts = (np.cumsum(rng.normal(0, s * 0.05, (k, 2)), axis=0) + rng.uniform(0, s, 2)).round().astype(np.int32)
        cv2.polylines(img, [pts], False, tuple(float(v) for v in rng.uniform(0, 255, 3)), int(rng.integers(1, 3)),
                      cv2.LINE_AA)
    for _ in range(int(rng.integers(0, 3))):  # a cluster of dots, well under the smallest disc
        centre = rng.uniform(0, s, 2)
        colour = tuple(float(v) for v in rng.uniform(0, 255, 3))
        for p in centre + rng.normal(0, s * 0.03, (int(rng.integers(3, 12)), 2)):
            cv2.circle(img, (int(p[0]), int(p[1])), int(rng.integers(1, 3)), colour, -1, cv2.LINE_AA)


def _occluder(rng: np.random.Generator, s: int) -> np.ndarray:
    """Coverage (float32 0..1) of something drawn over everything that no class looks like: a band from one
    edge of the image to another (longer than any bar) or an organic blotch with a ragged, noisy outline."""
    if rng.random() < 0.5:
        mask = np.zeros((s, s), np.uint8)
        a = float(rng.uniform(0, math.pi))
        centre = rng.uniform(0.2 * s, 0.8 * s, 2)
        d = np.array([math.cos(a), math.sin(a)]) * 2 * s  # both ends well outside the image
        p1, p2 = (centre - d).round().astype(int), (centre + d).round().astype(int)
        cv2.line(mask, (int(p1[0]), int(p1[1])), (int(p2[0]), int(p2[1])), 255,
                 int(rng.integers(3, max(4, s // 18))), cv2.LINE_AA)
        return mask.astype(np.float32) / 255.0
    yy, xx = (v.astype(np.float32) for v in np.ogrid[0:s, 0:s])
    cx, cy = rng.uniform(0, s, 2)
    radius = float(rng.uniform(0.06, 0.18)) * s
    dist = np.sqrt((xx - cx) ** 2 + (yy - cy) ** 2) / radius
    ragged = (1.0 - dist) + 0.9 * (_fractal(rng, s, int(rng.integers(6, 12))) - 0.5)
    return np.clip((ragged - 0.2) * 4.0, 0.0, 1.0)


# ----------------------------------------------------------------------------------------------------------
# objects, one sample
# ----------------------------------------------------------------------------------------------------------


def _object_colour(rng: np.random.Generator, local: np.ndarray) -> np.ndarray:
    """A colour at a random, often low, RGB distance from the local background."""
    direction = rng.normal(0, 1, 3)
    direction /= max(float(np.linalg.norm(direction)), 1e-6)
    distance = float(rng.uniform(*_CONTRAST))
    colour = local + direction * distance
    if np.any((colour < 0) | (colour > 255)):  # out of gamut: go the other way, which usually stays inside
        colour = local - direction * distance
    return np.clip(colour, 0, 255)


def _paint(roi: np.ndarray, alpha: np.ndarray, colour: np.ndarray, rng: np.random.Generator) -> None:
    """Blend a flat, gradient or textured fill of ``colour`` into ``roi`` with coverage ``alpha`` (h x w x 1)."""
    h, w = roi.shape[:2]
    style = rng.random()
    if style < 0.4:
        fill = np.broadcast_to(colour.astype(np.float32), roi.shape)
    elif style < 0.7:  # a shading ramp across the object in a random direction
        a = float(rng.uniform(0, 2 * math.pi))
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        t = (xx - w / 2) * math.cos(a) + (yy - h / 2) * math.sin(a)
        t /= max(float(np.abs(t).max()), 1.0)
        fill = colour.astype(np.float32) * (1.0 + float(rng.uniform(0.1, 0.35)) * t[..., None])
    else:  # its own texture
        fill = colour.astype(np.float32) + _noise(rng, roi.shape, float(rng.uniform(5, 22)))
    opacity = 1.0 if rng.random() < 0.75 else float(rng.uniform(0.6, 0.9))
    a = alpha * np.float32(opacity)
    roi[:] = roi * (1 - a) + np.clip(fill, 0, 255) * a


def _degrade(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Global gamma/contrast, blur, noise and a JPEG round trip at a random quality: uint8 RGB."""
    if rng.random() < 0.5:
        img = 255.0 * np.power(np.clip(img, 0, 255) / 255.0, float(rng.uniform(0.7, 1.4)))
    if rng.random() < 0.4:  # flatter image: contrast pulled towards the mean
        mean = img.mean(axis=(0, 1), keepdims=True)
        img = mean + (img - mean) * float(rng.uniform(0.6, 0.95))
    u = rng.random()
    if u < 0.15:  # motion blur along a random direction
        k = int(rng.integers(3, 8))
        kernel = np.zeros((k, k), np.float32)
        cv2.line(kernel, (0, int(rng.integers(0, k))), (k - 1, int(rng.integers(0, k))), 1.0, 1)
        if rng.random() < 0.5:
            kernel = kernel.T.copy()
        img = cv2.filter2D(img.astype(np.float32), -1, kernel / max(float(kernel.sum()), 1.0))
    elif u < 0.55:
        img = cv2.GaussianBlur(img.astype(np.float32), (0, 0), float(rng.uniform(0.4, 1.5)))
    if rng.random() < 0.7:
        img = img + _noise(rng, img.shape, float(rng.uniform(2, 12)))
    out = np.clip(img, 0, 255).astype(np.uint8)
    ok, buf = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(25, 96))])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)


def render_sample(seed: int, split: str | int, index: int, imgsz: int = 320) -> tuple[np.ndarray, list[Box]]:
    """Render one image. Returns (BGR uint8 image, [(cls, x0, y0, x1, y1), ...]) with pixel boxes, x1/y1 exclusive."""
    split_id = SPLITS[split] if isinstance(split, str) else int(split)
    rng = np.random.default_rng([int(seed), split_id, int(index), _STREAM])
    s = imgsz
    img = _background(rng, s)
    _distractors(img, rng, s)

    n_want = int(rng.integers(1, _MAX_OBJECTS + 1))
    owner = np.full((s, s), -1, np.int16)  # which object owns each visible pixel
    areas: list[int] = []
    visible: list[int] = []
    objects: list[Box] = []
    lo, hi = math.log(_SIZE_RANGE[0]), math.log(_SIZE_RANGE[1])
    tries = 0
    while len(objects) < n_want and tries < n_want * 6:
        tries += 1
        cls = int(rng.integers(0, len(CLASS_NAMES)))
        size = math.exp(float(rng.uniform(lo, hi))) * s
        over = 0.15 * size  # how far a shape may poke out of the image
        cx = float(rng.uniform(size / 2 - over, s - size / 2 + over))
        cy = float(rng.uniform(size / 2 - over, s - size / 2 + over))
        mask = _shape_mask(cls, cx, cy, size, rng, s)
        placed = _placement(mask, objects, owner, visible, areas, iou_max=_IOU_MAX, ioa_max=_IOA_MAX,
                            visible_min=_VISIBLE_MIN)
        if placed is None:
            continue
        (x0, y0, x1, y1), solid, lost = placed
        if max(x1 - x0, y1 - y0) < 8:  # too small to tell the class
            continue
        roi = img[y0:y1, x0:x1]
        outside = ~solid
        local = roi[outside].mean(axis=0) if outside.any() else roi.mean(axis=(0, 1))
        _paint(roi, (mask[y0:y1, x0:x1].astype(np.float32) / 255.0)[..., None], _object_colour(rng, local), rng)
        owner[y0:y1, x0:x1][solid] = len(objects)
        visible = [v - int(n) for v, n in zip(visible, lost)] + [int(solid.sum())]
        areas.append(visible[-1])
        objects.append((cls, x0, y0, x1, y1))

    if objects and rng.random() < 0.45:  # occluders over everything, each keeping every object visible enough
        for _ in range(int(rng.integers(1, 4))):
            occ = _occluder(rng, s)
            hidden = occ >= 0.5
            lost = np.bincount(owner[hidden].astype(np.int64) + 1, minlength=len(objects) + 1)[1:]
            if np.any(np.asarray(visible) - lost < _VISIBLE_MIN * np.asarray(areas)):
                continue
            colour = rng.uniform(0, 255, 3).astype(np.float32)
            img = img * (1 - occ[..., None]) + colour * occ[..., None]
            owner[hidden] = -1
            visible = [v - int(n) for v, n in zip(visible, lost)]

    return _degrade(img, rng)[..., ::-1].copy(), objects  # drawn as RGB, returned as BGR for cv2


def generate(root: Path, *, train: int, val: int, imgsz: int = 320, seed: int = 0) -> Path:
    """Write the set in Ultralytics' layout under ``root``; returns its data.yaml."""
    return generate_dataset(root, train=train, val=val, imgsz=imgsz, seed=seed, render=render_sample,
                            class_names=CLASS_NAMES, title=TITLE)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True, help="dataset root (images/, labels/, data.yaml)")
    ap.add_argument("--train", type=int, default=4000)
    ap.add_argument("--val", type=int, default=500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--imgsz", type=int, default=320)
    args = ap.parse_args(argv)
    print(generate(args.out, train=args.train, val=args.val, imgsz=args.imgsz, seed=args.seed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
