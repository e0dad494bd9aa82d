"""`edgeq export --target all` on the demo (320 px, 300 calibration / 300 evaluation images): the wall time of
the whole run, of the shared work and of each target, stage by stage (figures, not a test).

Run it on a quiet machine: the Edge TPU and NXP figures come from LiteRT's single-threaded INT8 reference
kernels (about 1 s per 320 px image on this 2-core machine), which `--fast` scores on the first 100 images.

    python scripts/benchmark_all_targets.py            # the full run
    python scripts/benchmark_all_targets.py --fast     # reference kernels on 100 images
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fast", action="store_true", help="pass --fast to the export")
    ap.add_argument("--targets", default="all", help="all, or a comma list")
    ap.add_argument("--out", type=Path, help="keep the export here (default: a temp folder)")
    args = ap.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="edgeq-all-")) / "out"
    command = [sys.executable, "-m", "edgeq.cli", "export", "--target", args.targets, "--out", str(out),
               "--calib-images", "300", "--val-images", "300", "--no-progress", *(["--fast"] if args.fast else [])]
    start = time.perf_counter()
    run = subprocess.run(command, check=False, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if not (out / "report.json").exists():
        print(run.stderr[-3000:], file=sys.stderr)
        return run.returncode or 1
    matrix = json.loads((out / "report.json").read_text())
    print(f"edgeq export --target {args.targets}{' --fast' if args.fast else ''}: {wall:.0f} s wall "
          f"({wall / 60:.1f} min), exit code {run.returncode}")
    print("\nshared work: " + ", ".join(f"{k} {v:.1f} s" for k, v in matrix["shared_timings"].items()))
    print("\n| target | status | seconds | stages (s) | deployable artifact | mAP50-95 | drop |\n"
          "|---|---|---:|---|---|---:|---:|")
    for o in matrix["outcomes"]:
        stages = ", ".join(f"{k} {v:.0f}" for k, v in o["timings"].items())
        primary = next((a for a in o["artifacts"] if a["precision"].startswith("int8")
                        and a["drop_map50_95"] is not None), None)
        figures = (f"{primary['name']} | {primary['map50_95']:.2f} | {primary['drop_map50_95']:.2f}" if primary
                   else f"{o['reason'][:60]} | | ")
        print(f"| {o['target']} | {o['status']} | {o['seconds']:.0f} | {stages} | {figures} |")
    print(f"\nreport: {out}/report.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
