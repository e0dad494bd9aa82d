"""Which LiteRT kernels may score a full-integer file whose figures are the INT8 reference kernels' numerics.

LiteRT's reference kernels (plain C++ loops, one thread) take about a second per 640 px image; the optimized
kernels (XNNPACK, or the builtin ruy/gemmlowp kernels) take a few hundredths, but their requantization may round
differently. `check_kernels` runs the reference kernels and each faster path on a sample of images and compares
every output element; a faster path is used only when it is bit-identical on every one of them. When none is,
it says which ops differ: it runs the builtin optimized kernels (no delegate, so every intermediate tensor is
kept) beside the reference ones and names each op type whose outputs differ while its inputs are equal, with the
largest difference in quantization steps and the share of elements it touches (once one op differs, the ops
after it see different inputs and are not compared). The reference path then runs
several interpreters at once (LiteRT releases the GIL while it invokes), which is the same arithmetic.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgeq.plugin import cpus

FASTER_PATHS = ("AUTO", "BUILTIN_WITHOUT_DEFAULT_DELEGATES")  # XNNPACK first, then the builtin optimized kernels
PATH_NAMES = {"AUTO": "optimized kernels (XNNPACK)",
              "BUILTIN_WITHOUT_DEFAULT_DELEGATES": "optimized builtin kernels (no delegate)"}


@dataclass
class OpDifference:
    op: str
    ops: int = 0  # how many ops of this type differed with equal inputs
    max_steps: int = 0  # the largest difference, in quantization steps of the output
    elements: int = 0  # elements that differ
    of: int = 0  # elements compared

    def describe(self) -> str:
        return (f"{self.op} ({self.ops} op{'s' if self.ops != 1 else ''}, up to {self.max_steps} step"
                f"{'s' if self.max_steps != 1 else ''} on {100.0 * self.elements / max(self.of, 1):.3f}% of "
                "elements, inputs equal)")


@dataclass
class KernelCheck:
    """The outcome for one file: the resolver that scores it (None: the reference kernels) and the evidence."""

    images: int
    chosen: str | None = None  # an OpResolverType name bit-identical to the reference kernels on `images`
    differing: dict[str, int] = field(default_factory=dict)  # faster path -> output elements that differ
    ops: list[OpDifference] = field(default_factory=list)  # what the builtin optimized kernels change, per op
    unloadable: str = ""  # why LiteRT here cannot run the file at all (an op newer than its kernels), if it cannot

    @property
    def identical(self) -> bool:
        return self.chosen is not None

    def note(self) -> str:
        if self.images == 0:
            return "integer reference kernels (kernel check off)"
        if self.unloadable:
            return f"kernels not checked: LiteRT here cannot run this file ({self.unloadable})"
        if self.identical:
            return (f"scored with LiteRT's {PATH_NAMES[self.chosen]}, checked bit-identical to the integer reference "
                    f"kernels on every output element of {self.images} calibration images")
        ops = "; ".join(d.describe() for d in self.ops) or "no op with equal inputs"
        paths = ", ".join(f"{PATH_NAMES[k]}: {v} output elements" for k, v in self.differing.items())
        return (f"scored with LiteRT's integer reference kernels: the optimized kernels differ from them on "
                f"{self.images} calibration images ({paths}; first to differ with equal inputs: {ops})")

    def record(self) -> dict:
        return {"images": self.images, "chosen": self.chosen or "BUILTIN_REF", "unloadable": self.unloadable,
                "differing_elements": dict(self.differing),
                "ops_differing": [vars(d) for d in self.ops]}


def parallel_interpreters() -> int:
    """Reference-kernel interpreters run at once: one per CPU this process may use (each is single-threaded)."""
    return cpus()


def _interpreter(path: Path, resolver: str, preserve: bool = False, threads: int = 1):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interpreter = Interpreter(model_path=str(path), num_threads=threads,
                              experimental_op_resolver_type=getattr(OpResolverType, resolver),
                              experimental_preserve_all_tensors=preserve)
    interpreter.allocate_tensors()
    return interpreter


def quantize_input(detail: dict, images: np.ndarray) -> np.ndarray:
    """Float NHWC in [0, 1] -> the input tensor's integer type (int8/uint8, or int16 for a 16x8 file), with its
    scale and zero point."""
    dtype = detail["dtype"]
    if dtype not in (np.int8, np.uint8, np.int16):
        return images.astype(np.float32)
    scale, zero = detail["quantization"]
    info = np.iinfo(dtype)
    return np.clip(np.round(images / scale) + zero, info.min, info.max).astype(dtype)


def _outputs(interpreter, x: np.ndarray) -> list[np.ndarray]:
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
    interpreter.invoke()
    return [interpreter.get_tensor(d["index"]).copy() for d in interpreter.get_output_details()]


def check_kernels(path: Path, images: list[np.ndarray]) -> KernelCheck:
    """Reference kernels against each faster path on `images` (float32 NCHW (1, 3, S, S) in [0, 1])."""
    result = KernelCheck(images=len(images))
    if not images:
        return result
    try:
        reference = _interpreter(path, "BUILTIN_REF", preserve=True)
    except (ValueError, RuntimeError) as e:  # e.g. "Didn't find op for builtin opcode ..."; the build goes on
        result.unloadable = str(e).strip().splitlines()[0]
        return result
    detail = reference.get_input_details()[0]
    channels_first = int(detail["shape"][1]) == 3 and int(detail["shape"][3]) != 3
    inputs = [quantize_input(detail, x if channels_first else np.transpose(x, (0, 2, 3, 1))) for x in images]
    expected = [_outputs(reference, x) for x in inputs]
    for name in FASTER_PATHS:
        faster = _interpreter(path, name)
        differing = sum(int(np.count_nonzero(a != b)) for x, want in zip(inputs, expected)
                        for a, b in zip(_outputs(faster, x), want))
        result.differing[name] = differing
        if differing == 0:
            result.chosen = name
            return result
    op_diffs: dict[str, OpDifference] = {}
    builtin = _interpreter(path, "BUILTIN_WITHOUT_DEFAULT_DELEGATES", preserve=True)
    for x in inputs:
        _outputs(reference, x)
        _outputs(builtin, x)
        _diff_ops(reference, builtin, op_diffs)
    result.ops = sorted((d for d in op_diffs.values() if d.elements), key=lambda d: -d.elements)
    return result


def _diff_ops(reference, other, diffs: dict[str, OpDifference]) -> None:
    """Ops whose outputs differ although every input is equal (the op itself computes differently)."""
    seen: Counter = Counter()
    for op in reference._get_ops_details():
        inputs = [i for i in op["inputs"] if i >= 0]
        try:
            if not all(np.array_equal(reference.get_tensor(i), other.get_tensor(i)) for i in inputs):
                continue
            pairs = [(reference.get_tensor(o), other.get_tensor(o)) for o in op["outputs"]]
        except ValueError:  # a tensor the runtime does not keep (a delegate's inside)
            continue
        steps = [np.abs(a.astype(np.int64) - b.astype(np.int64)) for a, b in pairs]
        d = diffs.setdefault(op["op_name"], OpDifference(op["op_name"]))
        d.of += sum(s.size for s in steps)
        if count := sum(int(np.count_nonzero(s)) for s in steps):
            seen[op["op_name"]] += 1
            d.ops = max(d.ops, seen[op["op_name"]])
            d.max_steps = max(d.max_steps, *(int(s.max()) for s in steps))
            d.elements += count
