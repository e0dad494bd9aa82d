"""Open an artifact made anywhere (ours, `yolo export`, ...) for `edgeq eval`: pick a runner, find its head.

The file is loaded and run once on a blank image before any evaluation, so a file its runtime refuses (garbage,
an ONNX whose external data points outside its folder, an IR with a missing or truncated .bin) is one line naming
it, and so is an --imgsz the artifact's static input does not take.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from edgeq.backend import families
from edgeq.data import Dataset
from edgeq.errors import EdgeqError
from edgeq.head import OUTPUT_NAME, HeadLayout, HeadSpec
from edgeq.runners import Runner


def open_any(path: Path, layout: HeadLayout | None, imgsz: int | None, head_json: Path | None,
             dataset: Dataset, trust_model: bool = False) -> tuple[Runner, HeadSpec, HeadLayout]:
    """A runner for the file, the head spec to decode its outputs with, and the layout of those outputs (None:
    told apart from the file: selected detections by their (1, k, 6) shape, boxes normalized to 0..1 by their
    range on a blank image, where pixel boxes reach the input size)."""
    if not path.exists():
        raise EdgeqError(f"artifact '{path}' does not exist", "pass the path of an exported model")
    suffix = path.suffix.lower()
    if suffix == ".pt":
        from edgeq.model import load_detector
        from edgeq.runners.torch import TorchRunner

        detector = load_detector(path, imgsz, trust_model)
        return (TorchRunner(detector.module), detector.head,
                HeadLayout.SELECTED if detector.head.end2end else HeadLayout.PIXEL)
    runner = runner_for_file(path)
    with loaded(runner, path):
        static = runner.input_shape[-1] if runner.input_shape and isinstance(runner.input_shape[-1], int) else None
    if imgsz is not None and static is not None and imgsz != static:
        raise EdgeqError(f"'{path.name}' takes {static}x{static} input, not --imgsz {imgsz}",
                         f"leave --imgsz out (or pass --imgsz {static})")
    imgsz = imgsz or static or 640
    if head_json:
        head = _head_from_json(head_json)
        if layout is None:  # per-scale outputs named as the head says: detached; else decoded, told below
            layout = _layout_beside_a_head(runner, path, head, imgsz)
        if layout is HeadLayout.DETACHED:
            return runner, head, layout
    elif layout is HeadLayout.DETACHED:
        raise EdgeqError("a detached artifact needs its head parameters", "pass --head-json <artifact>-head.json")
    else:  # decoded output: nc from the output width; strides do not matter for decoded boxes
        import numpy as np

        with loaded(runner, path):
            out = runner.infer(np.zeros((*(runner.input_shape or (1,))[:1], 3, imgsz, imgsz), np.float32))
        if OUTPUT_NAME not in out and len(out) != 1:
            raise EdgeqError(f"'{path.name}' has outputs {list(out)}, not one decoded output",
                             "use --layout detached --head-json for per-scale outputs")
        decoded = out[OUTPUT_NAME] if OUTPUT_NAME in out else next(iter(out.values()))
        if decoded.ndim != 3:
            raise EdgeqError(f"'{path.name}' outputs shape {tuple(decoded.shape)}, not (1, 4 + classes, anchors) or "
                             "(1, k, 6) detections", "evaluate a detector exported by edgeq or `yolo export`")
        if decoded.shape[2] == 6 and decoded.shape[1] != 6:  # (1, k, 6): already selected
            layout = HeadLayout.SELECTED
        elif layout is None:  # on a blank image the anchors still span the input: pixel boxes reach imgsz
            layout = HeadLayout.NORMALIZED if float(np.abs(decoded[:, :4]).max()) <= 2.0 else HeadLayout.PIXEL
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
        if OUTPUT_NAME not in out:  # one decoded output under another name (a LiteRT signature's output_0)
            runner = _OneOutput(runner)
    return runner, head, layout


def _layout_beside_a_head(runner: Runner, path: Path, head: HeadSpec, imgsz: int) -> HeadLayout:
    """--head-json without --layout: the head's per-scale outputs by name mean a detached file (as edgeq's kits
    ship them); one decoded output is told apart as without a head (selected by shape, normalized by range)."""
    import numpy as np

    with loaded(runner, path):
        out = runner.infer(np.zeros((*(runner.input_shape or (1,))[:1], 3, imgsz, imgsz), np.float32))
    if set(head.body_outputs) <= set(out):
        return HeadLayout.DETACHED
    if OUTPUT_NAME not in out:
        raise EdgeqError(f"'{path.name}' has outputs {sorted(out)}: neither the head's per-scale outputs "
                         f"({', '.join(head.body_outputs[:2])}, ...) nor one decoded '{OUTPUT_NAME}'",
                         "pass --layout, or the head description exported with this file")
    decoded = out[OUTPUT_NAME]
    if decoded.ndim == 3 and decoded.shape[2] == 6 and decoded.shape[1] != 6:
        return HeadLayout.SELECTED
    return HeadLayout.NORMALIZED if float(np.abs(decoded[:, :4]).max()) <= 2.0 else HeadLayout.PIXEL


class _OneOutput(Runner):
    """A runner whose single decoded output gets the canonical name the decoder reads (`output0`)."""

    def __init__(self, inner: Runner) -> None:
        super().__init__(inner.path)
        self.inner = inner

    def load(self) -> None:
        self.inner.load()
        self.runtime, self.input_shape = self.inner.runtime, self.inner.input_shape

    def infer(self, images):
        (value,) = self.inner.infer(images).values()
        return {OUTPUT_NAME: value}

    def resize(self, batch: int) -> None:
        self.inner.resize(batch)
        self.input_shape = self.inner.input_shape

    def close(self) -> None:
        self.inner.close()


def runner_for_file(path: Path) -> Runner:
    """A runner for an ONNX file or any file an installed backend runs (not loaded yet)."""
    if path.suffix.lower() == ".onnx":
        from edgeq.runners.onnxruntime import OnnxRuntimeRunner

        return OnnxRuntimeRunner(path)
    runner = next((r for b in families() if (r := b.runner_for(path)) is not None), None)
    if runner is None:
        raise EdgeqError(f"no installed backend runs '{path.name}'",
                         "install the backend's extra (see `edgeq targets`) or pass a .onnx/.pt file")
    return runner


@contextlib.contextmanager
def loaded(runner: Runner, path: Path) -> Iterator[None]:
    """The runner loaded for the block; its runtime refusing the file is one line naming it (the runtimes raise
    their own types: onnxruntime's Fail / InvalidProtobuf, OpenVINO's RuntimeError, ...)."""
    try:
        with runner:
            yield
    except EdgeqError:
        raise
    except Exception as exc:  # noqa: BLE001  (a third-party loader on a user's file)
        detail = " ".join(str(exc).split())[:200] or "no detail"
        raise EdgeqError(f"'{path}' cannot be loaded or run ({type(exc).__name__}: {detail})",
                         "check that the file is complete (an IR needs its .bin, an ONNX its external data "
                         "inside its folder) and made for this runtime; re-export it") from None


def _head_from_json(path: Path) -> HeadSpec:
    import json

    try:
        return HeadSpec.from_json(path)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        why = "not JSON" if isinstance(exc, json.JSONDecodeError) else f"{type(exc).__name__}: {exc}"
        raise EdgeqError(f"--head-json '{path}' is not a head description ({why})",
                         "pass the <artifact>-head.json edgeq wrote beside the artifact") from None
