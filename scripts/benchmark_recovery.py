"""Accuracy recovery without retraining, per target: default PTQ, the best calibration method, and the
budget-driven mixed-precision search, on the real-photo hard-hat detectors (figures, not a test).

For each (model, target):
  * `edgeq analyze` (its wall time and the three most sensitive layers on the target's scheme);
  * one export with `--max-drop N%` (default 50: the budget is half of what default PTQ loses there), which
    gives the default PTQ figure (search step 0) and, when that is over budget, every search step;
  * where the target offers more than one calibration method, one export with `calibration.method=auto`.
The starting point is all convolutions INT8: DLA without its FP16 last convs, the decode head in float where the
target detaches it (OpenVINO, TFLite, TensorRT GPU, DLA), comparison variants off.

    python scripts/benchmark_recovery.py                                   # hard-hat SiLU and ReLU6, 4 targets
    python scripts/benchmark_recovery.py --models demo --data demo      # the demo detector on its shapes
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MODELS = REPO / "benchmarks" / "models"
TARGETS = ("openvino", "tflite", "tensorrt", "dla")
START = {  # all convolutions INT8, comparison variants off: the search's starting point
    "openvino": ["options.compare_attached_head=false", "evaluation.latency_runs=20", "evaluation.batches=[1]"],
    "tflite": ["options.heads=detached", "evaluation.latency_runs=0"],
    "tensorrt": ["evaluation.latency_runs=0"],
    "dla": ["options.fp16_last_convs=false", "options.compare_all_int8=false", "evaluation.latency_runs=0"],
}


def parse() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=[str(MODELS / f"hardhat-yolov8n-{a}-640.pt") for a in
                                                    ("silu", "relu6")])
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "datasets" / "hardhat" / "data.yaml"),
                    help="data.yaml, or `demo` for the embedded synthetic data (with --models demo)")
    ap.add_argument("--targets", nargs="+", default=list(TARGETS), choices=TARGETS)
    ap.add_argument("--calib-images", type=int, default=300)
    ap.add_argument("--val-images", type=int, default=300, help="(the hard-hat val split has 204)")
    ap.add_argument("--share", type=float, default=50.0, help="--max-drop as a share of the default loss (%%)")
    ap.add_argument("--no-auto", action="store_true", help="skip the calibration.method=auto exports")
    ap.add_argument("--no-analyze", action="store_true", help="skip the edgeq analyze runs")
    ap.add_argument("--auto-only", action="store_true", help="only the calibration.method=auto exports (their "
                    "default PTQ row is the auto export's own; no search)")
    ap.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--out", type=Path)
    return ap.parse_args()


def main() -> int:
    from dataclasses import asdict

    from edgeq.analyze.run import run_analyze
    from edgeq.errors import EdgeqError
    from edgeq.pipeline import ExportRequest, run_export, shipped_entry
    from edgeq.recipe import load_recipe

    args = parse()
    out = args.out or Path(tempfile.mkdtemp(prefix="edgeq-bench-recovery-"))
    rows, results = [], []
    for model in args.models:
        label = Path(model).stem
        for target in args.targets:
            sets = [f"calibration.images={args.calib_images}", f"evaluation.images={args.val_images}",
                    *START[target], *args.sets]

            def recipe(*more, max_drop=None, sets=sets, model=model, target=target):
                return load_recipe(None, target=target, sets=[*sets, *more], overrides={
                    "model": model, "data": None if args.data == "demo" else args.data}, lists={"max_drop": max_drop})

            result = {"model": model, "target": target}
            try:
                if not args.no_analyze:
                    start = time.perf_counter()
                    analysis = run_analyze(ExportRequest(recipe(), out / label / f"{target}-analysis", force=True,
                                                         progress=False))
                    result["analyze_s"] = round(time.perf_counter() - start, 1)
                    result["top_layers"] = [s["name"] for s in analysis.layers[:3]]
                start = time.perf_counter()
                budget = None if args.auto_only else f"{args.share:g}%"
                report = run_export(ExportRequest(recipe(*(["calibration.method=auto"] if args.auto_only else []),
                                                         max_drop=budget), out / label / target,
                                                  force=True, allow_fallback=True, progress=False))
                result["export_s"] = round(time.perf_counter() - start, 1)
                result["reference"] = report.reference["map50_95"]
                default = shipped_entry(report.artifacts)
                result["default"] = {"artifact": default.name, "map50_95": default.map50_95,
                                     "drop": default.drop_map50_95, "latency_ms": default.latency_ms}
                result["search"] = asdict(report.search) if report.search else None
                result["calibration"] = report.calibration
                if args.auto_only:
                    result["auto_only"] = True
                    result["auto"] = {"method": report.calibration["used"], "map50_95": default.map50_95,
                                      "drop": default.drop_map50_95, "scores": report.calibration["scores"],
                                      "export_s": result["export_s"]}
                elif not args.no_auto and target in ("openvino", "tensorrt", "dla"):  # tflite: min-max only
                    start = time.perf_counter()
                    auto = run_export(ExportRequest(recipe("calibration.method=auto"), out / label / f"{target}-auto",
                                                    force=True, allow_fallback=True, progress=False))
                    best = shipped_entry(auto.artifacts)
                    result["auto"] = {"method": auto.calibration["used"], "map50_95": best.map50_95,
                                      "drop": best.drop_map50_95, "scores": auto.calibration["scores"],
                                      "export_s": round(time.perf_counter() - start, 1)}
            except EdgeqError as exc:
                result["error"] = exc.one_line()
            results.append(result)
            rows.append(_row(label, result))
            print(rows[-1], flush=True)
            out.mkdir(parents=True, exist_ok=True)
            (out / "benchmark-recovery.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(f"\nAccuracy recovery: {args.data}, calibration {args.calib_images} train images, evaluation on the val "
          f"split; --max-drop {args.share:g}% of each default loss\n")
    print("| model | target | FP32 | default PTQ (drop) | auto calibration (drop) | budget | search: result | "
          "layers kept | steps | analyze (s) | search (s) | export (s) |")
    print("|---|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|")
    print("\n".join(rows))
    print(f"\nreports: {out}")
    return 0


def _row(label: str, r: dict) -> str:
    if "error" in r:
        return f"| {label} | {r['target']} | failed: {r['error']} |"
    d, s = r["default"], r.get("search")
    auto = r.get("auto")
    auto_cell = f"{auto['map50_95']:.2f} ({auto['drop']:.2f}, {auto['method']})" if auto else \
        "min-max only" if r["target"] == "tflite" else "not run"
    if r.get("auto_only"):
        return (f"| {label} | {r['target']} | {r['reference']:.2f} | | {auto_cell} | | (auto calibration only) | | | "
                f"| | {r['export_s']:.0f} |")
    if s is None:
        budget, result, kept, steps, secs = f"{max(d['drop'], 0) / 2:.3g}", "default within budget", 0, 0, ""
    else:
        chosen = next((st for st in s["steps"] if st["artifact"] == s["chosen"]), None)
        result = (f"{chosen['map50_95']:.2f} ({chosen['drop_map50_95']:.2f}), within" if chosen else
                  f"stopped: {s['stopped']}" + (f"; remedy: {s['remedy']}" if s["remedy"] else ""))
        kept = len(chosen["kept"]) if chosen else len(s["steps"][-1]["kept"])
        budget, steps, secs = f"{s['budget']:.3g}", len(s["steps"]) - 1, f"{s['seconds']:.0f}"
    return (f"| {label} | {r['target']} | {r['reference']:.2f} | {d['map50_95']:.2f} ({d['drop']:.2f}) | {auto_cell} | "
            f"{budget} | {result} | {kept} | {steps} | {r.get('analyze_s', '')} | {secs} | {r['export_s']:.0f} |")


if __name__ == "__main__":
    sys.exit(main())
