"""Model YAMLs are programs to Ultralytics: `parse_model` runs `eval()` on the `activation:` string, looks every
module name up in its own module namespace (`globals()[name]`: any function there, `torch_safe_load` or
`check_requirements` included, would be called with the row's args) or in `torch.nn` / `torchvision.ops`, and
`ast.literal_eval`s string args. So edgeq checks the config before Ultralytics sees it: module names from an
allow-list of plain layers, args that are literals, bounded sizes, and an activation parsed (never evaluated)
into an allow-listed `torch.nn` class with literal arguments, which Ultralytics is then handed re-written by
edgeq. `--trust-model` skips the check, for files from a source the user trusts.

The allow-list is the layers of Ultralytics' detection configs (YOLOv3 to YOLO26, RT-DETR) and the heads edgeq
names when it refuses one. Left out on purpose: `TorchVision` (builds a torchvision model by name and downloads
its weights) and the open-vocabulary layers that need a text model (`WorldDetect`, `YOLOE*`, `C2fAttn`,
`ImagePoolingAttn`, `LRPCHead`).
"""

from __future__ import annotations

import ast
import math
import re
from typing import Any

from edgeq.errors import EdgeqError

LAYERS = frozenset({
    "A2C2f", "AConv", "ADown", "AIFI", "Bottleneck", "BottleneckCSP", "C1", "C2", "C2PSA", "C2f", "C2fCIB", "C2fPSA",
    "C3", "C3Ghost", "C3TR", "C3k2", "C3x", "CBFuse", "CBLinear", "Concat", "Conv", "Conv2", "ConvTranspose",
    "DWConv", "DWConvTranspose2d", "ELAN1", "Focus", "GhostBottleneck", "GhostConv", "HGBlock", "HGStem", "Index",
    "PSA", "RepC3", "RepConv", "RepNCSPELAN4", "RepVGGDW", "ResNetLayer", "SCDown", "SPP", "SPPELAN", "SPPF",
})
HEADS = frozenset({"Detect", "v10Detect", "Segment", "Segment26", "Pose", "Pose26", "OBB", "OBB26", "Classify",
                   "RTDETRDecoder", "SemanticSegment", "Depth"})
TORCH_LAYERS = frozenset({"Upsample", "Identity", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d", "ZeroPad2d",
                          "ConvTranspose2d", "Conv2d", "BatchNorm2d", "Dropout"})
ACTIVATIONS = frozenset({"SiLU", "ReLU", "ReLU6", "LeakyReLU", "Hardswish", "Hardsigmoid", "Sigmoid", "Tanh", "GELU",
                         "Mish", "ELU", "CELU", "SELU", "PReLU", "Identity"})
# string args parse_model resolves itself: literal names, the config's `nc` and `kpt_shape`, nn.Upsample's modes
STRING_ARGS = frozenset({"None", "True", "False", "nc", "kpt_shape", "nearest", "bilinear", "bicubic", "area",
                         "nearest-exact"})

MAX_ROWS = 512
MAX_REPEATS = 64
MAX_INT = 1 << 16  # channels, kernels, strides, counts
MAX_CLASSES = 10_000
MAX_ACTIVATION_CHARS = 200
_KEYWORD = re.compile(r"[a-z_][a-z0-9_]{0,31}$")

FIX = ("use Ultralytics' layer names with literal arguments (its own configs are such files), or pass "
       "--trust-model if you trust where the file came from")


def check_model_config(cfg: dict[str, Any], source: str) -> dict[str, Any]:
    """The config as Ultralytics may build it: refused in one line naming the row and value otherwise. The
    returned copy's `activation` is edgeq's own spelling of the parsed call (`nn.LeakyReLU(0.1)`)."""
    def refuse(problem: str) -> None:
        raise EdgeqError(f"model YAML '{source}': {problem}; edgeq builds only listed layers with literal "
                         "arguments from a YAML (nothing in it is evaluated)", FIX)

    if not isinstance(cfg, dict):
        refuse(f"it holds a {type(cfg).__name__}, not a mapping")
    checked = dict(cfg)
    nc = cfg.get("nc")
    if nc is not None and not (_is_int(nc) and 1 <= nc <= MAX_CLASSES):
        refuse(f"nc: {nc!r} is not a class count 1..{MAX_CLASSES}")
    for key in ("depth_multiple", "width_multiple"):
        if key in cfg and not (_is_number(cfg[key]) and 0 < cfg[key] <= 4):
            refuse(f"{key}: {cfg[key]!r} is not a number in (0, 4]")
    if "reg_max" in cfg and not (_is_int(cfg["reg_max"]) and 1 <= cfg["reg_max"] <= 64):
        refuse(f"reg_max: {cfg['reg_max']!r} is not an integer 1..64")
    if "end2end" in cfg and not isinstance(cfg["end2end"], (bool, type(None))):
        refuse(f"end2end: {cfg['end2end']!r} is not true or false")
    _check_scales(cfg.get("scales"), refuse)
    if cfg.get("activation"):
        checked["activation"] = activation_call(cfg["activation"], refuse)
    rows = []
    for section in ("backbone", "head"):
        if not isinstance(cfg.get(section), list) or not cfg[section]:
            refuse(f"'{section}:' is not a list of layers")
        rows += [(section, i, row) for i, row in enumerate(cfg[section])]
    if len(rows) > MAX_ROWS:
        refuse(f"{len(rows)} layers, over {MAX_ROWS}")
    for number, (section, i, row) in enumerate(rows):
        _check_row(row, f"{section}[{i}]", number, refuse)
    return checked


def activation_call(spec: Any, refuse) -> str:
    """`nn.<Name>(<literals>)` or `torch.nn.<Name>(...)` with Name allow-listed, parsed with `ast` (never
    evaluated), re-written by edgeq from the parsed parts."""
    if not isinstance(spec, str) or len(spec) > MAX_ACTIVATION_CHARS:
        refuse(f"activation: {str(spec)[:60]!r} is not a short 'nn.SiLU()'-style call")
    try:
        call = ast.parse(spec.strip(), mode="eval").body
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        call = None
    func = call.func if isinstance(call, ast.Call) else None
    owner = func.value if isinstance(func, ast.Attribute) else None
    named_nn = isinstance(owner, ast.Name) and owner.id == "nn" or (
        isinstance(owner, ast.Attribute) and owner.attr == "nn" and isinstance(owner.value, ast.Name)
        and owner.value.id == "torch")
    if not (named_nn and func.attr in ACTIVATIONS):
        refuse(f"activation: {spec[:80]!r} is not one of nn.{', nn.'.join(sorted(ACTIVATIONS))} called with "
               "literal arguments")
    args = [_literal(a) for a in call.args]
    kwargs = {k.arg: _literal(k.value) for k in call.keywords}
    if any(a is _NOT_LITERAL for a in args) or any(v is _NOT_LITERAL for v in kwargs.values()) or \
            any(k is None or not _KEYWORD.match(k) for k in kwargs):
        refuse(f"activation: {spec[:80]!r} has an argument that is not a plain number, boolean or word")
    spelled = [repr(a) for a in args] + [f"{k}={v!r}" for k, v in kwargs.items()]
    return f"nn.{func.attr}({', '.join(spelled)})"


_NOT_LITERAL = object()


def _literal(node: ast.expr) -> Any:
    """A number (signed), boolean, None or short word, else _NOT_LITERAL."""
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        value = _literal(node.operand)
        if not _is_number(value):
            return _NOT_LITERAL
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.Constant):
        value = node.value
        if value is None or isinstance(value, bool) or (_is_number(value) and abs(value) <= MAX_INT):
            return value
        if isinstance(value, str) and _KEYWORD.match(value):
            return value
    return _NOT_LITERAL


def _check_scales(scales: Any, refuse) -> None:
    if scales is None:
        return
    if not isinstance(scales, dict) or not scales:
        refuse("'scales:' is not a mapping of scale letters to [depth, width, max_channels]")
    for name, value in scales.items():
        if not (isinstance(name, str) and len(name) <= 8 and isinstance(value, list) and len(value) == 3
                and all(_is_number(v) for v in value) and 0 < value[0] <= 4 and 0 < value[1] <= 4
                and 0 < value[2] <= MAX_INT):
            refuse(f"scales: {name!r}: {value!r} is not [depth (0, 4], width (0, 4], max_channels]")


def _check_row(row: Any, where: str, number: int, refuse) -> None:
    if not (isinstance(row, list) and len(row) == 4):
        refuse(f"{where} is not [from, repeats, module, args]")
    source, repeats, module, args = row
    sources = source if isinstance(source, list) else [source]
    if not sources or not all(_is_int(s) and (s == -1 or -number <= s < number) for s in sources):
        refuse(f"{where}: from {source!r} does not name earlier layers")
    if not (_is_int(repeats) and 1 <= repeats <= MAX_REPEATS):
        refuse(f"{where}: repeats {repeats!r} is not an integer 1..{MAX_REPEATS}")
    if not isinstance(module, str) or not (module in LAYERS or module in HEADS or (
            module.startswith("nn.") and module[3:] in TORCH_LAYERS | ACTIVATIONS)):
        refuse(f"{where}: module {str(module)[:60]!r} is not a listed layer (Ultralytics' own, or "
               f"nn.{', nn.'.join(sorted(TORCH_LAYERS))})")
    if not isinstance(args, list) or len(args) > 16:
        refuse(f"{where}: args {str(args)[:60]!r} is not a list of literal arguments")
    for arg in args:
        if not _plain_arg(arg, depth=0):
            refuse(f"{where}: argument {str(arg)[:60]!r} is not a number, boolean, null, list of those, or one of "
                   f"{', '.join(sorted(STRING_ARGS))}")


def _plain_arg(value: Any, depth: int) -> bool:
    if value is None or isinstance(value, bool):
        return True
    if _is_number(value):
        return abs(value) <= MAX_INT
    if isinstance(value, str):
        return value in STRING_ARGS
    if isinstance(value, list) and depth < 2 and len(value) <= 16:
        return all(_plain_arg(v, depth + 1) for v in value)
    return False


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (_is_int(value) or isinstance(value, float)) and math.isfinite(value)
