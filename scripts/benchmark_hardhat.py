"""Real-photo benchmark: every target on YOLOv8n detectors trained on the hard-hat photographs (figures, not a test).

The demo's synthetic shapes saturate near 98 mAP50-95, where quantization damage hides; these models sit near
the accuracy of real deployments, so a lost point shows. Each target gets one `edgeq export` (calibration on
the train split, evaluation on the val split, Roboflow labels as exported: polygons and all), and the script
prints one table: FP32 and every INT8 artifact's mAP50-95, drop, status and the export's wall time.

The detectors are trained by `scripts/train_models.py` (jobs hardhat-yolov8n-silu / -relu6, GPU machine) and
kept in benchmarks/models/, outside the wheel. Targets run one after another; the Edge TPU and NXP figures
come from LiteRT's reference INT8 kernels (bit-exact, slow: about 4 s per 640 px image on 2 cores).

    python scripts/benchmark_hardhat.py --data ../shared/datasets/hardhat/data.yaml \\
        [--models silu relu6] [--targets openvino tflite ...] [--val-images N] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MODELS = REPO / "benchmarks" / "models"
TARGETS = ("openvino", "tflite", "edgetpu", "nxp", "tensorrt", "dla")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "datasets" / "hardhat" / "data.yaml")
    parser.add_argument("--models", nargs="+", default=["silu", "relu6"], help="hardhat-yolov8n-<name>-640.pt")
    parser.add_argument("--targets", nargs="+", default=list(TARGETS), choices=TARGETS)
    parser.add_argument("--calib-images", type=int, default=300, help="from the train split")
    parser.add_argument("--val-images", type=int, help="from the val split (default: all 204)")
    parser.add_argument("--out", type=Path, help="keep the exports here (default: a temp folder)")
    args = parser.parse_args()

    from edgeq.errors import EdgeqError
    from edgeq.pipeline import ExportRequest, run_export
    from edgeq.recipe import load_recipe

    out = args.out or Path(tempfile.mkdtemp(prefix="edgeq-hardhat-"))
    rows, results = [], []
    for model_name in args.models:
        model = MODELS / f"hardhat-yolov8n-{model_name}-640.pt"
        for target in args.targets:
            sets = ["evaluation.latency_runs=0", f"calibration.images={args.calib_images}"]
            if args.val_images:
                sets.append(f"evaluation.images={args.val_images}")
            recipe = load_recipe(None, target=target, sets=sets,
                                 overrides={"model": str(model), "data": str(args.data)})
            start = time.perf_counter()
            try:  # fallback accepted: the SiLU model runs partly on the Edge TPU host CPU, and the report says so
                report = run_export(ExportRequest(recipe=recipe, out=out / model_name / target, force=True,
                                                  allow_fallback=True, progress=False))
            except EdgeqError as exc:
                rows.append(f"| {model_name} | {target} | | | | failed: {exc.one_line()} | |")
                continue
            wall = time.perf_counter() - start
            ref = report.reference
            results.append({"model": model_name, "target": target, "wall_s": round(wall, 1),
                            "reference": ref, "artifacts": [asdict(a) for a in report.artifacts]})
            rows.append(f"| {model_name} | {target} | pytorch-fp32 | {ref['map50_95']:.2f} | | measured | "
                        f"{wall:.0f} |")
            for a in report.artifacts:
                if a.map50_95 is None:
                    rows.append(f"| {model_name} | {target} | {a.name} | | | {a.status} | |")
                elif a.precision.startswith("int8"):
                    rows.append(f"| {model_name} | {target} | {a.name} | {a.map50_95:.2f} | {a.drop_map50_95:.2f} | "
                                f"{a.status} | |")
            print(rows[-1], flush=True)
    (out / "hardhat-benchmark.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(f"\nReal-photo benchmark: hard-hat YOLOv8n, {args.data}, val split, calibration on train\n")
    print("| model | target | artifact | mAP50-95 | drop vs FP32 | status | export wall (s) |")
    print("|---|---|---|---:|---:|---|---:|")
    print("\n".join(rows))
    print(f"\nexports and reports: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
