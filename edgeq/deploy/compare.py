"""The device's figure against edgeq's: `edgeq compare report.json device-validation.json`.

A deploy kit's `infer.py --validate` scores the artifact on the device with edgeq's own protocol and records the
artifact's and the evaluation set's hashes (`edgeq.hostside.validate`). Here both records are held to the same
file and the same images, by content, before anything is compared: a device figure of another model or another
dataset is refused, naming which one differs. Then the figures are set side by side, the device's drop against
FP32 beside edgeq's drop and its 95% interval, and, where the device kept the inputs and raw outputs of its first
images, the artifact is run here on exactly those inputs and every output compared element by element: how far the
runtime here (the measured, simulated or emulated figure's) is from the device's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgeq import hostside
from edgeq.errors import EdgeqError

COMPARE_FIX = "pass the report.json of the export whose deploy kit ran `infer.py --validate`, and that run's " \
              "device-validation.json"


@dataclass(frozen=True)
class OutputAgreement:
    """One raw output of one image: the device's against this machine's runtime on the same input."""

    image: str
    output: str
    shape: tuple[int, ...]
    max_abs_diff: float
    fraction_equal: float


@dataclass(frozen=True)
class DeviceComparison:
    artifact: str
    target: str | None
    status: str  # edgeq's figure: measured / simulated / emulated
    runtime: str  # edgeq's runtime for it
    artifact_sha256: str
    evaluation_sha256: str
    images: int  # images both figures are on
    edgeq_map50_95: float
    device_map50_95: float
    reference_map50_95: float | None  # FP32 on the same images
    edgeq_drop: float | None
    drop_interval: list[float] | None
    device_runtime: dict[str, str] = field(default_factory=dict)
    agreement: list[OutputAgreement] = field(default_factory=list)
    agreement_runtime: str = ""  # the runner here that the device's raw outputs were compared with
    notes: list[str] = field(default_factory=list)

    @property
    def difference(self) -> float:
        """Device minus edgeq, mAP50-95 points (negative: the device scores lower)."""
        return self.device_map50_95 - self.edgeq_map50_95

    @property
    def device_drop(self) -> float | None:
        return None if self.reference_map50_95 is None else self.reference_map50_95 - self.device_map50_95

    @property
    def inside_interval(self) -> bool | None:
        """Whether the device's drop lies inside the 95% interval of edgeq's (None: no interval)."""
        if self.drop_interval is None or self.device_drop is None:
            return None
        return self.drop_interval[0] <= round(self.device_drop, 2) <= self.drop_interval[1]


def compare_device(report_path: Path, device_path: Path, outputs: bool = True) -> DeviceComparison:
    """Hold the device record to the report (same artifact, same evaluation set, by hash) and compare; `outputs`
    runs the artifact here on the inputs the device kept (its raw outputs' agreement)."""
    report_path, device_path = Path(report_path), Path(device_path)
    report = _read_json(report_path, "report")
    device = _read_json(device_path, "device validation")
    if "edgeq_device_validation" not in device:
        raise EdgeqError(f"'{device_path}' is not a device validation (no edgeq_device_validation key)",
                         "pass the device-validation.json that the kit's `infer.py --validate` wrote")
    if "outcomes" in report and "artifacts" not in report:  # a run of several targets: its target's own report
        target_report = report_path.parent / str(device.get("target")) / "report.json"
        if not target_report.is_file():
            raise EdgeqError(f"'{report_path}' is the report of several targets and '{target_report}' (the device's "
                             f"target '{device.get('target')}') does not exist", COMPARE_FIX)
        report_path, report = target_report, _read_json(target_report, "report")
    if "artifacts" not in report or "data" not in report:
        raise EdgeqError(f"'{report_path}' is not an edgeq report.json (no artifacts or data)", COMPARE_FIX)
    artifact, dataset = device.get("artifact", {}), device.get("dataset", {})
    entries = {e["name"]: e for e in report["artifacts"]}
    entry = entries.get(artifact.get("name"))
    if entry is None:
        raise EdgeqError(f"model mismatch: the device validated '{artifact.get('name')}', which is not an artifact "
                         f"of '{report_path}' (it has: {', '.join(entries)})", COMPARE_FIX)
    kit, row = _kit_row(report_path, entry)
    expected = _host_sha256(kit, row)
    ran = artifact.get("sha256")
    if expected is not None and ran is not None and ran != expected:
        raise EdgeqError(f"model mismatch: the device's '{artifact['file']}' has sha256 {ran[:12]}..., the report's "
                         f"'{entry['name']}' {expected[:12]}...: another model or another export", COMPARE_FIX)
    evaluation = report["data"].get("evaluation_set") or {}
    if dataset.get("sha256") != evaluation.get("sha256"):
        raise EdgeqError(f"dataset mismatch: the device scored {dataset.get('images')} images with evaluation-set "
                         f"sha256 {str(dataset.get('sha256'))[:12]}..., the report {evaluation.get('images')} images "
                         f"with {str(evaluation.get('sha256'))[:12]}...", "run `infer.py --validate` with the "
                         "data.yaml the export scored on (its val images and labels copied unchanged to the device)")
    notes = []
    if expected is None:
        notes.append(f"no deploy kit with '{entry['path']}' beside the report: the artifact is matched by name only")
    elif ran is None:
        notes.append(f"the device ran '{Path(artifact.get('ran', '?')).name}' without '{artifact['file']}' beside it; "
                     "the artifact is matched by name only")
    elif artifact.get("ran_sha256") != ran and row is not None and Path(artifact.get("ran", "")).name in \
            {Path(f).name for f in row.get("device_files", [])}:
        notes.append(f"the device ran '{Path(artifact['ran']).name}', built on the device from '{artifact['file']}'")
    subset = (entry.get("extra") or {}).get("evaluation_images")
    device_map, images = device["map50_95"], dataset["images"]
    if subset and device.get("first_images"):
        device_map, images = device["first_images"]["map50_95"], device["first_images"]["images"]
        notes.append(f"edgeq scored this artifact on the first {subset} evaluation images (--fast); so does this "
                     "comparison")
    reference = None if entry.get("drop_map50_95") is None else entry["map50_95"] + entry["drop_map50_95"]
    agreement, agreement_runtime = _agreement(device_path, device, kit, row) if outputs else ([], "")
    if agreement and agreement_runtime != entry.get("runtime"):
        notes.append(f"the raw outputs are compared with {agreement_runtime} (what `edgeq eval` runs this file "
                     f"with), not with {entry.get('runtime')}, which made edgeq's figure")
    return DeviceComparison(
        artifact=entry["name"], target=device.get("target"), status=entry["status"], runtime=entry.get("runtime", ""),
        artifact_sha256=ran or expected or "", evaluation_sha256=evaluation["sha256"], images=images,
        edgeq_map50_95=entry["map50_95"], device_map50_95=device_map, reference_map50_95=reference,
        edgeq_drop=entry.get("drop_map50_95"), drop_interval=entry.get("drop_interval"),
        device_runtime=device.get("runtime", {}), agreement=agreement, agreement_runtime=agreement_runtime,
        notes=notes)


def _read_json(path: Path, what: str) -> dict:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise EdgeqError(f"{what} '{path}' does not exist", COMPARE_FIX) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise EdgeqError(f"{what} '{path}' is not JSON ({exc})", COMPARE_FIX) from None
    if not isinstance(data, dict):
        raise EdgeqError(f"{what} '{path}' does not hold a JSON object", COMPARE_FIX)
    return data


def _kit_row(report_path: Path, entry: dict) -> tuple[Path | None, dict | None]:
    """The deploy kit holding the report's artifact and its deploy.json row (None, None: no kit beside it).
    A report's paths are relative to the output folder: the report's own folder, or the one above it for a
    target's report in a run of several."""
    for base in (report_path.parent, report_path.parent.parent):
        artifact = (base / entry["path"]).resolve()
        if not artifact.exists():
            continue
        for folder in artifact.parents:
            if (folder / "deploy.json").is_file():
                deploy = json.loads((folder / "deploy.json").read_text())
                row = next((a for a in deploy.get("artifacts", []) if (folder / a["file"]).resolve() == artifact),
                           None)
                if row is not None:
                    return folder, row
            if folder == base.resolve():
                break
    return None, None


def _host_sha256(kit: Path | None, row: dict | None) -> str | None:
    """The artifact's hash here: from its files where they are, else as its kit recorded it at export."""
    if kit is None or row is None:
        return None
    files = [kit / f for f in row.get("files", [])]
    if files and all(f.is_file() for f in files):
        return hostside.artifact_sha256(files)
    return row.get("sha256")


def _agreement(device_path: Path, device: dict, kit: Path | None,
               row: dict | None) -> tuple[list[OutputAgreement], str]:
    """Run the artifact here on the inputs the device kept and compare every raw output; with the runner's name."""
    raw = device.get("raw_outputs")
    if not raw or kit is None or row is None:
        return [], ""
    npz = device_path.parent / raw["file"]
    if not npz.is_file():
        raise EdgeqError(f"'{npz}' (the raw outputs '{device_path.name}' names) does not exist",
                         "copy it from the device beside device-validation.json, or pass --no-outputs")
    from edgeq.artifacts import loaded, runner_for_file

    saved = np.load(npz)
    inputs = sorted((k for k in saved.files if k.startswith("input/")), key=lambda k: int(k.split("/")[1]))
    runner = runner_for_file(kit / row["file"])
    rows = []
    with loaded(runner, kit / row["file"]):
        for key in inputs:
            i = key.split("/")[1]
            here = runner.infer(saved[key].astype(np.float32) / 255.0)
            name_of = raw["images"][int(i)] if int(i) < len(raw["images"]) else i
            for output in sorted(k for k in saved.files if k.startswith(f"output/{i}/")):
                name = output.split("/", 2)[2]
                if name not in here:
                    continue
                theirs, ours = saved[output], _as_shape(np.asarray(here[name], np.float32), saved[output].shape)
                if ours is None:
                    continue
                diff = np.abs(theirs.astype(np.float64) - ours)
                rows.append(OutputAgreement(image=name_of, output=name, shape=tuple(theirs.shape),
                                            max_abs_diff=float(diff.max()) if diff.size else 0.0,
                                            fraction_equal=float((theirs == ours).mean()) if diff.size else 1.0))
    return rows, runner.runtime


def _as_shape(array: np.ndarray, shape: tuple[int, ...]) -> np.ndarray | None:
    """This runner's output in the kit's shape: as it is, or NHWC as NCHW (a runner that leaves the layout as the
    runtime gives it, where the kit's script transposes); None where neither fits."""
    if array.shape == tuple(shape):
        return array
    if array.ndim == 4 and np.transpose(array, (0, 3, 1, 2)).shape == tuple(shape):
        return np.transpose(array, (0, 3, 1, 2))
    return None


def markdown(result: DeviceComparison) -> str:
    """What `edgeq compare` prints."""
    interval = "" if result.drop_interval is None else f"{result.drop_interval[0]:.2f} to {result.drop_interval[1]:.2f}"
    device_drop = "" if result.device_drop is None else f"{result.device_drop:.2f}"
    edgeq_drop = "" if result.edgeq_drop is None else f"{result.edgeq_drop:.2f}"
    runtime = ", ".join(f"{k} {v}" for k, v in result.device_runtime.items())
    lines = [f"{result.artifact} ({result.target}): the same file on both (sha256 {result.artifact_sha256[:12]}...), "
             f"the same {result.images} evaluation images (sha256 {result.evaluation_sha256[:12]}...)", "",
             "| figure | mAP50-95 | drop vs FP32 | 95% interval of edgeq's drop |", "|---|---:|---:|---|",
             f"| edgeq ({result.status}, {result.runtime}) | {result.edgeq_map50_95:.2f} | {edgeq_drop} | {interval} |",
             f"| device (infer.py --validate{', ' + runtime if runtime else ''}) | {result.device_map50_95:.2f} | "
             f"{device_drop} | |", ""]
    inside = {True: "inside edgeq's interval of the drop", False: "outside edgeq's interval of the drop",
              None: "no interval in the report"}[result.inside_interval]
    lines.append(f"device - edgeq: {result.difference:+.2f} mAP50-95 points ({inside})")
    lines += [f"note: {n}" for n in result.notes]
    if result.agreement:
        images = list(dict.fromkeys(a.image for a in result.agreement))
        lines += ["", f"Raw outputs, the device's against {result.agreement_runtime} here on the device's own "
                      f"inputs ({len(images)} images: {', '.join(images)}):", "",
                  "| output | shape | max abs diff | equal |", "|---|---|---:|---:|"]
        for output in dict.fromkeys(a.output for a in result.agreement):
            rows = [a for a in result.agreement if a.output == output]
            lines.append(f"| {output} | {'x'.join(map(str, rows[0].shape))} | "
                         f"{max(a.max_abs_diff for a in rows):.3g} | "
                         f"{sum(a.fraction_equal for a in rows) / len(rows):.1%} |")
    return "\n".join(lines) + "\n"
