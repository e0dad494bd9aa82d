"""What Ultralytics reads and which file it loads, made edgeq's: installed once, when edgeq first imports it
(`edgeq.env.offline_ultralytics`), for the whole process.

- Every YAML Ultralytics loads (`YAML.load`: the data.yaml inside `check_det_dataset`, which its trainer also
  calls; model YAMLs in `yaml_model_load`) goes through `edgeq.untrusted.safe_yaml`, so what it reads is what
  edgeq vetted, under the same limits, and never a second, unchecked parse of the user's file.
- Checkpoint names are never rewritten: `check_yolov5u_filename` turns `yolov5s.pt` / `yolov3.pt` (any path
  ending so, without a `u` in it) into `...u.pt`, which `attempt_download_asset` then loads from beside the
  user's file, a different model, or downloads. edgeq loads the file the user named. (Its mapping of packaged
  config names, `yolov5nu.yaml` -> `yolov5n.yaml`, is kept.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def harden(ultralytics_utils, checks) -> None:
    """Patch `ultralytics.utils.YAML.load` and `ultralytics.utils.checks.check_yolov5u_filename` (idempotent)."""
    yaml_class = ultralytics_utils.YAML
    if not getattr(yaml_class.load, "_edgeq", False):
        def load(cls, file: Any = "data.yaml", append_filename: bool = False) -> dict:
            return vetted_yaml(file, append_filename)

        load._edgeq = True
        yaml_class.load = classmethod(load)
    if not getattr(checks.check_yolov5u_filename, "_edgeq", False):
        renaming = checks.check_yolov5u_filename

        def keep_name(file: str, verbose: bool = True) -> str:
            """Checkpoints keep their name; packaged config names (yolov5nu.yaml -> yolov5n.yaml) still resolve."""
            return file if str(file).lower().endswith(".pt") else renaming(file, verbose)

        keep_name._edgeq = True
        checks.check_yolov5u_filename = keep_name


def vetted_yaml(file: Any, append_filename: bool = False) -> dict:
    """Ultralytics' `YAML.load` contract (a mapping; {} for an empty file; `yaml_file` added on request) on
    edgeq's loader."""
    from edgeq.untrusted.safe_yaml import load_mapping

    path = Path(str(file))
    if path.suffix.lower() not in (".yaml", ".yml"):
        raise ValueError(f"Not a YAML file: {file}")
    data = load_mapping(path, "YAML file")
    if append_filename:
        data["yaml_file"] = str(file)
    return data
