"""Benchmark of the TensorRT family on the demo detector (figures, not a test).

Exports with the jetson-orin-gpu and jetson-agx-orin-dla recipes at 320 px and prints, on >= 300 val images:
emulated mAP50-95 of GPU INT8 (ModelOpt Q/DQ, run as is in ONNX Runtime) and DLA INT8 with and without the last
head convolutions in FP16 (engine numerics rebuilt from the calibration cache), the drop against FP32, the number
of quantizers merged by scale unification, and each export's wall time. All accuracy here is `emulated`: there
is no TensorRT on this machine (where it imports, the GPU engine is built and `measured` too).

    python scripts/benchmark_tensorrt.py [--activation silu|relu6] [--val-images 300] [--calib-images 300]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--activation", choices=["silu", "relu6"], default="silu")
    parser.add_argument("--val-images", type=int, default=300)
    parser.add_argument("--calib-images", type=int, default=300)
    parser.add_argument("--method", choices=["minmax", "entropy", "percentile-99.99", "percentile-99.999", "mse", "auto"], default="entropy", help="calibration.method")
    parser.add_argument("--out", type=Path, help="keep the exports here (default: a temp folder)")
    args = parser.parse_args()
    if args.val_images < 300:
        print("note: the issue asks for >= 300 val images; figures on fewer are indicative only", file=sys.stderr)

    from edgeq import demo
    from edgeq.pipeline import ExportRequest, run_export
    from edgeq.recipe import load_recipe

    root = args.out or Path(tempfile.mkdtemp(prefix="edgeq-bench-trt-"))
    model = demo.demo_model(args.activation)
    demo.demo_dataset(train=args.calib_images, val=args.val_images)  # generated outside the timed exports
    rows, reference = [], None
    for recipe_name in ("jetson-orin-gpu", "jetson-agx-orin-dla"):
        recipe = load_recipe(recipe_name, sets=[f"evaluation.images={args.val_images}",
                                                f"calibration.images={args.calib_images}", "imgsz=320",
                                                f"model={model}", f"calibration.method={args.method}"])
        start = time.perf_counter()
        report = run_export(ExportRequest(recipe=recipe, out=root / recipe.target, force=True, progress=False))
        wall = time.perf_counter() - start
        reference = reference or report.reference
        build = report.timings_s.get("build", float("nan"))
        for entry in report.artifacts:
            if entry.name == "onnx-fp32" and rows:
                continue
            rows.append((recipe.target, entry, wall, build))

    print(f"\nTensorRT family on {model.name} at 320 px, {args.val_images} val / {args.calib_images} calibration "
          f"images, {args.method} calibration; reference {reference['name']} mAP50-95 {reference['map50_95']:.2f}\n")
    print("| target | artifact | precision | mAP50-95 | drop (points) | merged quantizers | quantize + emit "
          "| whole export (incl. evaluation) | status |")
    print("|---|---|---|---:|---:|---:|---:|---:|---|")
    for target, entry, wall, build in rows:
        merged = entry.extra.get("merged_quantizers", "") if entry.extra else ""
        score = "" if entry.map50_95 is None else f"{entry.map50_95:.2f}"
        drop = "" if entry.drop_map50_95 is None else f"{entry.drop_map50_95:.2f}"
        print(f"| {target} | {entry.name} | {entry.precision} | {score} | {drop} | {merged} | {build:.0f} s | "
              f"{wall:.0f} s | {entry.status} |")
    print(f"\nexports kept in {root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
