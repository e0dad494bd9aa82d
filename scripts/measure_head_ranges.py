"""The value ranges a normalized head must hold, per model (figures, not a test).

For each model, over training-split images: the box distances in grid units (after DFL where the head has it)
and the normalized boxes xywh / imgsz, which share one per-tensor INT8 scale with the 0..1 scores in the
normalized head's output. A DFL head's distances are an expectation over reg_max bins, so they lie in
0..reg_max-1; a DFL-free head (YOLO26, reg_max 1) takes them straight from a convolution, with no bound.

    python scripts/measure_head_ranges.py benchmarks/models/demo-yolo26n-320.pt demo [--images 100]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="+", help="checkpoints, or demo / demo:relu6")
    ap.add_argument("--data", help="data.yaml (default: the demo shapes)")
    ap.add_argument("--images", type=int, default=100, help="train-split images")
    args = ap.parse_args()

    import numpy as np

    from edgeq import demo
    from edgeq.data import load_dataset, preprocess, read_image, subsample
    from edgeq.evaluation.decode import decode_detached
    from edgeq.model import export_onnx, load_detector
    from edgeq.runners.onnxruntime import OnnxRuntimeRunner

    data = Path(args.data) if args.data else demo.demo_dataset(train=args.images, val=1, progress=False)
    images = subsample(load_dataset(data).images("train"), args.images, 0)
    print("| model | reg_max | distance min | p0.1 | p99.9 | max (grid units) | normalized xywh min | p99.9 | max |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name in args.models:
        source = demo.demo_model(name.partition(":")[2] or "silu") if name.startswith("demo") else name
        detector = load_detector(source)
        spec = detector.head
        body = export_onnx(detector, Path(tempfile.mkdtemp(prefix="edgeq-ranges-"))).body
        dist, norm = [], []
        points, strides = spec.anchors()
        with OnnxRuntimeRunner(body) as runner:
            for path in images:
                pred = decode_detached(runner.infer(preprocess(read_image(path), spec.imgsz)[0]), spec)
                xywh = pred[:4] / spec.imgsz  # what the normalized head outputs
                half = xywh[2:] * spec.imgsz / strides[None] / 2  # (lt + rb) / 2 in grid units
                offset = (xywh[:2] * spec.imgsz / strides[None]) - points.T  # (rb - lt) / 2
                dist.append(np.concatenate([half - offset, half + offset]).ravel())  # lt and rb
                norm.append(xywh.ravel())
        d, n = np.concatenate(dist), np.concatenate(norm)
        lo, hi = np.percentile(d, [0.1, 99.9])
        print(f"| {Path(str(source)).stem} | {spec.reg_max} | {d.min():.2f} | {lo:.2f} | {hi:.2f} | {d.max():.2f} | "
              f"{n.min():.3f} | {np.percentile(n, 99.9):.3f} | {n.max():.3f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
