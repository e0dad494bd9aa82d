"""Model intake: an Ultralytics detection checkpoint or model YAML -> FP32 ONNX body and full model.

We export only the body (input to the per-scale head convolutions) from PyTorch and append our own decode
head (`edgeq.head`), so every target sees the same named, detachable head whatever the Ultralytics version.
"""

from __future__ import annotations

import contextlib
import io
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from edgeq.errors import EdgeqError
from edgeq.head import INPUT_NAME, HeadLayout, HeadSpec, attach_head

ONNX_OPSET = 17  # accepted by onnx2tf, OpenVINO, ONNX Runtime and TensorRT 8.6-10.x alike
_MODEL_FIX = ("pass --model PATH to an Ultralytics detection checkpoint (.pt) or model YAML (YOLOv8, YOLO11, YOLO12, "
              "YOLO26, YOLOv10)")


@dataclass(frozen=True)
class HeadClass:
    """How edgeq places one Ultralytics head class: the module attributes holding each branch's box and class
    convolutions. Which branches a given checkpoint has is read from the module; reg_max, strides and nc too."""

    family: str  # for messages
    branches: dict[str, tuple[str, str]]


# The heads edgeq can place, as data. A head class not listed is refused with this list in the message.
HEAD_CLASSES = {
    "Detect": HeadClass("YOLOv8 / YOLO11 / YOLO12 / YOLO26", {"one2many": ("cv2", "cv3"),
                                                               "one2one": ("one2one_cv2", "one2one_cv3")}),
    "v10Detect": HeadClass("YOLOv10", {"one2many": ("cv2", "cv3"), "one2one": ("one2one_cv2", "one2one_cv3")}),
}
_ACTIVATIONS = ("SiLU", "ReLU", "ReLU6", "LeakyReLU", "Hardswish", "Sigmoid", "GELU", "Mish", "Tanh")


@dataclass
class Detector:
    """A loaded, BN-fused FP32 detector and what the decode head needs to know about it."""

    source: Path
    module: object  # ultralytics DetectionModel (torch.nn.Module), eval mode
    head: HeadSpec
    activations: dict[str, int]  # activation module types in the body, with counts
    trained: bool  # False for a model YAML: random weights, mAP is meaningless

    @property
    def main_activation(self) -> str:
        body = {k: v for k, v in self.activations.items() if k != "Sigmoid"}
        return max(body, key=body.get) if body else "none"


@dataclass(frozen=True)
class OnnxModels:
    body: Path  # images -> box_i, cls_i (per-scale logits)
    full: Path  # images -> output0, decode head attached in pixel units


DEFAULT_IMGSZ = 640


def load_detector(source: str | Path, imgsz: int | None = None, trust_model: bool = False,
                  head_branch: str | None = None) -> Detector:
    """Load and validate; every user mistake becomes a one-line EdgeqError. `source` is a path or a bare name as
    Ultralytics takes it (`yolo11n.yaml` -> its packaged config). Without `imgsz`, the size the checkpoint was
    trained at (else 640). Checkpoints load weights-only unless `trust_model`. `head_branch` picks one2one or
    one2many where the head has both (default: one2one, the NMS-free branch end-to-end heads are built to ship)."""
    if imgsz is not None:
        check_imgsz(imgsz)
    path = Path(source)
    suffix = path.suffix.lower()
    if suffix not in (".pt", ".yaml", ".yml"):
        raise EdgeqError(f"model '{source}' is neither a .pt checkpoint nor a model .yaml", _MODEL_FIX)
    bare = path.parent == Path(".") and not path.exists()
    if not path.exists() and not (bare and suffix != ".pt"):
        raise EdgeqError(*_missing_model(path, bare))
    from edgeq.env import offline_ultralytics

    offline_ultralytics()
    from ultralytics.nn import tasks

    quiet = contextlib.redirect_stdout(io.StringIO())
    if suffix == ".pt":
        ckpt = read_checkpoint(path, trust_model)
        model = ckpt.get("ema") or ckpt.get("model")
        import torch

        if not isinstance(model, torch.nn.Module):
            raise EdgeqError(f"'{path}' holds no model (keys: {', '.join(map(str, ckpt))[:80]})", _MODEL_FIX)
        model = model.float()
        trained = True
        if imgsz is None:
            trained_at = (ckpt.get("train_args") or {}).get("imgsz")
            imgsz = trained_at if isinstance(trained_at, int) and trained_at % 32 == 0 else DEFAULT_IMGSZ
    else:
        cfg = model_config(path, trust_model)
        task = tasks.guess_model_task(cfg)
        if task is None:  # a head Ultralytics' task guess does not know (RT-DETR's decoder, ...)
            _refuse_head(path, str(cfg.get("head", [[None, None, "?"]])[-1][2]))
        if task != "detect":
            raise EdgeqError(f"'{path}' describes a {task} model; edgeq exports detection models only", _MODEL_FIX)
        if not trust_model:
            from edgeq.untrusted.model_yaml import check_model_config

            cfg = check_model_config(cfg, str(path))
        try:
            with quiet:
                model = tasks.DetectionModel(cfg, verbose=False)
        except Exception as exc:  # a config that names valid layers but does not fit together
            raise EdgeqError(f"model YAML '{path}' does not build ({type(exc).__name__}: {_plain(_first(exc))})",
                             _MODEL_FIX) from None
        trained = False
        imgsz = imgsz or DEFAULT_IMGSZ
    head, branch = _detect_head(model, path, head_branch)
    head.end2end = branch == "one2one"  # Ultralytics' fuse keeps the selected branch and drops the other
    with quiet:
        model = (model.fuse(verbose=False) if hasattr(model, "fuse") else model).eval()
    strides = tuple(int(s) for s in head.stride.tolist())
    if imgsz % max(strides):
        raise EdgeqError(f"input size {imgsz} is not a multiple of the model's largest stride {max(strides)}",
                         f"use --imgsz {round(imgsz / max(strides)) * max(strides) or max(strides)}")
    names = getattr(model, "names", None) or {i: str(i) for i in range(head.nc)}
    names = tuple(names[i] for i in range(head.nc)) if isinstance(names, dict) else tuple(names)
    acts = Counter(type(m).__name__ for _, m in model.model[:-1].named_modules(remove_duplicate=False)
                   if type(m).__name__ in _ACTIVATIONS)  # Conv.default_act is one shared instance
    spec = HeadSpec(nc=int(head.nc), reg_max=int(head.reg_max), strides=strides, imgsz=imgsz, names=names,
                    branch=branch, end2end=branch == "one2one", max_det=int(getattr(head, "max_det", 300)),
                    head_class=type(head).__name__)
    return Detector(source=path, module=model.float().eval(), head=spec, activations=dict(acts), trained=trained)


def model_config(path: Path, trust_model: bool) -> dict:
    """The model YAML as a dict, read by edgeq's loader: a file the user named, or one of Ultralytics' packaged
    configs by bare name (`yolo11n.yaml`, read by Ultralytics' resolver, whose YAML reads are edgeq's loader too).
    The scale letter comes from the name, as Ultralytics takes it (`yolov8s.yaml` -> s)."""
    from ultralytics.nn import tasks

    from edgeq.untrusted.safe_yaml import load_mapping

    if path.is_file():
        cfg = load_mapping(path, "model YAML", _MODEL_FIX)
        cfg["scale"] = tasks.guess_model_scale(path)
        cfg["yaml_file"] = str(path)
    else:
        try:
            cfg = tasks.yaml_model_load(str(path))
        except FileNotFoundError:
            raise EdgeqError(f"model '{path}' is neither a file nor one of Ultralytics' packaged configs",
                             "pass the path of a model YAML, or a packaged name such as yolo11n.yaml, yolov8s.yaml "
                             "or yolo26n.yaml") from None
    if not isinstance(cfg.get("head"), list) or not cfg["head"] or not isinstance(cfg["head"][-1], list) \
            or len(cfg["head"][-1]) != 4:
        raise EdgeqError(f"model YAML '{path}' has no 'head:' list of [from, repeats, module, args] rows", _MODEL_FIX)
    return cfg


def _missing_model(path: Path, bare: bool) -> tuple[str, str]:
    from edgeq.env import offline_ultralytics

    offline_ultralytics()
    from ultralytics.utils.downloads import GITHUB_ASSETS_NAMES

    if bare and path.name in GITHUB_ASSETS_NAMES:
        return (f"'{path}' is not on disk, and edgeq downloads nothing",
                f"download it once where there is internet (e.g. `yolo predict model={path.name}`, or from "
                f"github.com/ultralytics/assets/releases) and pass its path with --model")
    return f"model file '{path}' does not exist", _MODEL_FIX


def read_checkpoint(path: Path, trust_model: bool) -> dict:
    """torch.load through Ultralytics' loader. By default weights-only against Ultralytics' allow-list of its
    own and torch's classes: a pickle that names anything else (os.system, a user's module) is refused before
    any of it runs. `trust_model` is the full unpickler, for checkpoints from a source the user trusts."""
    import torch
    from ultralytics.nn import tasks

    if not trust_model and not hasattr(torch.serialization, "get_unsafe_globals_in_checkpoint"):
        raise EdgeqError(f"torch {torch.__version__} cannot load checkpoints weights-only",
                         "install torch>=2.6, or pass --trust-model if you trust where the file came from")
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            ckpt, _ = tasks.torch_safe_load(str(path), safe_only=not trust_model)
    except Exception as exc:  # torch/pickle raise many types for a corrupt, foreign or refused file
        refused = _refused_globals(exc)
        if refused and not trust_model:
            raise EdgeqError(f"'{path}' needs {', '.join(refused)} to load, which is outside Ultralytics' "
                             "weights-only allow-list; nothing from the file was run",
                             "pass --trust-model only if you trust where the file came from") from None
        raise EdgeqError(f"could not read '{path}' as an Ultralytics checkpoint ({type(exc).__name__}: "
                         f"{_plain(_first(exc))})", _MODEL_FIX) from None
    if not isinstance(ckpt, dict):
        raise EdgeqError(f"'{path}' is not an Ultralytics checkpoint (it holds a {type(ckpt).__name__})", _MODEL_FIX)
    return ckpt


def _refused_globals(exc: BaseException) -> list[str]:
    """The globals torch's weights-only unpickler refused, from the error chain (empty if that was not why)."""
    import re

    found, refused = [], False
    while exc is not None:
        found += re.findall(r"\bGLOBAL ([\w.]+)", str(exc))  # torch names the refused global this way
        refused |= "outside the supported Ultralytics checkpoint format" in str(exc)
        exc = exc.__cause__ or exc.__context__
    return list(dict.fromkeys(found)) or (["classes"] if refused else [])


def _first(exc: BaseException) -> str:
    return str(exc).splitlines()[0][:120] if str(exc).strip() else "no detail"


def _plain(text: str) -> str:
    import re

    return re.sub(r"[^\x00-\x7f]+", "", text).strip()


def check_imgsz(imgsz: int) -> None:
    if imgsz <= 0 or imgsz % 32:
        suggestion = max(32, round(imgsz / 32) * 32)
        raise EdgeqError(f"input size {imgsz} is not a positive multiple of 32", f"use --imgsz {suggestion}")


def _detect_head(model, path: Path, requested: str | None):
    """The head module and the branch to export, or a one-line refusal naming what is supported."""
    head = model.model[-1] if hasattr(model, "model") else None
    kind = type(head).__name__ if head is not None else type(model).__name__
    if kind not in HEAD_CLASSES:
        _refuse_head(path, kind)
    present = [b for b, (box, cls) in HEAD_CLASSES[kind].branches.items()
               if getattr(head, box, None) is not None and getattr(head, cls, None) is not None]
    branch = requested or ("one2one" if "one2one" in present else "one2many")
    if branch not in present:
        raise EdgeqError(f"'{path}' has no {branch} branch (its {kind} head has {', '.join(present) or 'none'})",
                         f"use --head-branch {present[0]}" if present else _MODEL_FIX)
    return head, branch


def _refuse_head(path: Path, kind: str) -> None:
    task = {"Segment": "segmentation", "Pose": "pose", "OBB": "oriented-box", "Classify": "classification",
            "RTDETRDecoder": "RT-DETR"}.get(kind, kind)
    supported = ", ".join(f"{name} ({c.family})" for name, c in HEAD_CLASSES.items())
    raise EdgeqError(f"'{path}' is a {task} model (head {kind}), which edgeq cannot place; it exports the "
                     f"detection heads {supported}", _MODEL_FIX)


class _Body:
    """The Ultralytics graph up to and including the per-scale head convolutions, as a torch module."""

    def __new__(cls, model):
        import torch

        class Body(torch.nn.Module):
            def __init__(self, m):
                super().__init__()
                self.m = m

            def forward(self, x):
                layers, saved = self.m.model, []
                for layer in layers[:-1]:
                    if layer.f != -1:
                        x = saved[layer.f] if isinstance(layer.f, int) else [x if j == -1 else saved[j]
                                                                             for j in layer.f]
                    x = layer(x)
                    saved.append(x if layer.i in self.m.save else None)
                head = layers[-1]
                feats = [x if j == -1 else saved[j] for j in head.f]
                box_convs, cls_convs = (getattr(head, name) for name in self.branch)
                outs = []
                for i in range(head.nl):
                    outs += [box_convs[i](feats[i]), cls_convs[i](feats[i])]
                return tuple(outs)

        body = Body(model)
        head = model.model[-1]
        body.branch = HEAD_CLASSES[type(head).__name__].branches["one2one" if head.end2end else "one2many"]
        return body.eval()


def export_onnx(detector: Detector, out_dir: Path) -> OnnxModels:
    """Write `<stem>-body.onnx` and `<stem>-fp32.onnx` (static shapes, batch 1, opset 17)."""
    import warnings

    import onnx
    import torch

    out_dir.mkdir(parents=True, exist_ok=True)
    stem = detector.source.stem
    body_path, full_path = out_dir / f"{stem}-body.onnx", out_dir / f"{stem}-fp32.onnx"
    spec = detector.head
    dummy = torch.zeros(1, 3, spec.imgsz, spec.imgsz)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(_Body(detector.module), (dummy,), str(body_path), opset_version=ONNX_OPSET,
                          input_names=[INPUT_NAME], output_names=spec.body_outputs, dynamo=False,
                          do_constant_folding=True)
    import onnxslim

    # onnxslim folds the constant arithmetic the tracer leaves (C2f's chunk becomes a Slice with computed
    # ends), so every tensor gets a static shape that checkers, converters and DLA rules can read.
    body = onnx.shape_inference.infer_shapes(copy_batch_in_reshapes(onnxslim.slim(onnx.load(str(body_path)))))
    onnx.checker.check_model(body)
    onnx.save(body, str(body_path))
    onnx.save(attach_head(body, spec, HeadLayout.PIXEL), str(full_path))
    return OnnxModels(body=body_path, full=full_path)


def copy_batch_in_reshapes(model):
    """Reshape targets that spell the batch as a literal 1 (attention blocks' `view(B, ...)`, traced at batch 1)
    get 0 there, ONNX's "copy this dimension from the input". Nothing changes at batch 1, but every runtime can
    then re-plan the graph for another batch (OpenVINO's reshape, LiteRT's resize), which is how edgeq times
    throughput; a literal 1 would make batch 4 fail or silently fold four images into one."""
    import onnx
    from onnx import numpy_helper

    inferred = onnx.shape_inference.infer_shapes(model)
    dims = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
            for v in (*inferred.graph.input, *inferred.graph.value_info)}
    inits = {i.name: i for i in model.graph.initializer}
    copied: dict[str, str] = {}  # original target -> its batch-copying twin (targets are shared between nodes)
    for node in model.graph.node:
        if node.op_type != "Reshape" or node.input[1] not in inits:
            continue
        if any(a.name == "allowzero" and a.i for a in node.attribute):
            continue
        target = numpy_helper.to_array(inits[node.input[1]])
        if not (target.ndim == 1 and target.size and target[0] == 1 and dims.get(node.input[0], [])[:1] == [1]):
            continue
        if node.input[1] not in copied:
            twin = target.copy()
            twin[0] = 0
            copied[node.input[1]] = f"{node.input[1]}_copy_batch"
            model.graph.initializer.append(numpy_helper.from_array(twin, copied[node.input[1]]))
        node.input[1] = copied[node.input[1]]
    used = {name for node in model.graph.node for name in node.input}
    unused = [i for i in model.graph.initializer if i.name in copied and i.name not in used]
    for init in unused:
        model.graph.initializer.remove(init)
    return model
