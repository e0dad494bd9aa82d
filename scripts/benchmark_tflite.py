#!/usr/bin/env python3
"""Benchmark of the TFLite family on the demo detector (figures, not a test).

For the demo model on >= 300 val images: mAP50-95 of FP32 and of every head treatment (detached, normalized,
pixel) x weight granularity (per-channel, per-tensor), the export wall time of each variant (onnx2tf and the calibration
pass run once per head and are shared by its granularities; plus the quantization of that file), and latency on this CPU.

    python scripts/benchmark_tflite.py [--model silu|relu6|PATH] [--target tflite|edgetpu|nxp]
                                       [--val-images 300] [--calib-images 300] [--latency-runs 30]

`tflite` figures are measured with LiteRT's optimized INT8 kernels; `edgetpu`/`nxp` use the INT8 reference
kernels (emulated) and take longer to evaluate.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="silu", help="silu | relu6 (the embedded demo weights) or a .pt path")
    parser.add_argument("--target", default="tflite", choices=["tflite", "edgetpu", "nxp"])
    parser.add_argument("--val-images", type=int, default=300)
    parser.add_argument("--calib-images", type=int, default=300)
    parser.add_argument("--latency-runs", type=int, default=30)
    parser.add_argument("--imgsz", type=int, default=320, help="input size (the demo weights are trained at 320)")
    parser.add_argument("--out", type=Path, help="keep the export here (default: a temp folder)")
    args = parser.parse_args()

    from edgeq import demo
    from edgeq.pipeline import ExportRequest, run_export
    from edgeq.recipe import load_recipe

    model = demo.demo_model(args.model) if args.model in ("silu", "relu6") else Path(args.model)
    recipe_name = {"tflite": "tflite-int8-cpu", "edgetpu": "coral-usb-edgetpu", "nxp": "nxp-imx8mp"}[args.target]
    out = args.out or Path(tempfile.mkdtemp(prefix="edgeq-bench-")) / args.target
    recipe = load_recipe(recipe_name, sets=[
        f"model={model}", f"imgsz={args.imgsz}", f"evaluation.images={args.val_images}", f"calibration.images={args.calib_images}",
        f"evaluation.latency_runs={args.latency_runs if args.target == 'tflite' else 0}",
        "options.heads=[detached, normalized, pixel]", "options.granularity=[per-channel, per-tensor]",
        "max_drop=null"])
    demo.demo_dataset(train=args.calib_images, val=args.val_images)  # generated outside the timed export
    start = time.perf_counter()
    report = run_export(ExportRequest(recipe=recipe, out=out, force=True, progress=False,
                                      allow_fallback=True))
    wall = time.perf_counter() - start

    arts = {a.name: a for a in report.artifacts}
    fp32 = arts["onnx-fp32"]
    print(f"\nTFLite family benchmark ({args.target}), demo {model.name}, {report.data['val_images']} val images, "
          f"{report.data['calib_images']} calibration images, input {report.model['imgsz']}\n")
    print("| head | granularity | mAP50-95 | mAP50 | drop vs FP32 | export s (onnx2tf + calibrate + quantize) | "
          "latency ms | status |")
    print("|---|---|---:|---:|---:|---:|---:|---|")
    ref = report.reference
    print(f"| pytorch fp32 (reference) | | {ref['map50_95']:.2f} | {ref['map50']:.2f} | | | | measured |")
    print(f"| onnx fp32 | | {fp32.map50_95:.2f} | {fp32.map50:.2f} | {fp32.drop_map50_95:+.2f} | | | measured |")
    for head in ("detached", "normalized", "pixel"):
        for granularity in ("per-channel", "per-tensor"):
            a = arts.get(f"{args.target}-int8-{head}-{granularity}")
            if a is None:
                continue
            t = a.extra.get("export_s", {})
            parts = [t.get(k) or 0.0 for k in ("onnx2tf", "calibrate", "quantize")]
            export = f"{sum(parts):.1f} ({' + '.join(f'{p:.1f}' for p in parts)})"
            latency = f"{a.latency_ms:.2f}" if a.latency_ms else ""
            print(f"| {head} | {granularity} | {a.map50_95:.2f} | {a.map50:.2f} | {a.drop_map50_95:+.2f} | "
                  f"{export} | {latency} | {a.status} |")
    print(f"\nwhole export (ONNX, 3 conversions, 6 quantized files, evaluation of {len(report.artifacts)} models): "
          f"{wall:.1f} s; stages: {report.timings_s}")
    print(f"report: {out / 'report.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
