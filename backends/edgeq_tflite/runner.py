"""LiteRT runner for full-integer .tflite files: float NCHW in, canonical float NCHW outputs back.

Input: the evaluator's float32 (1, 3, S, S) batch in [0, 1] -> NHWC (unless the file takes NCHW, as LiteRT
files converted straight from PyTorch do: Ultralytics 8.4's LiteRT export) -> quantized with the input tensor's own
scale and zero point where it is integer (int8 or uint8). Outputs are dequantized with their own parameters and put back into the
ONNX layout and names: `box_i` (1, 4*reg_max, H, W) / `cls_i` (1, nc, H, W), or `output0` (1, 4 + nc, A).

Names come from the model's signature (the converter names its outputs `box_0`, ...); without one they are
recovered from shapes: grid size gives the scale, channel count tells box (4*reg_max) from class (nc) logits.
When nc == 4*reg_max only the signature can tell them apart, and the runner says so instead of guessing.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from edgeq.plugin import OUTPUT_NAME, BatchNotSupported, EdgeqError, HeadLayout, HeadSpec, Runner


class LiteRTRunner(Runner):
    runtime = "litert"

    def __init__(self, path: Path, head: HeadSpec | None = None, layout: HeadLayout | None = None,
                 reference_kernels: bool = False, num_threads: int | None = None) -> None:
        super().__init__(path)
        self.head, self.layout = head, layout
        self.reference_kernels = reference_kernels
        self.num_threads = num_threads or os.cpu_count() or 1

    def load(self) -> None:
        import ai_edge_litert
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        resolver = OpResolverType.BUILTIN_REF if self.reference_kernels else OpResolverType.AUTO
        self.interpreter = Interpreter(model_path=str(self.path), num_threads=self.num_threads,
                                       experimental_op_resolver_type=resolver)
        self.interpreter.allocate_tensors()
        version = getattr(ai_edge_litert, "__version__", "")
        kernels = "reference INT8 kernels" if self.reference_kernels else "optimized kernels"
        self.runtime = f"ai-edge-litert {version} ({kernels})".replace("  ", " ")
        inputs = self.interpreter.get_input_details()
        if len(inputs) != 1:
            raise EdgeqError(f"'{self.path.name}' has {len(inputs)} inputs; a detector has one image input",
                             "export the detector with edgeq")
        self.input = inputs[0]
        shape = tuple(int(d) for d in self.input["shape"])
        # channels first: three channels second and not last (a 3x3 image would be ambiguous; no detector takes one)
        self.channels_first = len(shape) == 4 and shape[1] == 3 and shape[3] != 3
        n, c, h, w = shape if self.channels_first else (shape[0], shape[3], shape[1], shape[2])
        self.input_shape = (n, c, h, w)  # what infer() takes: NCHW, like every runner
        self.outputs = self._map_outputs(self.interpreter.get_output_details())

    def resize(self, batch: int) -> None:
        n, c, h, w = self.input_shape
        try:
            self.interpreter.resize_tensor_input(self.input["index"],
                                                 [batch, c, h, w] if self.channels_first else [batch, h, w, c])
            self.interpreter.allocate_tensors()
        except (RuntimeError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
            raise BatchNotSupported(f"LiteRT cannot run '{self.path.name}' at batch {batch}: a shape inside the "
                                    f"graph is fixed at batch {n} ({first})") from None
        wrong = [d["name"] for d in self.interpreter.get_output_details() if int(d["shape"][0]) != batch]
        if wrong:
            raise BatchNotSupported(f"LiteRT resized '{self.path.name}' to batch {batch}, but output {wrong[0]} "
                                    "keeps another batch: a shape inside the graph is fixed")
        self.input = self.interpreter.get_input_details()[0]
        self.input_shape = (batch, c, h, w)
        self.outputs = [(name, next(d for d in self.interpreter.get_output_details() if d["index"] == old["index"]))
                        for name, old in self.outputs]

    # --- output naming -------------------------------------------------------------------------------------

    def _map_outputs(self, details: list[dict]) -> list[tuple[str, dict]]:
        by_index = {d["index"]: d for d in details}
        signatures = self.interpreter._get_full_signature_list()
        named = {}
        if signatures:
            sig = signatures.get("serving_default") or next(iter(signatures.values()))
            named = {name: by_index[idx] for name, idx in sig["outputs"].items() if idx in by_index}
        expected = self._expected_names()
        if named and (expected is None or set(expected) <= set(named)):
            pairs = [(name, d) for name, d in named.items() if expected is None or name in expected]
            for name, d in pairs:
                self._check_shape(name, d)
            return pairs
        if self.head is None:
            raise EdgeqError(f"'{self.path.name}' has no output signature and no head description",
                             "open it with LiteRTRunner(path, head=HeadSpec...)")
        return self._map_by_shape(details)

    def _expected_names(self) -> list[str] | None:
        if self.head is None or self.layout is None:
            return None
        return self.head.body_outputs if self.layout is HeadLayout.DETACHED else [OUTPUT_NAME]

    def _check_shape(self, name: str, detail: dict) -> None:
        if self.head is None:
            return
        shape = tuple(int(d) for d in detail["shape"])
        want = self._canonical_shapes().get(name)
        if want is not None and self._to_canonical(np.zeros(shape, np.float32), want).shape != want:
            raise EdgeqError(f"'{self.path.name}': output '{name}' has shape {shape}, expected {want} (NCHW)",
                             "re-export the model: its outputs do not match its head description")

    def _canonical_shapes(self) -> dict[str, tuple[int, ...]]:
        spec, n = self.head, self.input_shape[0] if self.input_shape else 1
        shapes = {OUTPUT_NAME: (n, 4 + spec.nc, sum(h * w for h, w in spec.grids))}
        for i, (h, w) in enumerate(spec.grids):
            shapes[f"box_{i}"] = (n, 4 * spec.reg_max, h, w)
            shapes[f"cls_{i}"] = (n, spec.nc, h, w)
        return shapes

    def _map_by_shape(self, details: list[dict]) -> list[tuple[str, dict]]:
        spec = self.head
        if self.layout is not HeadLayout.DETACHED:
            if len(details) != 1:
                raise EdgeqError(f"'{self.path.name}' has {len(details)} outputs; expected one '{OUTPUT_NAME}'",
                                 "re-export the model with an attached head")
            return [(OUTPUT_NAME, details[0])]
        if spec.nc == 4 * spec.reg_max:
            raise EdgeqError(f"'{self.path.name}': {spec.nc} classes equals 4*reg_max, so box and class outputs "
                             "cannot be told apart by shape, and the file has no output signature",
                             "re-export with edgeq (it names outputs through the signature)")
        pairs = []
        for d in details:
            _, h, w, c = (int(x) for x in d["shape"])
            grid = [i for i, g in enumerate(spec.grids) if g == (h, w)]
            if len(grid) != 1 or c not in (spec.nc, 4 * spec.reg_max):
                raise EdgeqError(f"'{self.path.name}': output of shape {tuple(d['shape'])} fits no head output",
                                 "re-export the model with edgeq")
            pairs.append((f"{'box' if c == 4 * spec.reg_max else 'cls'}_{grid[0]}", d))
        if sorted(n for n, _ in pairs) != sorted(spec.body_outputs):
            raise EdgeqError(f"'{self.path.name}': outputs {sorted(n for n, _ in pairs)} are not one box and one "
                             "class tensor per scale", "re-export the model with edgeq")
        return pairs

    @staticmethod
    def _to_canonical(x: np.ndarray, want: tuple[int, ...] | None) -> np.ndarray:
        """NHWC (or NWC) -> NCHW (NCW); with a known target shape, only when that is what it takes."""
        if want is not None and x.shape == want:
            return x
        if want is None and x.ndim == 3 and x.shape[1] <= x.shape[2]:
            return x  # (1, 4 + nc, anchors) already: what other exporters write
        if x.ndim >= 3:
            moved = np.transpose(x, (0, x.ndim - 1, *range(1, x.ndim - 1)))
            if want is None or moved.shape == want:
                return moved
        return x

    # --- inference -----------------------------------------------------------------------------------------

    def infer(self, images: np.ndarray) -> dict[str, np.ndarray]:
        x = np.asarray(images, dtype=np.float32)
        if not self.channels_first:
            x = np.transpose(x, (0, 2, 3, 1))
        dtype = self.input["dtype"]
        if dtype in (np.int8, np.uint8):
            scale, zero = self.input["quantization"]
            info = np.iinfo(dtype)
            x = np.clip(np.round(x / scale) + zero, info.min, info.max).astype(dtype)
        self.interpreter.set_tensor(self.input["index"], x)
        self.interpreter.invoke()
        shapes = self._canonical_shapes() if self.head is not None else {}
        result = {}
        for name, d in self.outputs:
            y = self.interpreter.get_tensor(d["index"])
            if d["dtype"] in (np.int8, np.uint8, np.int16):
                scale, zero = d["quantization"]
                y = (y.astype(np.float32) - zero) * scale
            result[name] = self._to_canonical(y.astype(np.float32, copy=False), shapes.get(name))
        return result

    def close(self) -> None:
        self.interpreter = None
