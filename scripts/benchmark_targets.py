"""Every target on the detectors you name: one `edgeq export` each, one table (figures, not a test).

For each (model, target): FP32 and every INT8 artifact's mAP50-95, its drop against FP32, the head the model
has (class, branch, NMS or top-k), the head treatment the artifact uses (FP32 head, detached on the host,
normalized, in the engine), the figure's status (measured / emulated / not-built) and the export's wall time.
Fallback is accepted (a SiLU model runs partly on the Edge TPU's host CPU; the report says so).

    python scripts/benchmark_targets.py --models benchmarks/models/demo-yolo26n-320.pt \\
        benchmarks/models/demo-yolo11n-320.pt                        # demo shapes (the default data)
    python scripts/benchmark_targets.py --models benchmarks/models/demo-yolov10n-320.pt --targets openvino tflite
    python scripts/benchmark_hardhat.py                              # the real-photo preset of this script

The Edge TPU and NXP figures come from LiteRT's INT8 reference kernels, which are bit-exact and slow (about
1 s per 320 px image, 4 s per 640 px image on 2 cores): `--reference-val-images` scores those two on fewer
images (their FP32 row is then re-measured on the same subset, so the drop stays like for like).
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
TARGETS = ("openvino", "tflite", "edgetpu", "nxp", "tensorrt", "dla")
REFERENCE_KERNEL_TARGETS = ("edgetpu", "nxp")  # scored with LiteRT's INT8 reference kernels
TREATMENTS = {"pixel": "head in the graph (pixel boxes)", "normalized": "head in the graph (normalized boxes)",
              "detached": "head detached to the host (FP32)", "selected": "selection in the graph"}


def parser(description: str = __doc__, **defaults) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=defaults.get("models"), required="models" not in defaults,
                    help="checkpoints (.pt), model YAMLs or demo[:relu6]")
    ap.add_argument("--data", default=defaults.get("data"), help="data.yaml (default: the demo shapes)")
    ap.add_argument("--targets", nargs="+", default=list(TARGETS), choices=TARGETS)
    ap.add_argument("--head-branch", choices=["one2one", "one2many"], help="default: what the model ships")
    ap.add_argument("--calib-images", type=int, default=300, help="from the train split")
    ap.add_argument("--val-images", type=int, default=defaults.get("val_images"),
                    help="from the val split (default: the recipe's 300; all of a smaller split)")
    ap.add_argument("--reference-val-images", type=int, help="val images for edgetpu/nxp (default: --val-images)")
    ap.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                    help="recipe override for every export, as `edgeq export --set` (e.g. options.heads=detached)")
    ap.add_argument("--out", type=Path, help="keep the exports here (default: a temp folder)")
    return ap


def treatment(entry) -> str:
    if entry.precision == "fp32":
        return "FP32"
    return "FP32 head" if "fp32-head" in entry.precision else TREATMENTS.get(entry.layout, entry.variant)


def run(args: argparse.Namespace) -> int:
    from edgeq.errors import EdgeqError
    from edgeq.pipeline import ExportRequest, run_export
    from edgeq.recipe import load_recipe

    out = args.out or Path(tempfile.mkdtemp(prefix="edgeq-bench-"))
    rows, results = [], []
    for model in args.models:
        label = Path(model).stem
        for target in args.targets:
            sets = ["evaluation.latency_runs=0", f"calibration.images={args.calib_images}", *args.sets]
            images = args.reference_val_images if target in REFERENCE_KERNEL_TARGETS else None
            if images or args.val_images:
                sets.append(f"evaluation.images={images or args.val_images}")
            recipe = load_recipe(None, target=target, sets=sets, overrides={
                "model": str(model), "data": args.data, "head_branch": args.head_branch})
            start = time.perf_counter()
            try:
                report = run_export(ExportRequest(recipe=recipe, out=out / label / target, force=True,
                                                  allow_fallback=True, progress=False))
            except EdgeqError as exc:
                rows.append(f"| {label} | | {target} | | | | | | failed: {exc.one_line()} | |")
                print(rows[-1], flush=True)
                continue
            wall = time.perf_counter() - start
            head = report.model["head"]
            head_desc = f"{head['class']} {head['branch']}, {'NMS' if head['nms'] else 'top-k'}"
            ref = report.reference
            results.append({"model": str(model), "target": target, "wall_s": round(wall, 1), "head": head,
                            "val_images": report.data["val_images"], "reference": ref,
                            "artifacts": [asdict(a) for a in report.artifacts]})
            rows.append(f"| {label} | {head_desc} | {target} | pytorch-fp32 | FP32 | {ref['map50_95']:.2f} | | "
                        f"{report.data['val_images']} | measured | {wall:.0f} |")
            for a in report.artifacts:
                if not a.precision.startswith("int8"):
                    continue
                score = "" if a.map50_95 is None else f"{a.map50_95:.2f}"
                drop = "" if a.drop_map50_95 is None else f"{a.drop_map50_95:.2f}"
                rows.append(f"| {label} | {head_desc} | {target} | {a.name} | {treatment(a)} | {score} | {drop} | "
                            f"| {a.status} | |")
            print("\n".join(rows[-1 - sum(a.precision.startswith('int8') for a in report.artifacts):]), flush=True)
    out.mkdir(parents=True, exist_ok=True)
    (out / "benchmark.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(f"\nEvery target: {', '.join(map(str, args.models))} on {args.data or 'the demo shapes'}, "
          f"val split, calibration on train ({args.calib_images} images)\n")
    print("| model | head | target | artifact | head treatment | mAP50-95 | drop vs FP32 | val images | status "
          "| export wall (s) |")
    print("|---|---|---|---|---|---:|---:|---:|---|---:|")
    print("\n".join(rows))
    print(f"\nexports and reports: {out}")
    return 0


def main() -> int:
    return run(parser().parse_args())


if __name__ == "__main__":
    sys.exit(main())
