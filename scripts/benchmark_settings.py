#!/usr/bin/env python3
"""Which settings of one target win, on several models (figures, not a test): the deployable artifact's drop
against FP32 for every (model, setting), same calibration and evaluation images, through edgeq's Python API.

    python scripts/benchmark_settings.py --target openvino \\
        --model benchmarks/models/hardhat-yolov8n-silu-640.pt --model benchmarks/models/hardhat-yolov8n-relu6-640.pt \\
        --data ../shared/datasets/hardhat/data.yaml \\
        --setting default= --setting minmax=calibration.method=minmax \\
        --setting full-bias=options.fast_bias_correction=false

A setting is NAME=KEY=VALUE[,KEY=VALUE...] (recipe keys, as --set takes them); `NAME=` is the recipe's default.
Each export builds only the deployable artifact's family variants the target needs (comparisons off where the
target has such an option) and no timing, so a row costs one calibration and one evaluation pass.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path


def _setting(text: str) -> tuple[str, dict[str, str]]:
    name, _, rest = text.partition("=")
    pairs = [p for p in rest.split(",") if p]
    return name, dict(p.split("=", 1) for p in pairs)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--target", required=True)
    ap.add_argument("--model", action="append", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--setting", action="append", type=_setting, required=True)
    ap.add_argument("--calib-images", type=int, default=300)
    ap.add_argument("--val-images", type=int)
    ap.add_argument("--common", action="append", default=[], metavar="KEY=VALUE", help="for every row")
    ap.add_argument("--json", type=Path, help="write every row here too")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()

    import edgeq
    from edgeq.errors import EdgeqError

    out = args.out or Path(tempfile.mkdtemp(prefix="edgeq-settings-"))
    common = dict(s.split("=", 1) for s in ["evaluation.latency_runs=0", *args.common])
    rows = []
    print("| model | setting | FP32 | deployable | drop | interval | seconds |\n|---|---|---:|---:|---:|---|---:|",
          flush=True)
    for model in args.model:
        for name, sets in args.setting:
            start = time.perf_counter()
            try:
                result = edgeq.export(model, target=args.target, data=args.data, out=out / Path(model).stem / name,
                                      force=True, calib_images=args.calib_images, val_images=args.val_images,
                                      set={**common, **sets})
            except EdgeqError as exc:
                print(f"| {Path(model).name} | {name} | | | | error: {exc.one_line()} | |", flush=True)
                continue
            shipped, ref = result.shipped, result.report.reference
            interval = (shipped.extra or {}).get("drop_interval") or getattr(shipped, "drop_interval", None) or ""
            row = {"model": Path(model).name, "setting": name, "sets": sets, "fp32": ref["map50_95"],
                   "map50_95": shipped.map50_95, "drop": shipped.drop_map50_95, "interval": interval,
                   "seconds": round(time.perf_counter() - start, 1), "images": ref["images"]}
            rows.append(row)
            print(f"| {row['model']} | {name} | {row['fp32']:.2f} | {row['map50_95']:.2f} | {row['drop']:.2f} | "
                  f"{interval} | {row['seconds']:.0f} |", flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
