"""The deploy kit every export writes into its target's folder: DEPLOY.md (what to copy, what to build on the
device, the input format, how to decode the outputs), the family's `infer.py`, and the host side it runs with.

The host side is `edgeq.hostside`, copied verbatim: the letterbox and decoder edgeq's evaluator itself uses, so
the detections `infer.py` prints on the device are the ones the report scored. `deploy.json` tells `infer.py`
which file is which (layout, precision) and which one to run by default; `head.json` describes the head.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from edgeq import hostside
from edgeq.backend import SHIPPED_ROLES, Artifact, DeploySteps, Job
from edgeq.head import HeadLayout
from edgeq.report import ArtifactEntry

KIT_FILES = ("DEPLOY.md", "infer.py", "hostside.py", "head.json", "deploy.json")

_LAYOUTS = {
    HeadLayout.PIXEL: "`output0` (1, 4 + nc, anchors): boxes as centre x, centre y, width, height in input pixels, "
                      "then one sigmoid score per class. The host keeps the best class per anchor and runs NMS.",
    HeadLayout.NORMALIZED: "`output0` (1, 4 + nc, anchors) with boxes in 0..1 of the input size (one INT8 range "
                           "holds boxes and scores); the host multiplies the boxes by the input size, then as pixel.",
    HeadLayout.DETACHED: "the head convolutions per scale, `box_i` (1, 4 x reg_max, H, W) DFL logits and `cls_i` "
                         "(1, nc, H, W) class logits; the host runs the decode in FP32 (softmax expectation per box "
                         "side, anchor arithmetic with the strides in head.json, sigmoid), then NMS.",
    HeadLayout.SELECTED: "detections already chosen inside the model, (1, max_det, 6): x1 y1 x2 y2 score class.",
}


def kit_artifacts(folder: Path, artifacts: list[Artifact]) -> list[Artifact]:
    """The artifacts that live in the target's folder (the shared FP32 ONNX is the run's, not the kit's)."""
    return [a for a in artifacts if a.path.is_relative_to(folder)]


def write_kit(folder: Path, job: Job, artifacts: list[Artifact], entries: list[ArtifactEntry],
              steps: DeploySteps, model_name: str, evaluation: dict | None = None) -> Path | None:
    """Write the kit into `folder` (the target's folder in the staging output); returns DEPLOY.md (None: no
    artifact of the target lives there). `evaluation` (the split, the protocol's thresholds, the evaluation
    images' content hashes in the evaluator's order and the set's hash) goes into deploy.json, so that
    `infer.py --validate` scores the same images with the same settings on the device."""
    shipped = kit_artifacts(folder, artifacts)
    if not shipped:
        return None
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(hostside.__file__, folder / "hostside.py")
    script = folder / "infer.py"
    shutil.copyfile(steps.script, script)
    script.chmod(0o755)
    job.head.to_json(folder / "head.json")
    default = _default_artifact(shipped)
    by_name = {e.name: e for e in entries}
    rows = [{"name": a.name, "file": str(a.path.relative_to(folder)), "layout": a.layout.value,
             "precision": a.precision.label(), "role": a.role.value, "status": a.status,
             "device_files": list(steps.device_files.get(str(a.path.relative_to(folder)), ())),
             **_identity(folder, a), **_scored_on(by_name.get(a.name))} for a in shipped]
    (folder / "deploy.json").write_text(json.dumps(
        {"target": job.target, "imgsz": job.head.imgsz, "default": str(default.path.relative_to(folder)),
         "artifacts": rows, **({"evaluation": evaluation} if evaluation else {})}, indent=2) + "\n")
    path = folder / "DEPLOY.md"
    path.write_text(_markdown(folder, job, shipped, default, {e.name: e for e in entries}, steps, model_name))
    return path


def _identity(folder: Path, artifact: Artifact) -> dict:
    """The files the model is made of and their hash (`hostside.artifact_sha256`): what a device validation
    names, so `edgeq compare` can tell the file the device ran is the one the report scored. Nothing for a file
    not built here."""
    files = [f for f in artifact.model_files if f.is_relative_to(folder)]
    if not files or not all(f.is_file() for f in files):
        return {}
    return {"files": [str(f.relative_to(folder)) for f in files], "sha256": hostside.artifact_sha256(files)}


def _scored_on(entry: ArtifactEntry | None) -> dict:
    """A subset the report scored the artifact on (--fast: the first N evaluation images), for --validate."""
    images = entry.extra.get("evaluation_images") if entry is not None else None
    return {"evaluation_images": images} if images else {}


def _default_artifact(shipped: list[Artifact]) -> Artifact:
    """What `infer.py` runs without --model: the file the target ships (its backend's role, as the report's budget
    picks it), else the first in the folder."""
    return next((a for role in SHIPPED_ROLES for a in shipped if a.role is role), shipped[0])


def _markdown(folder: Path, job: Job, shipped: list[Artifact], default: Artifact,
              entries: dict[str, ArtifactEntry], steps: DeploySteps, model_name: str) -> str:
    size, head = job.head.imgsz, job.head
    lines = [f"# Deploying {model_name} on {job.target} ({job.profile.accelerator})", "",
             f"Made by `edgeq export`; accuracy of every file against FP32 is in the report beside this folder "
             f"(same evaluator, same images). Input {size}x{size}, {head.nc} classes "
             f"({', '.join(head.names[:8])}{', ...' if head.nc > 8 else ''}).", "",
             "## Artifacts", "",
             "| file | precision | outputs | status here | mAP50-95 | drop vs FP32 |", "|---|---|---|---|---:|---:|"]
    for a in shipped:
        e = entries.get(a.name)
        figure = "" if e is None or e.map50_95 is None else f"{e.map50_95:.2f}"
        drop = "" if e is None or e.drop_map50_95 is None else f"{e.drop_map50_95:.2f}"
        marker = " (default)" if a is default else ""
        lines.append(f"| `{a.path.relative_to(folder)}`{marker} | {a.precision.label()} | {a.layout.value} | "
                     f"{a.status} | "
                     f"{figure} | {drop} |")
    not_built = [a for a in shipped if a.status == "not-built"]
    copy = [default, *[a for a in shipped if a is not default and a.status == "not-built"]]
    files = sorted({str(f.relative_to(folder)) for a in copy for f in (*a.model_files, *a.companions)
                    if f.is_relative_to(folder) and f.exists()})
    lines += ["", "## What to copy to the device", "",
              "The whole folder works (`scp -r` it); the minimum for the default file is:", "",
              *[f"- `{f}`" for f in files],
              "- `infer.py`, `hostside.py` (the letterbox and decoder edgeq scored with), `head.json`, `deploy.json`",
              "", "## On the device", "", f"Needs: {steps.device_needs}.", "", f"Runtime: {steps.runtime}.", ""]
    if steps.build:
        lines += ["Build there first:", "", "```sh", *steps.build, "```", ""]
    if not_built:
        lines += [f"Not built here (no toolchain on the export machine): "
                  f"{', '.join(f'`{a.path.relative_to(folder)}`' for a in not_built)}; the commands above make "
                  "them.", ""]
    lines += ["Run on one image (prints one line per detection: class, score, x1 y1 x2 y2 in the image's pixels):",
              "", "```sh", steps.run_example, "```", "",
              "`--model FILE` runs another file of the table, `--conf` sets the score threshold (default 0.25).", "",
              "Validate on the device (with faster-coco-eval or pycocotools installed there): "
              "`python3 infer.py --validate data.yaml` scores the file on the export's evaluation images (found by "
              "content in the val split) with edgeq's protocol and writes device-validation.json and .npz; "
              "`edgeq compare report.json device-validation.json` sets it against the table's figure.", "",
              "## Input", "",
              f"BGR image as OpenCV reads it -> scaled to fit {size}x{size} keeping its aspect ratio (bilinear), "
              f"padded centred with grey {hostside.PAD_VALUE}, converted to RGB, divided by 255: float32 NCHW "
              f"(1, 3, {size}, {size}) in [0, 1] (`hostside.letterbox`).", ""]
    if steps.input_note:
        lines += [steps.input_note, ""]
    lines += ["## Outputs and decoding", ""]
    for layout in dict.fromkeys(a.layout for a in shipped):
        lines.append(f"- {layout.value}: {_LAYOUTS[layout]}")
    selection = (f"Ultralytics' top-{head.max_det} selection without NMS (NMS-free head)" if head.end2end
                 else "class-aware NMS at IoU 0.7")
    lines += ["", f"Detections are chosen by {selection} (`hostside.select_detections`) and mapped back to the "
              "original image by undoing the letterbox (`Letterbox.to_original`).", ""]
    return "\n".join(lines)
