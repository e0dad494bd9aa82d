"""The host side of every artifact: the letterbox that makes its input and the decoder that turns its outputs
into detections, in numpy (and OpenCV for resizing) with no other import.

edgeq's evaluator uses exactly this module, and every deploy kit ships it verbatim beside its inference script,
so what runs on the device after the model is what edgeq measured. Keep it free of edgeq imports: it must run
on a Jetson, a Coral board or an i.MX8M Plus where only numpy, OpenCV and the target's runtime are installed.

`head` is anything with the head description's fields (edgeq's HeadSpec, or the kit's `head.json` read by
`load_head`): nc, reg_max, strides, imgsz, names, end2end, max_det. `layout` is the artifact's output layout
as text (edgeq's HeadLayout is a str enum with the same values):
- pixel: `output0` (1, 4 + nc, A), xywh in input pixels and sigmoid scores;
- normalized: the same with xywh in 0..1 of the input size;
- detached: the per-scale head convolutions `box_i` (1, 4 * reg_max, H, W) and `cls_i` (1, nc, H, W), decoded
  here in FP32 (DFL expectation, anchor arithmetic, sigmoid);
- selected: detections already chosen inside the model, (1, max_det, 6) x1 y1 x2 y2 score class.

The same holds for the score: `infer.py --validate data.yaml` runs the evaluator's protocol on the device (the val
split's images and labels read as edgeq reads them, this letterbox and decoder, COCO mAP50-95 through the
accumulator below, which edgeq's evaluator is built on) and writes `device-validation.json` with the artifact's and
the evaluation set's hashes, so `edgeq compare` can set the device's figure against edgeq's for the same file on
the same images. The metric package is faster-coco-eval, else pycocotools (the same algorithm).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import numpy as np

PAD_VALUE = 114  # Ultralytics' letterbox grey
OUTPUT_NAME = "output0"


# --- input ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Letterbox:
    """How an image was fitted into the square input: scale, then padding (left, top)."""

    ratio: float
    pad: tuple[float, float]
    shape: tuple[int, int]  # original (h, w)

    def to_original(self, xyxy: np.ndarray) -> np.ndarray:
        out = xyxy.copy()
        out[:, [0, 2]] = (out[:, [0, 2]] - self.pad[0]) / self.ratio
        out[:, [1, 3]] = (out[:, [1, 3]] - self.pad[1]) / self.ratio
        out[:, [0, 2]] = out[:, [0, 2]].clip(0, self.shape[1])
        out[:, [1, 3]] = out[:, [1, 3]].clip(0, self.shape[0])
        return out


def letterbox(image_bgr: np.ndarray, size: int) -> tuple[np.ndarray, Letterbox]:
    """BGR uint8 HWC (as cv2.imread gives) -> float32 (1, 3, size, size) RGB in [0, 1], letterboxed as
    Ultralytics does (scale to fit, pad centred with grey 114)."""
    import cv2

    h, w = image_bgr.shape[:2]
    ratio = min(size / h, size / w)
    new_w, new_h = round(w * ratio), round(h * ratio)
    if (new_w, new_h) != (w, h):
        image_bgr = cv2.resize(image_bgr, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    pad_w, pad_h = (size - new_w) / 2, (size - new_h) / 2
    top, bottom = round(pad_h - 0.1), round(pad_h + 0.1)
    left, right = round(pad_w - 0.1), round(pad_w + 0.1)
    image_bgr = cv2.copyMakeBorder(image_bgr, top, bottom, left, right, cv2.BORDER_CONSTANT,
                                   value=(PAD_VALUE,) * 3)
    chw = image_bgr[:, :, ::-1].transpose(2, 0, 1)
    batch = np.ascontiguousarray(chw, dtype=np.float32)[None] / 255.0
    return batch, Letterbox(ratio=ratio, pad=(left, top), shape=(h, w))


# --- the head description ------------------------------------------------------------------------------------


def load_head(path: Path) -> SimpleNamespace:
    """The kit's head.json as an object with the fields the decoder reads."""
    data = json.loads(Path(path).read_text())
    return SimpleNamespace(nc=data["nc"], reg_max=data["reg_max"], strides=tuple(data["strides"]),
                           imgsz=data["imgsz"], names=tuple(data["names"]), end2end=data.get("end2end", False),
                           max_det=data.get("max_det", 300))


def box_outputs(head) -> list[str]:
    return [f"box_{i}" for i in range(len(head.strides))]


def cls_outputs(head) -> list[str]:
    return [f"cls_{i}" for i in range(len(head.strides))]


def anchors(strides, imgsz: int) -> tuple[np.ndarray, np.ndarray]:
    """Anchor centres in grid units (A, 2) and the stride of each anchor (A,), as Ultralytics makes them."""
    points, per_anchor = [], []
    for s in strides:
        h = w = imgsz // s
        sy, sx = np.meshgrid(np.arange(h, dtype=np.float32) + 0.5, np.arange(w, dtype=np.float32) + 0.5,
                             indexing="ij")
        points.append(np.stack([sx, sy], -1).reshape(-1, 2))
        per_anchor.append(np.full(h * w, s, dtype=np.float32))
    return np.concatenate(points), np.concatenate(per_anchor)


# --- outputs -> predictions -> detections ----------------------------------------------------------------------


def sigmoid(x: np.ndarray) -> np.ndarray:
    """The logistic function without overflow for large negative logits (INT8 outputs reach -128 * scale)."""
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def decode_detached(outputs: Mapping[str, np.ndarray], head) -> np.ndarray:
    """Per-scale logits -> (4 + nc, A) with xywh in input pixels and sigmoid scores (edgeq's ONNX decode head,
    operation for operation)."""
    r = head.reg_max
    box = np.concatenate([outputs[n].reshape(4 * r, -1) for n in box_outputs(head)], axis=1).astype(np.float32)
    cls = np.concatenate([outputs[n].reshape(head.nc, -1) for n in cls_outputs(head)], axis=1).astype(np.float32)
    if r > 1:
        logits = box.reshape(4, r, -1)
        logits = np.exp(logits - logits.max(axis=1, keepdims=True))
        dist = (logits / logits.sum(axis=1, keepdims=True) * np.arange(r, dtype=np.float32)[None, :, None]).sum(1)
    else:
        dist = box
    points, strides = anchors(head.strides, head.imgsz)
    lt, rb = dist[:2], dist[2:]
    centre = points.T + (rb - lt) * 0.5
    xywh = np.concatenate([centre, lt + rb], axis=0) * strides[None]
    return np.concatenate([xywh, sigmoid(cls)], axis=0)


def to_pixel_predictions(outputs: Mapping[str, np.ndarray], layout: str, head) -> np.ndarray:
    """Any artifact's outputs -> (4 + nc, A) predictions, xywh in input pixels."""
    if layout == "detached":
        return decode_detached(outputs, head)
    pred = np.asarray(outputs[OUTPUT_NAME], dtype=np.float32).reshape(4 + head.nc, -1)
    if layout == "normalized":
        pred = pred.copy()
        pred[:4] *= head.imgsz
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


def topk_select(pred: np.ndarray, conf: float = 0.001, max_det: int = 300) -> np.ndarray:
    """Ultralytics' end-to-end selection (Detect.get_topk_index), no NMS: the max_det anchors with the best
    class score, then the best max_det (anchor, class) pairs among them; then the confidence threshold."""
    scores = pred[4:]  # (nc, A)
    nc, n_anchors = scores.shape
    k = min(max_det, n_anchors)
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


def select_detections(outputs: Mapping[str, np.ndarray], layout: str, head, conf: float = 0.001,
                      iou: float = 0.7, max_det: int = 300) -> np.ndarray:
    """Any artifact's outputs -> (N, 6) detections [x1, y1, x2, y2, score, class] in input pixels, chosen the
    way the head is meant to be deployed (class-aware NMS, or top-k for an NMS-free head)."""
    if layout == "selected":
        dets = np.asarray(next(iter(outputs.values())), np.float32).reshape(-1, 6)
        return dets[dets[:, 4] > conf]
    pred = to_pixel_predictions(outputs, layout, head)
    if head.end2end:
        return topk_select(pred, conf, min(max_det, head.max_det))
    return postprocess(pred, conf, iou, max_det)


def detect(outputs: Mapping[str, np.ndarray], layout: str, head, box: Letterbox, conf: float = 0.25,
           iou: float = 0.7) -> np.ndarray:
    """One image's outputs -> (N, 6) detections in the original image's pixels."""
    dets = select_detections(outputs, layout, head, conf, iou)
    dets[:, :4] = box.to_original(dets[:, :4])
    return dets


def format_detections(dets: np.ndarray, names) -> list[str]:
    """One line per detection: class name, score, box x1 y1 x2 y2 in image pixels."""
    return [f"{names[int(c)] if int(c) < len(names) else int(c)} {s:.3f} {x1:.1f} {y1:.1f} {x2:.1f} {y2:.1f}"
            for x1, y1, x2, y2, s, c in dets.tolist()]


# --- scoring: the COCO protocol of edgeq's evaluator ----------------------------------------------------------


@dataclass
class CocoAccumulator:
    """Collects ground truth and detections per image, then scores them in one pass: edgeq's evaluator
    (`edgeq.evaluation.metrics`, which adds the per-image matches) and `infer.py --validate` on the device."""

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
        if not self.detections or not self.annotations:
            return 0.0, 0.0
        stats = coco_stats({"images": self.images, "annotations": self.annotations,
                            "categories": [{"id": i, "name": str(i)} for i in range(self.nc)]}, self.detections)
        self.size_ap = {size: None if stats[i] < 0 else round(stats[i] * 100.0, 2)
                        for i, size in ((3, "small"), (4, "medium"), (5, "large"))}
        return stats[0] * 100.0, stats[1] * 100.0


def loaded_versions(before: set[str]) -> dict[str, str]:
    """The versions of the top-level modules imported since `before` (a snapshot of sys.modules' top-level names):
    the runtime a kit's `open_model` loaded, named by its distribution where Python's metadata says which."""
    import sys
    from importlib import metadata

    owners = metadata.packages_distributions() if hasattr(metadata, "packages_distributions") else {}
    found = {}
    for name in sorted({m.split(".")[0] for m in list(sys.modules)} - before):
        if name.startswith("_") or name in getattr(sys, "stdlib_module_names", sys.builtin_module_names):
            continue
        for dist in owners.get(name, ()):
            with contextlib.suppress(metadata.PackageNotFoundError):
                found[dist] = metadata.version(dist)
        if not owners.get(name) and isinstance(getattr(sys.modules.get(name), "__version__", None), str):
            found[name] = sys.modules[name].__version__
    return found


def metric_package() -> str:
    """The COCO implementation this machine scores with, and its version."""
    from importlib.metadata import version

    for name, module in (("faster-coco-eval", "faster_coco_eval"), ("pycocotools", "pycocotools")):
        with contextlib.suppress(ImportError):
            __import__(module)
            return f"{name} {version(name)}"
    raise ImportError("no COCO metric package: pip install faster-coco-eval (or pycocotools)")


def coco_stats(ground_truth: dict, detections: list[list[float]]) -> list[float]:
    """COCO's twelve bbox summary figures (fractions; -1 where a size has no object): faster-coco-eval, the
    pycocotools algorithm with a C++ core, where installed, else pycocotools itself."""
    rows = np.asarray(detections, dtype=np.float64)
    with contextlib.redirect_stdout(io.StringIO()):
        try:
            from faster_coco_eval import COCO, COCOeval_faster
        except ImportError:
            from pycocotools.coco import COCO
            from pycocotools.cocoeval import COCOeval

            def COCOeval_faster(gt, dt, kind, **_):  # noqa: N802  (the same call as faster-coco-eval's)
                return COCOeval(gt, dt, kind)
        gt = COCO()
        gt.dataset = ground_truth
        gt.createIndex()
        ev = COCOeval_faster(gt, gt.loadRes(rows), "bbox", print_function=lambda *a, **k: None)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return [float(v) for v in ev.stats]


# --- the evaluation set on the device, read as edgeq reads it --------------------------------------------------

IMAGE_SUFFIXES = frozenset({"bmp", "dng", "jpeg", "jpg", "mpo", "png", "tif", "tiff", "webp", "pfm", "heic"})
RAW_OUTPUT_IMAGES = 4  # images whose input and raw outputs `--validate` keeps, for per-output agreement


class ValidationError(Exception):
    """What `--validate` cannot work with; infer.py prints it as one line and exits 2."""


def file_sha256(path: Path) -> str:
    """SHA-256 of the file's bytes, hex; the empty string for a file that does not exist (an unlabelled image)."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    except FileNotFoundError:
        return ""
    return digest.hexdigest()


def artifact_sha256(files: Sequence[Path]) -> str:
    """An artifact's identity: one file's SHA-256 (what `sha256sum` prints), or for a model of several files (an
    OpenVINO .xml and .bin) the SHA-256 of their names and hashes, one per line in name order."""
    if len(files) == 1:
        return file_sha256(files[0])
    lines = sorted(f"{Path(f).name} {file_sha256(f)}" for f in files)
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def evaluation_set_hash(image_hashes: Sequence[str], label_hashes: Sequence[str]) -> str:
    """One SHA-256 over the evaluation images and their label files by content, independent of their order and
    names (edgeq's report.json records it as data.evaluation_set.sha256)."""
    lines = sorted(f"{i} {t}" for i, t in zip(image_hashes, label_hashes))
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def label_file(image: Path) -> Path:
    """Ultralytics' img2label_paths: the last `images` folder of the path becomes `labels`, the suffix `.txt`."""
    sa, sb = f"{os.sep}images{os.sep}", f"{os.sep}labels{os.sep}"
    return Path(sb.join(os.fspath(image).rsplit(sa, 1)).rsplit(".", 1)[0] + ".txt")


def read_label_file(image: Path) -> np.ndarray:
    """(n, 5) class cx cy w h normalised, as edgeq reads a label file it accepted: a polygon line becomes its
    bounding box (Ultralytics' segments2boxes, in float32), duplicate rows are dropped, no file is a background
    image. edgeq refused anything else at export, and the evaluation set's hash holds the files to the same bytes."""
    path = label_file(image)
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines() if path.is_file() else [], 1):
        try:
            values = [float(v) for v in line.split()]
        except ValueError:
            raise ValidationError(f"bad label {path}:{number}: '{line.strip()[:60]}' (edgeq reads 'class cx cy w h' "
                                  "or polygon lines); the export's labels were not these") from None
        if len(values) == 5:
            rows.append(values)
        elif values:
            xy = np.asarray(values[1:], np.float32).reshape(-1, 2)
            (x1, y1), (x2, y2) = xy.min(0), xy.max(0)
            rows.append([values[0], *(float(v) for v in ((x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1))])
    if not rows:
        return np.zeros((0, 5), np.float32)
    labels = np.asarray(rows, np.float32)
    _, first = np.unique(labels, axis=0, return_index=True)
    return labels[np.sort(first)]


def split_images(data_yaml: Path, split: str = "val") -> list[Path]:
    """A data.yaml split's images as Ultralytics lists them, sorted: `path` absent (the yaml's folder), absolute or
    relative (to the working directory where that exists, else to the yaml's folder: a device has no Ultralytics
    datasets folder); the split a folder (recursively), a `.txt` list (`./` is the list's folder) or a list of them;
    Roboflow's `../train/images` also tried without its `../`."""
    data_yaml = Path(data_yaml)
    if not data_yaml.is_file():
        raise ValidationError(f"'{data_yaml}' is not a file; pass the data.yaml of the dataset the export used")
    keys = _yaml_keys(data_yaml.read_text(encoding="utf-8"))
    root = Path(keys["path"]) if keys.get("path") else data_yaml.parent
    if not root.is_absolute() and not root.exists():
        root = data_yaml.parent / root
    entries = keys.get(split)
    if not entries:
        raise ValidationError(f"'{data_yaml}' has no '{split}:' split")
    images = []
    for entry in entries if isinstance(entries, list) else [entries]:
        location = (root / entry).resolve()
        if not location.exists() and entry.startswith("../"):
            location = (root / entry[3:]).resolve()
        if location.is_dir():
            candidates = [p for p in location.rglob("*.*") if p.is_file()]
        elif location.is_file():
            lines = location.read_text(encoding="utf-8").strip().splitlines()
            candidates = [location.parent / line[2:] if line.startswith("./") else Path(line)
                          for line in lines if line.strip()]
        else:
            raise ValidationError(f"split '{split}' of '{data_yaml}' points at '{location}', which does not exist")
        images += [p.resolve() for p in candidates if p.suffix[1:].lower() in IMAGE_SUFFIXES]
    return sorted(set(images))


def _yaml_keys(text: str) -> dict:
    """The top-level keys of a data.yaml as strings or lists of strings (scalars, [flow] and block lists): all that
    `split_images` reads (`path`, the splits), without PyYAML, which a device may not have."""
    keys: dict = {}
    current = None
    for raw in text.splitlines():
        line = raw if not raw.lstrip().startswith("#") else ""
        line = line.split(" #", 1)[0].rstrip()
        if not line.strip():
            continue
        if not line[0].isspace() and ":" in line:
            current, _, value = (part.strip() for part in line.partition(":"))
            if value.startswith("[") and value.endswith("]"):
                keys[current] = [_unquote(v) for v in value[1:-1].split(",") if v.strip()]
            else:
                keys[current] = _unquote(value) if value else []
        elif current is not None and line.strip().startswith("- ") and isinstance(keys[current], list):
            keys[current].append(_unquote(line.strip()[2:]))
    return keys


def _unquote(value: str) -> str:
    value = value.strip()
    return value[1:-1] if len(value) > 1 and value[0] == value[-1] and value[0] in "'\"" else value


def decode_image(path: Path) -> np.ndarray | None:
    """BGR uint8 as edgeq decodes it (the file's bytes through cv2.imdecode); None when OpenCV cannot."""
    import cv2

    data = np.frombuffer(Path(path).read_bytes(), np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    return None if image is None or image.size == 0 else image


# --- validation on the device ----------------------------------------------------------------------------------


def validate(infer, kit: Path, entry: dict, model: Path, data_yaml: Path, out: Path,
             runtime: dict[str, str]) -> dict:
    """Score the artifact on the device over the evaluation set with edgeq's protocol; write `out`
    (device-validation.json) and, beside it, the first images' inputs and raw outputs (.npz). Returns the record;
    `runtime` (distribution -> version) names what ran the model.

    The images are the kit's evaluation set (deploy.json lists each by content hash in edgeq's order), found by
    content among the data.yaml split's images; a kit without the list scores the whole split in path order."""
    import time

    metric = metric_package()  # before any image: a device without one learns it at once
    deploy = json.loads((kit / "deploy.json").read_text())
    head = load_head(kit / "head.json")
    settings = deploy.get("evaluation", {})
    conf, iou, max_det = settings.get("conf", 0.001), settings.get("iou", 0.7), settings.get("max_det", 300)
    split = settings.get("split", "val")
    found = split_images(data_yaml, split)
    hashes = {path: file_sha256(path) for path in found}
    listed = settings.get("images")
    if listed:
        by_hash: dict[str, Path] = {}
        for path in found:
            by_hash.setdefault(hashes[path], path)
        images = [by_hash[h] for h in listed if h in by_hash]
        if not images:
            raise ValidationError(f"none of the {len(listed)} evaluation images the export scored is in split "
                                  f"'{split}' of '{data_yaml}' ({len(found)} images); pass the data.yaml the export "
                                  "used, with its images copied to the device")
    else:
        images = found
    subset = entry.get("evaluation_images")  # edgeq scored this artifact on the first N (--fast)
    coco, first = CocoAccumulator(nc=head.nc), CocoAccumulator(nc=head.nc)
    raw: dict[str, np.ndarray] = {}
    scored, skipped, started = [], 0, time.perf_counter()
    for path in images:
        image = decode_image(path)
        if image is None:
            skipped += 1
            continue
        batch, box = letterbox(image, head.imgsz)
        outputs = infer(batch)
        dets = select_detections(outputs, entry["layout"], head, conf, iou, max_det)
        dets[:, :4] = box.to_original(dets[:, :4])
        labels = read_label_file(path)
        coco.add(box.shape, labels, dets)
        if subset and len(scored) < subset:
            first.add(box.shape, labels, dets)
        if len(scored) < RAW_OUTPUT_IMAGES:
            i = len(scored)
            raw[f"input/{i}"] = np.round(batch * 255.0).astype(np.uint8)
            raw.update({f"output/{i}/{name}": np.asarray(value, np.float32) for name, value in outputs.items()})
        scored.append(path)
    map50_95, map50 = coco.score()
    files = [kit / f for f in entry.get("files", [entry["file"]])]
    record = {
        "edgeq_device_validation": 1,
        "target": deploy.get("target"),
        "artifact": {"name": entry["name"], "file": entry["file"], "layout": entry["layout"],
                     "precision": entry.get("precision"),
                     "sha256": artifact_sha256(files) if all(f.is_file() for f in files) else None,
                     "ran": os.fspath(model), "ran_sha256": file_sha256(model)},
        "dataset": {"data": os.fspath(data_yaml), "split": split, "images": len(scored),
                    "sha256": evaluation_set_hash([hashes[p] for p in scored],
                                                  [file_sha256(label_file(p)) for p in scored]),
                    "listed": len(listed) if listed else None,
                    "missing": len(listed) - len(images) if listed else None, "undecodable": skipped},
        "protocol": {"conf": conf, "iou": iou, "max_det": max_det, "imgsz": head.imgsz,
                     "metric": metric},
        "runtime": runtime,
        "map50_95": round(map50_95, 4), "map50": round(map50, 4), "size_ap": coco.size_ap,
        "first_images": None,
        "raw_outputs": None,
        "seconds": round(time.perf_counter() - started, 1),
    }
    if subset and subset < len(scored):
        sub_map, sub_map50 = first.score()
        record["first_images"] = {"images": subset, "map50_95": round(sub_map, 4), "map50": round(sub_map50, 4)}
    out.parent.mkdir(parents=True, exist_ok=True)
    if raw:
        npz = out.with_suffix(".npz")
        np.savez_compressed(npz, **raw)
        record["raw_outputs"] = {"file": npz.name, "images": [p.name for p in scored[:RAW_OUTPUT_IMAGES]]}
    out.write_text(json.dumps(record, indent=2) + "\n")
    return record


# --- the deploy kit's command line ------------------------------------------------------------------------------


def run_on_image(open_model, description: str, add_arguments=None, argv=None) -> int:
    """`python3 infer.py IMAGE [--model FILE]` in a deploy kit: letterbox the image, run the artifact with
    `open_model(path, args, head)` (the family's runtime; returns images -> {output name: array}), decode as edgeq's
    evaluator does, print one line per detection. `--validate data.yaml` scores the artifact over the evaluation
    set instead (`validate`). Bad input is one line on stderr and exit code 2."""
    import argparse
    import sys

    kit = Path(__file__).resolve().parent
    parser = argparse.ArgumentParser(description=description.strip().splitlines()[0])
    parser.add_argument("image", type=Path, nargs="?", help="an image file (any format OpenCV reads)")
    parser.add_argument("--model", type=Path, help="an artifact listed in deploy.json (default: the deployable INT8)")
    parser.add_argument("--conf", type=float, default=0.25, help="score threshold (default 0.25)")
    parser.add_argument("--iou", type=float, default=0.7, help="NMS IoU threshold (default 0.7)")
    parser.add_argument("--validate", type=Path, metavar="DATA_YAML",
                        help="instead of one image: score the model on the dataset's val split with edgeq's protocol "
                             "(the images the export scored, found by content) and write device-validation.json "
                             "for `edgeq compare`")
    parser.add_argument("--out", type=Path, default=Path("device-validation.json"),
                        help="with --validate: where to write the record (default ./device-validation.json; the "
                             "first images' raw outputs go beside it as .npz)")
    if add_arguments:
        add_arguments(parser)
    args = parser.parse_args(argv)
    import cv2

    def refuse(problem: str) -> int:
        print(f"infer.py: error: {problem}", file=sys.stderr)
        return 2

    deploy = json.loads((kit / "deploy.json").read_text())
    head = load_head(kit / "head.json")
    model = args.model if args.model is not None else Path(deploy["default"])
    model = model if model.is_absolute() or model.exists() else kit / model
    files = {f: a for a in deploy["artifacts"] for f in (a["file"], *a.get("device_files", []))}
    entry = next((a for f, a in files.items() if (kit / f).resolve() == model.resolve()), None)
    if entry is None:
        return refuse(f"'{model}' is not an artifact of this kit; choose one of: {', '.join(files)}")
    if not model.exists():
        return refuse(f"'{model}' does not exist; build it first (DEPLOY.md says how)")
    if args.validate is not None:
        before = {m.split(".")[0] for m in list(sys.modules)}
        infer = open_model(model, args, head)
        try:
            record = validate(infer, kit, entry, model, args.validate, args.out, loaded_versions(before))
        except (ValidationError, ImportError) as exc:
            return refuse(str(exc))
        print(f"{entry['name']}: mAP50-95 {record['map50_95']:.2f}, mAP50 {record['map50']:.2f} on "
              f"{record['dataset']['images']} images ({record['protocol']['metric']}); wrote {args.out}")
        return 0
    if args.image is None:
        return refuse("give an image, or --validate data.yaml to score the model on the dataset")
    if not args.image.is_file():
        return refuse(f"image '{args.image}' does not exist")
    image = cv2.imread(str(args.image), cv2.IMREAD_COLOR)
    if image is None:
        return refuse(f"cannot read image '{args.image}'")
    batch, box = letterbox(image, head.imgsz)
    infer = open_model(model, args, head)
    dets = detect(infer(batch), entry["layout"], head, box, args.conf, args.iou)
    for line in format_detections(dets, head.names):
        print(line)
    return 0
