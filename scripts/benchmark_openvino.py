"""Benchmark of the OpenVINO target on the demo detector (figures, not a test).

Prints FP32 and INT8 mAP50-95 with and without the FP32 decode head on >= 300 val images, the export wall
time, and the OpenVINO INT8/FP32 latency ratio on this CPU (median of >= 30 runs after warm-up).

    python scripts/benchmark_openvino.py [--val-images 300] [--calib-images 300] [--latency-runs 50]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--val-images", type=int, default=300)
    parser.add_argument("--calib-images", type=int, default=300)
    parser.add_argument("--latency-runs", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3, help="latency measured this many times (spread shown)")
    parser.add_argument("--out", type=Path, help="keep the export here (default: a temp folder)")
    args = parser.parse_args()

    from edgeq_openvino.runner import OpenVINORunner

    from edgeq.data import preprocess, read_image
    from edgeq.evaluate.evaluator import median_latency_ms
    from edgeq.pipeline import ExportRequest, run_export
    from edgeq.recipe import load_recipe

    out = args.out or Path(tempfile.mkdtemp(prefix="edgeq-bench-")) / "openvino"
    recipe = load_recipe("intel-cpu-openvino", sets=[f"evaluation.images={args.val_images}",
                                                      f"calibration.images={args.calib_images}",
                                                      "evaluation.latency_runs=0", "imgsz=320"])
    from edgeq import demo

    demo.demo_dataset(train=args.calib_images, val=args.val_images)  # generated outside the timed export
    start = time.perf_counter()
    report = run_export(ExportRequest(recipe=recipe, out=out, force=True, progress=False))
    wall = time.perf_counter() - start

    sample = preprocess(read_image(next((Path(report.data["source"]).parent / "images" / "val").iterdir())), 320)[0]
    latency: dict[str, list[float]] = {}
    for name in ("openvino-fp32", "openvino-int8", "openvino-int8-attached-head"):
        with OpenVINORunner(out / name / "model.xml") as runner:
            latency[name] = [median_latency_ms(runner, sample, args.latency_runs, warmup=10)
                             for _ in range(args.repeats)]

    print(f"\nOpenVINO benchmark, demo detector, {report.data['val_images']} val images, "
          f"{report.data['calib_images']} calibration images, input 320\n")
    print("| model | mAP50-95 | mAP50 | drop vs FP32 | latency (median ms, runs) |")
    print("|---|---:|---:|---:|---:|")
    ref = report.reference
    print(f"| pytorch fp32 (reference) | {ref['map50_95']:.2f} | {ref['map50']:.2f} | | |")
    for a in report.artifacts:
        lat = latency.get(a.name)
        lat_text = f"{statistics.median(lat):.2f} ({', '.join(f'{x:.2f}' for x in lat)})" if lat else ""
        print(f"| {a.name} | {a.map50_95:.2f} | {a.map50:.2f} | {a.drop_map50_95:+.2f} | {lat_text} |")
    ratio = statistics.median(latency["openvino-int8"]) / statistics.median(latency["openvino-fp32"])
    print(f"\nexport wall time (ONNX, NNCF x2, evaluation of {len(report.artifacts) + 1} models): {wall:.1f} s; "
          f"stages: {report.timings_s}")
    print(f"OpenVINO INT8 (FP32 head) / FP32 latency ratio: {ratio:.2f} "
          f"(median of {args.latency_runs} runs after 10 warm-up, x{args.repeats})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
