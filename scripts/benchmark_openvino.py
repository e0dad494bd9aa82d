"""Benchmark of the OpenVINO target on the demo detector (figures, not a test).

Prints FP32 and INT8 mAP50-95 with and without the FP32 decode head on >= 300 val images, the export wall
time, and the OpenVINO INT8/FP32 latency ratio on this CPU: the report's own batch-1 figures, every IR timed
interleaved with the others (edgeq.evaluation.timing), so the ratio holds on a busy machine.

    python scripts/benchmark_openvino.py [--val-images 300] [--calib-images 300] [--latency-runs 50]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--val-images", type=int, default=300)
    parser.add_argument("--calib-images", type=int, default=300)
    parser.add_argument("--latency-runs", type=int, default=50, help="timed rounds at batch 1")
    parser.add_argument("--out", type=Path, help="keep the export here (default: a temp folder)")
    args = parser.parse_args()

    from edgeq.pipeline import ExportRequest, run_export
    from edgeq.recipe import load_recipe

    out = args.out or Path(tempfile.mkdtemp(prefix="edgeq-bench-")) / "openvino"
    recipe = load_recipe("intel-cpu-openvino", sets=[f"evaluation.images={args.val_images}",
                                                      f"calibration.images={args.calib_images}",
                                                      f"evaluation.latency_runs={args.latency_runs}",
                                                      "evaluation.batches=[1]", "imgsz=320"])
    from edgeq import demo

    demo.demo_dataset(train=args.calib_images, val=args.val_images)  # generated outside the timed export
    start = time.perf_counter()
    report = run_export(ExportRequest(recipe=recipe, out=out, force=True, progress=False))
    wall = time.perf_counter() - start

    spread = {t["artifact"]: t for t in report.throughput if t["batch"] == 1}

    print(f"\nOpenVINO benchmark, demo detector, {report.data['val_images']} val images, "
          f"{report.data['calib_images']} calibration images, input 320\n")
    print("| model | mAP50-95 | mAP50 | drop vs FP32 | latency (median ms, IQR) |")
    print("|---|---:|---:|---:|---:|")
    ref = report.reference
    print(f"| pytorch fp32 (reference) | {ref['map50_95']:.2f} | {ref['map50']:.2f} | | |")
    for a in report.artifacts:
        t = spread.get(a.name)
        lat_text = f"{t['median_ms']:.2f} ({t['q1_ms']:.2f}-{t['q3_ms']:.2f})" if t and t["median_ms"] else ""
        print(f"| {a.name} | {a.map50_95:.2f} | {a.map50:.2f} | {a.drop_map50_95:+.2f} | {lat_text} |")
    ratio = spread["openvino-int8"]["median_ms"] / spread["openvino-fp32"]["median_ms"]
    print(f"\nexport wall time (ONNX, NNCF x2, evaluation of {len(report.artifacts) + 1} models): {wall:.1f} s; "
          f"stages: {report.timings_s}")
    print(f"OpenVINO INT8 (FP32 head) / FP32 latency ratio: {ratio:.2f} "
          f"(medians of {args.latency_runs} interleaved rounds at batch 1)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
