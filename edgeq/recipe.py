"""Recipes: YAML per device, `extends:` another recipe, validated by typed models.

An unknown key is an error naming its dotted path (`calibration.methd`), and `--set key.sub=value` edits the
merged recipe before validation, so the CLI and the YAML share one schema.
"""

from __future__ import annotations

import math
import sys
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator

from edgeq.errors import EdgeqError
from edgeq.untrusted.safe_yaml import load_mapping, load_text


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class CalibrationConfig(_Strict):
    images: int = Field(300, ge=1, description="calibration images, subsampled deterministically")
    split: str = "train"
    seed: int = 0
    # default: the target quantizer's own; auto: each method the target offers, emulated, the lowest output
    # error wins; or a method by name (`edgeq targets` lists what each target offers)
    method: Literal["default", "auto", "minmax", "percentile-99.99", "percentile-99.999", "entropy", "mse"] = "default"
    allow_overlap: bool = Field(False, description="accept calibration images that are also evaluation images (by "
                                "content); refused by default, since figures scored on them look better than a "
                                "deployment will see")


class AnalysisConfig(_Strict):
    """`edgeq analyze` and the search's ranking: one layer quantized at a time under the target's scheme."""

    range_images: int = Field(64, ge=1, description="calibration images the activation ranges are taken from")
    metric_images: int = Field(16, ge=1, description="calibration images the MSE/SNR/cosine are measured on")
    map_layers: int = Field(8, ge=0, description="top layers (by the cheap metrics) also scored by mAP")
    map_images: int = Field(50, ge=1, description="evaluation images for those mAP figures")
    toolkit_images: int = Field(2, ge=0, description="calibration images the target's own toolkit measures its "
                                "per-layer error on, where it has such a tool (rknn-toolkit2's accuracy_analysis); "
                                "0: skip it")


class SearchConfig(_Strict):
    """The mixed-precision search `--max-drop` runs when the default INT8 artifact is over budget."""

    enabled: bool = True  # off: --max-drop only fails the export, as before
    max_layers: int = Field(16, ge=1, description="stop when more layers than this would be kept float")


class EvaluationConfig(_Strict):
    images: int = Field(300, ge=1, description="evaluation images, subsampled deterministically")
    split: str = "val"
    seed: int = 0
    conf: float = Field(0.001, gt=0, lt=1)
    iou: float = Field(0.7, gt=0, le=1)
    deploy_conf: float = Field(0.25, gt=0, lt=1, description="a deployment's fixed score threshold (Ultralytics' "
                               "predict default): precision, recall and F1 are reported at it")
    latency_runs: int = Field(50, ge=0, description="timed rounds per artifact and batch (0: no timing)")
    warmup_runs: int = Field(5, ge=0)
    # batch sizes timed for throughput where the target's runtime runs here (timed interleaved); 1 is the
    # latency column of the report
    batches: list[Annotated[int, Field(ge=1, le=64)]] = Field(default_factory=lambda: [1, 4, 8], min_length=1)


class Recipe(_Strict):
    description: str = ""
    target: str
    model: str | None = None  # None: the embedded demo detector ("demo:relu6": its ReLU6 twin)
    data: str | None = None  # None: the embedded synthetic dataset
    imgsz: int | None = None  # None: the size the checkpoint was trained at, else 640
    head_branch: Literal["one2one", "one2many"] | None = None  # None: one2one where the head has it (NMS-free)
    batch: int = Field(1, ge=1, le=64, description="static batch of the deployable artifacts")
    calibration: CalibrationConfig = CalibrationConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    analysis: AnalysisConfig = AnalysisConfig()
    search: SearchConfig = SearchConfig()
    options: dict[str, Any] = {}  # validated by the target's backend (`options.<key>` in errors)
    # the accuracy budget: mAP50-95 points the deployable INT8 artifact may lose, or a share of what the default
    # PTQ artifact loses ("50%": win back at least half); over it, the search starts (exit 3 if no step is within)
    max_drop: float | str | None = Field(None, description="mAP50-95 points, or N% of the default INT8 loss")
    keep_float: list[str] = []  # layers (ONNX node names) kept in the target's higher precision
    # an image that cannot be decoded or is truncated: refuse the run naming it, or skip it (counted in the report)
    bad_images: Literal["refuse", "skip"] = "refuse"
    _sources: tuple[Path, ...] = PrivateAttr(default=())  # the recipe files read, extends: included

    @property
    def sources(self) -> tuple[Path, ...]:
        """The recipe files this recipe was read from (an output folder must not hold them)."""
        return self._sources

    @field_validator("max_drop")
    @classmethod
    def _budget(cls, value: float | str | None) -> float | str | None:
        if isinstance(value, str):
            text = value.strip()
            number = text.removesuffix("%")
            try:
                amount = float(number)
            except ValueError:
                amount = math.nan
            if not math.isfinite(amount):
                raise ValueError(f"'{value}' is neither points (0.5) nor a share of the default loss (50%)")
            if text.endswith("%"):
                if not 0 <= amount <= 100:
                    raise ValueError(f"'{value}': a share of the default loss is 0% to 100%")
                return f"{amount:g}%"
            value = amount
        if value is not None and not math.isfinite(value):
            raise ValueError(f"{value} is not a number of points: give the mAP50-95 points the INT8 artifact may lose")
        if value is not None and value < 0:
            raise ValueError(f"{value} is negative: give the mAP50-95 points the INT8 artifact may lose")
        return value

    def budget(self, default_drop: float) -> float | None:
        """max_drop in points, for an export whose default INT8 artifact loses `default_drop`."""
        if isinstance(self.max_drop, str):
            return round(max(default_drop, 0.0) * float(self.max_drop.removesuffix("%")) / 100.0, 3)
        return self.max_drop


def available() -> dict[str, Path]:
    """Recipes shipped with edgeq, by name (they install as package data, so names work after `pip install .`)."""
    folder = resources.files("recipes")
    return {Path(p.name).stem: Path(str(p)) for p in folder.iterdir() if p.name.endswith(".yaml")}


def _read(name_or_path: str, chain: tuple[Path, ...] = (), sources: list[Path] | None = None) -> dict[str, Any]:
    """A recipe by name or path with its `extends:` chain merged; `sources` collects the files read."""
    path = Path(name_or_path)
    if not (path.suffix in (".yaml", ".yml") and path.exists()):
        shipped = available()
        if name_or_path not in shipped:
            raise EdgeqError(f"unknown recipe '{name_or_path}'",
                             f"use a recipe file path or one of: {', '.join(sorted(shipped))} (`edgeq recipes`)")
        path = shipped[name_or_path]
    real = path.resolve()
    if real in chain:
        raise EdgeqError(f"recipe '{path}' extends itself ({' -> '.join(str(p) for p in (*chain, real))})",
                         "break the extends: cycle")
    if sources is not None:
        sources.append(real)
    data = load_mapping(path, "recipe", "write the recipe as 'key: value' YAML lines")
    renamed = data.pop("renamed_to", None)
    if isinstance(renamed, str):  # an old name kept as an alias: one line says the new one, then it is read
        print(f"edgeq: note: recipe '{name_or_path}' is now '{renamed}' ({data.get('why', 'renamed')})",
              file=sys.stderr)
        return _read(renamed, (*chain, real), sources)
    parent = data.pop("extends", None)
    if parent is not None and not isinstance(parent, str):
        raise EdgeqError(f"recipe '{path}': extends: {parent!r} is not a recipe name or path",
                         "write one recipe: a name `edgeq recipes` lists, or a path such as 'extends: base.yaml'")
    if parent:
        beside = path.parent / parent
        base = parent if Path(parent).is_absolute() or not beside.exists() else str(beside)
        return _merge(_read(base, (*chain, real), sources), data)
    return data


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        merged[key] = _merge(merged[key], value) if isinstance(value, dict) and isinstance(merged.get(key), dict) \
            else value
    return merged


def apply_sets(data: dict[str, Any], assignments: list[str]) -> dict[str, Any]:
    """`--set calibration.images=100`: values parse as YAML scalars (numbers, booleans, lists)."""
    for item in assignments:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise EdgeqError(f"--set '{item}' is not key=value", "write e.g. --set calibration.images=100")
        node = data
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise EdgeqError(f"--set '{item}': '{part}' is not a section", "set a key inside a section")
        node[leaf] = load_text(raw, f"--set '{item}': the value",
                               "write a plain value, e.g. --set calibration.images=100")
    return data


def schema_keys(model: type[BaseModel], prefix: str = "") -> dict[str, tuple[str, Any]]:
    """Every settable key of a recipe model, dotted, with its type and default (what `--schema` prints)."""
    keys: dict[str, tuple[str, Any]] = {}
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            keys.update(schema_keys(annotation, f"{prefix}{name}."))
            continue
        default = field.default_factory() if field.default_factory else \
            "(required)" if field.is_required() else field.default
        keys[f"{prefix}{name}"] = (_type_name(annotation), default)
    return keys


def _type_name(annotation: Any) -> str:
    from typing import Literal, Union, get_args, get_origin

    origin, args = get_origin(annotation), get_args(annotation)
    if annotation is type(None):
        return "null"
    if origin is Literal:
        return "one of " + ", ".join(map(str, args))
    if origin is Union or type(annotation).__name__ == "UnionType":
        return " or ".join(_type_name(a) for a in args)
    if origin is list:
        return f"list of {_type_name(args[0])}" if args else "list"
    return getattr(annotation, "__name__", str(annotation))


def describe_validation_error(exc: ValidationError, prefix: str = "",
                              model: type[BaseModel] = Recipe, target: str | None = None) -> EdgeqError:
    """One line for the first problem; an unknown key gets its closest valid spelling."""
    import difflib

    err = exc.errors()[0]
    where = prefix + ".".join(str(p) for p in err["loc"])
    if err["type"] == "extra_forbidden":
        known = list(schema_keys(model, prefix))
        close = difflib.get_close_matches(where, known, n=1, cutoff=0.6)
        schema = f"`edgeq recipes --schema{' --target ' + target if target else ''}` lists every key"
        return EdgeqError(f"unknown recipe key '{where}'",
                          f"did you mean '{close[0]}'? ({schema})" if close else f"check the spelling: {schema}")
    if err["type"] == "missing":
        return EdgeqError(f"recipe key '{where}' is required", f"add '{where}:' to the recipe or pass it on the CLI")
    return EdgeqError(f"recipe key '{where}': {err['msg']}", "correct the value")


def load_recipe(source: str | None, target: str | None = None, overrides: dict[str, Any] | None = None,
                sets: list[str] | None = None, lists: dict[str, list[str] | None] | None = None) -> Recipe:
    """Resolve a recipe (name or path) or a bare target, then CLI overrides (`lists`: values taken as given, not
    parsed as YAML) and `--set` edits."""
    sources: list[Path] = []
    data = _read(source, sources=sources) if source else {}
    if target:
        data["target"] = target
    for key, value in (overrides or {}).items():
        if value is not None:
            apply_sets(data, [f"{key}={value}"]) if "." in key else data.__setitem__(key, value)
    for key, value in (lists or {}).items():
        if value is not None:
            data[key] = value
    apply_sets(data, sets or [])
    if "target" not in data:
        raise EdgeqError("no target given", "pass --target T or --recipe R (see `edgeq targets`, `edgeq recipes`)")
    _refuse_non_finite(data)
    try:
        recipe = Recipe.model_validate(data)
    except ValidationError as exc:
        raise describe_validation_error(exc) from None
    recipe._sources = tuple(sources)
    return recipe


def _refuse_non_finite(data: Any, where: str = "") -> None:
    """No recipe value is NaN or infinite (`options.*` too, which the backends validate): a NaN budget or
    threshold compares false with everything and would pass every check it should fail."""
    if isinstance(data, dict):
        for key, value in data.items():
            _refuse_non_finite(value, f"{where}.{key}" if where else str(key))
    elif isinstance(data, list):
        for i, value in enumerate(data):
            _refuse_non_finite(value, f"{where}[{i}]")
    elif isinstance(data, float) and not math.isfinite(data):
        raise EdgeqError(f"recipe key '{where}' is {data}", "give a finite number")
