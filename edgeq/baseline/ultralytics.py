"""Parent side of the baseline: Ultralytics' INT8 export of the run's checkpoint for one target, through the
worker protocol, calibrated on the run's own calibration images (a data.yaml whose train split lists them:
Ultralytics calibrates on the val split by default, which would calibrate on the images it is scored on)."""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from edgeq.backend import Artifact, Role
from edgeq.baseline.spec import UltralyticsExport
from edgeq.errors import StageError

STAGE = "baseline"
# Ultralytics' format packages can conflict with edgeq's (litert-torch pins its own torch): an interpreter of their
# own, where edgeq and Ultralytics are installed too, runs the export when this names it
PYTHON_VARIABLE = "EDGEQ_ULTRALYTICS_PYTHON"


@dataclass
class BaselineOutcome:
    """One target's baseline: the artifact to score beside edgeq's, or why there is none (never an error: the
    user asked for a comparison, and edgeq's own build stands without it)."""

    target: str
    command: str = ""  # the `yolo export` line that makes the same file
    artifact: Artifact | None = None
    skipped: str = ""
    log: str = ""

    def record(self) -> dict:
        """What report.json keeps."""
        return {"source": f"Ultralytics {ultralytics_version()}", "command": self.command,
                "status": "built" if self.artifact else "skipped", "reason": self.skipped,
                "log": f"logs/{Path(self.log).name}" if self.log else "",
                "artifact": self.artifact.name if self.artifact else None}


def ultralytics_version() -> str:
    from importlib.metadata import version

    return version("ultralytics")


def yolo_command(spec: UltralyticsExport, checkpoint: Path, imgsz: int, data_yaml: str) -> str:
    extra = "".join(f" {k}={v}" for k, v in spec.args.items())
    return (f"yolo export model={checkpoint} format={spec.format} quantize=8 imgsz={imgsz} data={data_yaml} "
            f"split=train{extra}")


def calibration_data(folder: Path, calib_paths: list[Path], names: list[str]) -> Path:
    """A data.yaml whose train (and val) split is exactly the run's calibration images."""
    import yaml

    folder.mkdir(parents=True, exist_ok=True)
    listing = folder / "calibration.txt"
    listing.write_text("".join(f"{Path(p).resolve()}\n" for p in calib_paths))
    data = folder / "data.yaml"
    data.write_text(yaml.safe_dump({"path": str(folder.resolve()), "train": listing.name, "val": listing.name,
                                    "names": dict(enumerate(names))}, sort_keys=False))
    return data


def _python() -> str:
    return os.environ.get(PYTHON_VARIABLE) or sys.executable


def _missing(spec: UltralyticsExport) -> str:
    """What the format needs that is absent here (modules are looked up only in edgeq's own interpreter: another
    one reports its own through the worker)."""
    from edgeq.env import importable

    modules = spec.needs_modules if _python() == sys.executable else ()
    absent = [m for m in modules if not importable(m)] + \
        [b for b in spec.needs_binaries if shutil.which(b) is None]
    if not absent:
        return ""
    return f"Ultralytics' {spec.format} export needs {', '.join(absent)}, not installed here" + \
        (f" ({spec.install})" if spec.install else "")


def export_baseline(target: str, spec: UltralyticsExport | None, *, checkpoint: Path, imgsz: int,
                    calib_paths: list[Path], names: list[str], folder: Path, log_dir: Path, trust_model: bool,
                    shared: dict, open_runner) -> BaselineOutcome:
    """Ultralytics' export for `target` into `folder`, reused from `shared` when another target of the run asked
    for the same file. `open_runner(path)` opens it for the evaluator (the layout is told from the file)."""
    if spec is None:
        return BaselineOutcome(target, skipped="Ultralytics has no export format for this target")
    data = calibration_data(folder / "data", calib_paths, names)
    command = yolo_command(spec, checkpoint, imgsz, "calibration-data.yaml")
    if (why := _missing(spec)):
        return BaselineOutcome(target, command, skipped=why)
    if spec.key() not in shared:
        from edgeq.toolchains.worker import WorkerCall, run_worker

        workdir = folder / f"ultralytics-{spec.format}"
        log = log_dir / f"baseline-ultralytics-{spec.format}.log"
        named_as = workdir / Path(checkpoint).name
        try:
            result = run_worker(_python(), WorkerCall(
                script=Path(__file__).with_name("ultralytics_worker.py"), workdir=workdir, log=log, stage=STAGE,
                timeout_s=3600, job={"checkpoint": str(Path(checkpoint).resolve()), "trust_model": trust_model,
                                     "named_as": str(named_as), "format": spec.format, "args": spec.args,
                                     "needs_modules": list(spec.needs_modules),
                                     "imgsz": imgsz, "data": str(data.resolve())}))
        except StageError as exc:  # Ultralytics' failure is the baseline's, not the export's
            result = {"skipped": f"Ultralytics' {spec.format} export failed: {exc.detail}"}
        if " needs " in result.get("skipped", "") and spec.install:
            result["skipped"] += f" ({spec.install})"
        found = sorted(workdir.glob(spec.artifact))
        shared[spec.key()] = (result.get("skipped") or ("" if found else
                              f"Ultralytics' export wrote no file matching {spec.artifact} (see {log.name})"),
                              found[0] if found else None, log)
    skipped, path, log = shared[spec.key()]
    if skipped:
        return BaselineOutcome(target, command, skipped=skipped, log=str(log))
    _, layout = open_runner(path)  # told from the file once; the evaluator opens its own runner
    artifact = Artifact(name=f"ultralytics-{spec.format}-int8", target=target, variant="ultralytics-int8", path=path,
                        precision=spec.precision, layout=layout, status="measured", role=Role.BASELINE,
                        note=f"Ultralytics {ultralytics_version()} INT8 export (`{command}`)"
                             + (f"; {spec.note}" if spec.note else ""),
                        open_runner=lambda: open_runner(path)[0],
                        files=tuple(sorted(path.parent.glob(f"{path.stem}.*"))))  # OpenVINO: the .xml and its .bin
    return BaselineOutcome(target, command, artifact, log=str(log))
