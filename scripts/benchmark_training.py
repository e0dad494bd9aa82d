"""Training-side remedies, scored here on the full validation sets (figures, not a test).

Training runs on a GPU (`edgeq adapt`, `edgeq qat ... --no-export` there, see README); this script takes what
came back and measures it with the same evaluator as every export report:

  * adapt: FP32 mAP50-95 of the original and the adapted checkpoint, then `edgeq export --target edgetpu` of the
    adapted one (ops off the Edge TPU, INT8 drop against the adapted FP32);
  * qat: `edgeq export --qat-onnx` of a trained graph with the recipe it was trained under, which builds PTQ and
    QAT side by side; reports both drops and the share of the PTQ loss QAT wins back.

    python scripts/benchmark_training.py \\
        --adapt benchmarks/models/hardhat-yolov8n-silu-640.pt:runs/hh-relu6.pt:hardhat \\
        --adapt demo:runs/demo-relu6.pt:demo \\
        --qat openvino:benchmarks/models/hardhat-yolov8n-silu-640.pt:runs/ov.onnx:options.detach_head=false \\
        --qat dla:benchmarks/models/hardhat-yolov8n-relu6-640.pt:runs/dla.onnx:options.fp16_last_convs=false
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HARDHAT = REPO.parent / "shared" / "datasets" / "hardhat" / "data.yaml"


def edgeq(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "edgeq.cli", *args, "--no-progress"], check=True)


def fp32_map(model: str, data: str | None, images: int) -> float:
    out = subprocess.run([sys.executable, "-m", "edgeq.cli", "eval", model, *(["--data", data] if data else []),
                          "--val-images", str(images), "--no-progress"], check=True, capture_output=True, text=True)
    return float(out.stdout.strip().splitlines()[-1].split("|")[4])


def adapt_row(spec: str, work: Path, calib: int) -> str:
    original, adapted, data_name = spec.split(":")
    data, images = (str(HARDHAT), 204) if data_name == "hardhat" else (None, 300)
    if original == "demo":
        original = str(REPO / "edgeq" / "assets" / "demo-yolov8n-silu-320.pt")
    before, after = fp32_map(original, data, images), fp32_map(adapted, data, images)
    out = work / f"adapt-{Path(adapted).stem}"
    edgeq("export", "--target", "edgetpu", "--model", adapted, *(["--data", data] if data else []),
          "--calib-images", str(calib), "--val-images", str(images), "--out", str(out))
    report = json.loads((out / "report.json").read_text())
    primary = next(a for a in report["artifacts"] if a["precision"] != "fp32")
    off = primary["extra"]["ops"] - primary["extra"]["ops_on_accelerator"]
    return (f"| {Path(original).name} -> {Path(adapted).name} | {before:.2f} | {after:.2f} | {after - before:+.2f} | "
            f"{primary['name']} | {primary['map50_95']:.2f} | {primary['drop_map50_95']:.2f} | {off} |")


def qat_row(spec: str, work: Path, calib: int) -> str:
    target, model, trained, *sets = spec.split(":")
    out = work / f"qat-{target}-{Path(trained).stem}"
    set_args = [item for s in sets for item in ("--set", s)]
    edgeq("export", "--target", target, "--model", model, "--data", str(HARDHAT), *set_args, "--calib-images",
          str(calib), "--val-images", "204", "--qat-onnx", trained, "--out", str(out))
    report = json.loads((out / "report.json").read_text())
    rows = [a for a in report["artifacts"] if a["map50_95"] is not None and a["precision"] != "fp32"]
    qat = next(a for a in rows if "qat" in a["variant"])
    ptq = next(a for a in rows if "qat" not in a["variant"])
    won = (ptq["drop_map50_95"] - qat["drop_map50_95"]) / ptq["drop_map50_95"] if ptq["drop_map50_95"] > 0 else 0
    fp32 = report["reference"]["map50_95"]
    return (f"| {Path(model).name} | {target} ({', '.join(sets) or 'defaults'}) | {fp32:.2f} | "
            f"{ptq['name']} {ptq['drop_map50_95']:.2f} | {qat['name']} {qat['drop_map50_95']:.2f} | {won:.0%} | "
            f"{qat['status']} |")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--adapt", action="append", default=[], metavar="ORIGINAL:ADAPTED:hardhat|demo")
    ap.add_argument("--qat", action="append", default=[], metavar="TARGET:MODEL:TRAINED.onnx[:KEY=VALUE...]")
    ap.add_argument("--calib-images", type=int, default=100)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="edgeq-bench-") as tmp:
        work = Path(tmp)
        if args.adapt:
            print("| original -> adapted | FP32 before | FP32 after | change | INT8 artifact | INT8 | drop vs "
                  "adapted FP32 | ops off the accelerator |\n|---|---:|---:|---:|---|---:|---:|---:|")
            for spec in args.adapt:
                print(adapt_row(spec, work, args.calib_images), flush=True)
        if args.qat:
            print("\n| model | target | FP32 | PTQ drop | QAT drop | PTQ loss won back | figures |\n"
                  "|---|---|---:|---:|---:|---:|---|")
            for spec in args.qat:
                print(qat_row(spec, work, args.calib_images), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
