"""Worker script (edgeq's worker protocol, in edgeq's own interpreter): one Ultralytics INT8 export.

Run apart from edgeq's process because Ultralytics' exporter changes process-wide state (its settings, logging,
torch's defaults) and may try to install what a format needs; here its `check_requirements` is replaced before the
exporter imports it, so a missing package ends the export with "needs X" instead of a pip run or a traceback. The
checkpoint is read by edgeq's own loader (weights-only unless the user trusts it), as for the main run.
"""

from pathlib import Path

from edgeq_worker import log


class _Missing(Exception):
    """A package the format needs is absent (offline: never installed at run time)."""


def _refuse_missing(requirements=(), exclude=(), install=True, cmds="", constrain=()):
    """Ultralytics' check_requirements, offline: True when every requirement is met, else _Missing naming them."""
    from importlib.metadata import PackageNotFoundError, version

    from packaging.requirements import InvalidRequirement, Requirement

    wanted = [requirements] if isinstance(requirements, (str, Path)) else list(requirements)
    missing = []
    for text in wanted:
        if isinstance(text, Path) or str(text).endswith(".txt"):
            continue  # Ultralytics' own requirements file: edgeq's install already holds it
        try:
            requirement = Requirement(str(text))
        except InvalidRequirement:
            continue
        if requirement.name in exclude:
            continue
        try:
            installed = version(requirement.name)
        except PackageNotFoundError:
            missing.append(str(text))
            continue
        if requirement.specifier and not requirement.specifier.contains(installed, prereleases=True):
            missing.append(f"{text} (installed: {installed})")
    if missing:
        raise _Missing(", ".join(missing))
    return True


def run(job):
    from edgeq.env import importable, offline_ultralytics

    # what the format imports, looked up here, in the interpreter that exports (Ultralytics would fail later, on
    # the device or deep in the exporter, with a message that does not say what is missing)
    absent = [m for m in job.get("needs_modules", []) if not importable(m)]
    if absent:
        return {"skipped": f"Ultralytics' {job['format']} export needs {', '.join(absent)}, not installed in "
                           f"the interpreter that runs it"}

    offline_ultralytics()
    import ultralytics.utils.checks as checks

    checks.check_requirements = _refuse_missing  # before the exporter and its helpers import it by name
    import torch
    from ultralytics.cfg import DEFAULT_CFG_DICT
    from ultralytics.engine.exporter import Exporter
    from ultralytics.nn.tasks import guess_model_task

    from edgeq.model import read_checkpoint

    checkpoint = read_checkpoint(Path(job["checkpoint"]), job["trust_model"])
    model = (checkpoint.get("ema") or checkpoint["model"]).float()
    # what Ultralytics' own loader (attempt_load_one_weight) attaches to a checkpoint's model
    model.args = {**DEFAULT_CFG_DICT, **(checkpoint.get("train_args") or {})}
    model.task = getattr(model, "task", guess_model_task(model))
    if not hasattr(model, "stride"):
        model.stride = torch.tensor([32.0])
    model.pt_path = job["named_as"]  # Ultralytics writes its files beside this name: the run's own folder
    overrides = {"mode": "export", "format": job["format"], "quantize": 8, "imgsz": job["imgsz"], "batch": 1,
                 "data": job["data"], "split": "train", "device": "cpu", "verbose": False, **job["args"]}
    log(f"Ultralytics export: {overrides}")
    try:
        exported = Exporter(overrides=overrides)(model=model)
    except _Missing as exc:
        return {"skipped": f"Ultralytics' {job['format']} export needs {exc}"}
    except ModuleNotFoundError as exc:
        return {"skipped": f"Ultralytics' {job['format']} export needs the module {exc.name}"}
    return {"exported": str(exported)}
