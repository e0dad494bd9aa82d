"""Open an artifact made anywhere (ours, `yolo export`, ...) for `edgeq eval`: pick a runner, find its head."""

from __future__ import annotations

from pathlib import Path

from edgeq.backend import families
from edgeq.data import Dataset
from edgeq.errors import EdgeqError
from edgeq.head import OUTPUT_NAME, HeadLayout, HeadSpec
from edgeq.runners import Runner


def open_any(path: Path, layout: HeadLayout, imgsz: int | None, head_json: Path | None,
             dataset: Dataset, trust_model: bool = False) -> tuple[Runner, HeadSpec, HeadLayout]:
    """A runner for the file, the head spec to decode its outputs with, and the layout of those outputs."""
    if not path.exists():
        raise EdgeqError(f"artifact '{path}' does not exist", "pass the path of an exported model")
    suffix = path.suffix.lower()
    if suffix == ".pt":
        from edgeq.model import load_detector
        from edgeq.runners.torch import TorchRunner

        detector = load_detector(path, imgsz, trust_model)
        return (TorchRunner(detector.module), detector.head,
                HeadLayout.SELECTED if detector.head.end2end else HeadLayout.PIXEL)
    if suffix == ".onnx":
        from edgeq.runners.onnxruntime import OnnxRuntimeRunner

        runner: Runner = OnnxRuntimeRunner(path)
    else:
        runner = next((r for b in families()
                       if (r := b.runner_for(path)) is not None), None)
        if runner is None:
            raise EdgeqError(f"no installed backend runs '{path.name}'",
                             "install the backend's extra (see `edgeq targets`) or pass a .onnx/.pt file")
    if imgsz is None:  # the artifact knows its input size
        with runner:
            imgsz = runner.input_shape[-1] if runner.input_shape else 640
    if head_json:
        head = HeadSpec.from_json(head_json)
    elif layout is HeadLayout.DETACHED:
        raise EdgeqError("a detached artifact needs its head parameters", "pass --head-json <artifact>-head.json")
    else:  # decoded output: nc from the output width; strides do not matter for decoded boxes
        with runner:
            import numpy as np

            out = runner.infer(np.zeros((1, 3, imgsz, imgsz), np.float32))
        if OUTPUT_NAME not in out and len(out) != 1:
            raise EdgeqError(f"'{path.name}' has outputs {list(out)}, not one decoded output",
                             "use --layout detached --head-json for per-scale outputs")
        decoded = out[OUTPUT_NAME] if OUTPUT_NAME in out else next(iter(out.values()))
        if decoded.ndim == 3 and decoded.shape[2] == 6 and decoded.shape[1] != 6:  # (1, k, 6): already selected
            layout = HeadLayout.SELECTED
        if layout is HeadLayout.SELECTED:
            if not dataset.names:
                raise EdgeqError(f"'{path.name}' outputs selected detections, which do not tell the class count",
                                 "pass --data with a data.yaml that names the classes")
            nc = len(dataset.names)
        else:
            nc = decoded.shape[1] - 4
        if dataset.names and len(dataset.names) != nc:
            raise EdgeqError(f"'{path.name}' predicts {nc} classes but the dataset has {len(dataset.names)}",
                             "evaluate with the dataset the model was trained on")
        head = HeadSpec(nc=nc, reg_max=16, strides=(8, 16, 32), imgsz=imgsz, names=dataset.names or
                        tuple(str(i) for i in range(nc)))
    return runner, head, layout
