"""How long `edgeq export --target all` takes, where the time goes, and what it costs in CPU and memory
(figures, not a test).

One run prints the wall time, CPU time (edgeq and every worker process it starts) and peak memory (the largest
single process) of the whole export, the shared work stage by stage, and each target with its stages and its
deployable artifact's figure. `--runs 2` runs the same export twice on one cache: the first run is cold (an empty
cache: every conversion done), the second warm (conversions and calibration statistics come from the cache, as
a re-export that changes only an evaluation setting gets them). `--against report.json` compares every artifact's
mAP50-95 with an earlier run's (the slow path's, say) and prints the largest difference.

Run it on a quiet machine (nothing else on the CPUs); say how loaded it was when quoting a figure.

    python scripts/benchmark_speed.py                       # the demo: 320 px, 300 calibration / 300 val images
    python scripts/benchmark_speed.py --runs 2 \\
        --model benchmarks/models/hardhat-yolov8n-silu-640.pt --data ../shared/datasets/hardhat/data.yaml
    python scripts/benchmark_speed.py --fast                # reference-kernel artifacts on 100 images
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _export(args, out: Path, cache: Path) -> tuple[dict, float, float, float, int]:
    """One export in a fresh process: (matrix report, wall s, CPU s of the export and its workers, peak RSS MiB of
    the largest of those processes, exit code)."""
    command = [sys.executable, "-m", "edgeq.cli", "export", "--target", args.targets, "--out", str(out),
               "--calib-images", str(args.calib_images), "--no-progress",
               *(["--val-images", str(args.val_images)] if args.val_images else []),
               *(["--model", args.model] if args.model else []), *(["--data", args.data] if args.data else []),
               *(["--fast"] if args.fast else []), *args.extra]
    env = dict(os.environ, EDGEQ_CACHE=str(cache))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    run = subprocess.run(command, check=False, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if not (out / "report.json").exists():
        print(" ".join(command), "\n", run.stderr[-3000:], file=sys.stderr)
        raise SystemExit(run.returncode or 1)
    return json.loads((out / "report.json").read_text()), wall, cpu, after.ru_maxrss / 1024, run.returncode


def _figures(matrix: dict) -> dict[str, float]:
    return {f"{o['target']}/{a['name']}": a["map50_95"] for o in matrix["outcomes"] for a in o.get("artifacts", [])
            if a.get("map50_95") is not None}


def _print_run(label: str, matrix: dict, wall: float, cpu: float, peak_mib: float, code: int) -> None:
    print(f"\n## {label}: {wall:.0f} s wall ({wall / 60:.1f} min), CPU {cpu:.0f} s ({cpu / wall:.2f} cores busy on "
          f"average), peak memory {peak_mib:.0f} MiB (largest process), exit code {code}; {matrix['val_images']} "
          f"val images, {matrix['calib_images']} calibration, {matrix['imgsz']} px")
    print("\nshared work: " + ", ".join(f"{k} {v:.1f} s" for k, v in matrix["shared_timings"].items()))
    print("\n| target | status | seconds | stages (s) | deployable artifact | mAP50-95 | drop |\n"
          "|---|---|---:|---|---|---:|---:|")
    for o in matrix["outcomes"]:
        stages = ", ".join(f"{k} {v:.0f}" for k, v in o["timings"].items())
        primary = next((a for a in o["artifacts"] if a["precision"].startswith("int8")
                        and a["drop_map50_95"] is not None), None)
        figures = (f"{primary['name']} | {primary['map50_95']:.2f} | {primary['drop_map50_95']:.2f}" if primary
                   else f"{(o.get('reason') or '')[:60]} | | ")
        print(f"| {o['target']} | {o['status']} | {o['seconds'] or 0:.0f} | {stages} | {figures} |")


def _compare(label: str, figures: dict[str, float], against: dict[str, float]) -> None:
    common = sorted(set(figures) & set(against))
    if not common:
        print(f"\n{label}: no artifact in common with the earlier run")
        return
    diffs = {k: figures[k] - against[k] for k in common}
    worst = max(diffs, key=lambda k: abs(diffs[k]))
    print(f"\n{label} against the earlier run: {len(common)} artifacts in common, largest mAP50-95 difference "
          f"{diffs[worst]:+.3f} ({worst}); {sum(abs(d) > 0.05 for d in diffs.values())} differ by more than 0.05"
          + (f"; only in one run: {', '.join(sorted(set(figures) ^ set(against)))}" if set(figures) ^ set(against)
             else ""))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--targets", default="all", help="all, or a comma list")
    ap.add_argument("--model", help="a checkpoint (default: the embedded demo)")
    ap.add_argument("--data", help="a data.yaml (default: the demo's synthetic shapes)")
    ap.add_argument("--calib-images", type=int, default=300)
    ap.add_argument("--val-images", type=int, help="default: the demo's 300, or all of --data's val split")
    ap.add_argument("--fast", action="store_true", help="pass --fast to the export")
    ap.add_argument("--runs", type=int, default=1, help="2: a cold run, then a warm one on the same cache")
    ap.add_argument("--against", type=Path, help="an earlier run's report.json: compare every artifact's figure")
    ap.add_argument("--out", type=Path, help="keep the exports here (default: a temp folder)")
    ap.add_argument("extra", nargs="*", help="after --: more `edgeq export` arguments")
    args = ap.parse_args()
    if args.val_images is None and not args.data:
        args.val_images = 300
    root = args.out or Path(tempfile.mkdtemp(prefix="edgeq-speed-"))
    cache = root / "cache"  # empty at the first run: that run is cold
    against = _figures(json.loads(args.against.read_text())) if args.against else None
    first = None
    for number in range(1, args.runs + 1):
        label = "cold cache" if number == 1 else "warm cache"
        matrix, wall, cpu, peak, code = _export(args, root / f"run{number}", cache)
        _print_run(f"run {number} ({label})", matrix, wall, cpu, peak, code)
        figures = _figures(matrix)
        if against is not None:
            _compare(f"run {number}", figures, against)
        if first is not None:
            _compare(f"run {number}", figures, first)
        first = first or figures
    print(f"\nreports: {root}/run*/report.md (load average now {os.getloadavg()[0]:.1f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
