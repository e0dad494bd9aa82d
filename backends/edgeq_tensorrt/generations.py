"""TensorRT generations (10: weakly typed, JetPack 6; 11: strongly typed, JetPack 7) and the Jetsons they run on.

One export emits both generations (`options.tensorrt`: 10, 11 or both), each in its own subfolder with its own
build script, because TensorRT 11.0 removed what the 10.x builds rely on (the INT8/FP16 builder flags, the
calibrator, precision constraints) while JetPack 6 (TensorRT 10.3) stays widespread. The facts are data
(generations.yaml): which trtexec flags each generation accepts, which TensorRT versions build each engine
kind, which Jetson has a DLA. The build scripts read the device's TensorRT version against the same ranges.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

import yaml

from edgeq.plugin import EdgeqError

DATA = Path(__file__).parent / "generations.yaml"
GENERATIONS = ("10", "11")


@dataclass(frozen=True)
class VersionRange:
    low: tuple[int, ...]
    high: tuple[int, ...]
    text: str  # "11.4.1-11.x", for messages

    def contains(self, version: str) -> bool:
        return self.low <= parse_version(version) <= self.high


@dataclass(frozen=True)
class Generation:
    name: str  # "10" or "11"
    folder: str  # subfolder of the target's folder its files go to
    jetpack: str
    trtexec_accepts: frozenset[str]
    trtexec_removed: frozenset[str]
    python_removed: tuple[str, ...]
    dla: VersionRange
    gpu: VersionRange

    @property
    def label(self) -> str:
        return f"TensorRT {self.name}.x"

    def versions(self, dla: bool) -> VersionRange:
        return self.dla if dla else self.gpu


@dataclass(frozen=True)
class Jetson:
    key: str
    name: str
    dla_cores: int
    dla_generations: tuple[str, ...]
    gpu_generations: tuple[str, ...]


def parse_version(version: str) -> tuple[int, ...]:
    """'11.4.1' -> (11, 4, 1); missing parts are 0."""
    try:
        parts = tuple(int(p) for p in str(version).strip().split(".")[:3])
    except ValueError:
        raise EdgeqError(f"TensorRT version '{version}' is not MAJOR.MINOR[.PATCH]", "write it like 10.3 or 11.4.1")
    return parts + (0,) * (3 - len(parts))


def _range(data: dict) -> VersionRange:
    high = data["max"].replace(".99", ".x")
    return VersionRange(parse_version(data["min"]), parse_version(data["max"]), f"{data['min']}-{high}")


@cache
def generations() -> dict[str, Generation]:
    data = yaml.safe_load(DATA.read_text())["generations"]
    return {name: Generation(name=name, folder=g["folder"], jetpack=g["jetpack"],
                             trtexec_accepts=frozenset(g["trtexec_accepts"]),
                             trtexec_removed=frozenset(g.get("trtexec_removed", ())),
                             python_removed=tuple(g.get("python_removed", ())),
                             dla=_range(g["dla_versions"]), gpu=_range(g["gpu_versions"]))
            for name, g in data.items()}


@cache
def jetsons() -> dict[str, Jetson]:
    data = yaml.safe_load(DATA.read_text())["jetsons"]
    return {key: Jetson(key=key, name=j["name"], dla_cores=j["dla_cores"],
                        dla_generations=tuple(j["dla_generations"]), gpu_generations=tuple(j["gpu_generations"]))
            for key, j in data.items()}


def selected(option: str) -> tuple[Generation, ...]:
    """`options.tensorrt` (10, 11 or both) -> the generations to emit, 10 first."""
    names = GENERATIONS if option == "both" else (option,)
    return tuple(generations()[n] for n in names)


def check_device(jetson: str | None, option: str, dla: bool) -> None:
    """Refuse a recipe whose device cannot build what it asks: DLA on a Jetson without one, or a generation the
    device's JetPack does not have for that engine."""
    if jetson is None:
        return
    device = jetsons()[jetson]
    if dla and not device.dla_cores:
        raise EdgeqError(f"options.jetson={jetson}: the {device.name} has no DLA, so --target dla cannot build for it",
                         "use --target tensorrt (the GPU) for it, or name a Jetson with a DLA (agx-orin, orin-nx)")
    allowed = device.dla_generations if dla else device.gpu_generations
    missing = [g.name for g in selected(option) if g.name not in allowed]
    if missing:
        engine = "DLA" if dla else "GPU"
        why = ("TensorRT 11.4.1 restores DLA on the Jetson AGX Orin only" if dla
               else f"the {device.name}'s JetPack ships TensorRT {'/'.join(allowed)}.x only")
        fix = f"set options.tensorrt={allowed[0] if len(allowed) == 1 else 'both'}"
        raise EdgeqError(f"options.tensorrt={option}: no TensorRT {'/'.join(missing)} {engine} build for the "
                         f"{device.name} ({why})", fix)


def removed_flags(argv: list[str], generation: Generation) -> list[str]:
    """The flags of one trtexec command line that `generation`'s trtexec does not accept."""
    flags = [a.split("=", 1)[0] for a in argv[1:] if a.startswith("--")]
    return [f for f in flags if f not in generation.trtexec_accepts or f in generation.trtexec_removed]
