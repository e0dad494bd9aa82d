"""LiteRT runner for full-integer .tflite files: float NCHW in, canonical float NCHW outputs back.

Input: the evaluator's float32 (1, 3, S, S) batch in [0, 1] -> NHWC (unless the file takes NCHW, as LiteRT
files converted straight from PyTorch do: Ultralytics 8.4's LiteRT export) -> quantized with the input tensor's own
scale and zero point where it is integer (int8, uint8, or int16 in a 16x8 file). Outputs are dequantized with their
own parameters and put back into the ONNX layout and names: `box_i` (1, 4*reg_max, H, W) / `cls_i` (1, nc, H, W), or `output0` (1, 4 + nc, A).

Names come from the model's signature (the converter names its outputs `box_0`, ...); without one they are
recovered from shapes: grid size gives the scale, channel count tells box (4*reg_max) from class (nc) logits.
When nc == 4*reg_max only the signature can tell them apart, and the runner says so instead of guessing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgeq.plugin import cpus, OUTPUT_NAME, BatchNotSupported, EdgeqError, HeadLayout, HeadSpec, Runner


class LiteRTRunner(Runner):
    runtime = "litert"

    def __init__(self, path: Path, head: HeadSpec | None = None, layout: HeadLayout | None = None,
                 reference_kernels: bool = False, num_threads: int | None = None, resolver: str | None = None,
                 parallel: int = 1) -> None:
        """`resolver` names a LiteRT OpResolverType outright (a kernel check's choice); `parallel` reference-kernel
        interpreters run side by side, each on one thread (the same arithmetic, `parallel` times the images)."""
        super().__init__(path)
        self.head, self.layout = head, layout
        self.resolver = resolver or ("BUILTIN_REF" if reference_kernels else "AUTO")
        self.reference_kernels = self.resolver == "BUILTIN_REF"
        self.num_threads = num_threads or cpus()
        self.parallel = max(1, parallel) if self.reference_kernels else 1
        self._pool = None  # with `parallel`: worker processes, one interpreter each

    def _interpreter(self):
        return _open_interpreter(self.path, self.resolver, 1 if self.parallel > 1 else self.num_threads)

    def load(self) -> None:
        import ai_edge_litert

        self.interpreter = self._interpreter()
        version = getattr(ai_edge_litert, "__version__", "")
        sixteen = self.interpreter.get_input_details()[0]["dtype"] == np.int16  # a 16x8 file: int16 I/O
        kernels = {"BUILTIN_REF": f"reference {'16x8' if sixteen else 'INT8'} kernels", "AUTO": "optimized kernels",
                   "BUILTIN_WITHOUT_DEFAULT_DELEGATES": "optimized builtin kernels"}.get(self.resolver, self.resolver)
        if self.parallel > 1:  # processes: LiteRT holds the GIL while it invokes
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            self._pool = ProcessPoolExecutor(self.parallel, mp_context=multiprocessing.get_context("spawn"),
                                             initializer=_start_worker, initargs=(str(self.path), self.resolver))
            kernels += f", {self.parallel} processes in parallel"
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

    @property
    def eval_batch(self) -> int:
        return self.input_shape[0] * (self.parallel if self._pool is not None else 1) if self.input_shape else 1

    def resize(self, batch: int) -> None:
        self._stop_pool()  # a resized runner is timed: one interpreter
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

    def _canonical_shapes(self, batch: int | None = None) -> dict[str, tuple[int, ...]]:
        spec, n = self.head, batch or (self.input_shape[0] if self.input_shape else 1)
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
        n = self.input_shape[0]
        if self._pool is not None and len(images) > n:  # one static batch per worker process, side by side
            parts = list(self._pool.map(_invoke_in_worker, [self._quantized(images[i:i + n])
                                                            for i in range(0, len(images), n)]))
            return self._dequantized({i: np.concatenate([p[i] for p in parts]) for i in parts[0]})
        x = self._quantized(images)
        self.interpreter.set_tensor(self.input["index"], x)
        self.interpreter.invoke()
        return self._dequantized({d["index"]: self.interpreter.get_tensor(d["index"]) for _, d in self.outputs})

    def _quantized(self, images: np.ndarray) -> np.ndarray:
        from edgeq_tflite.kernels import quantize_input

        x = np.asarray(images, dtype=np.float32)
        return quantize_input(self.input, x if self.channels_first else np.transpose(x, (0, 2, 3, 1)))

    def _dequantized(self, raw: dict[int, np.ndarray]) -> dict[str, np.ndarray]:
        batch = len(next(iter(raw.values())))  # a parallel runner's outputs hold several static batches
        shapes = self._canonical_shapes(batch) if self.head is not None else {}
        result = {}
        for name, d in self.outputs:
            y = raw[d["index"]]
            if d["dtype"] in (np.int8, np.uint8, np.int16):
                scale, zero = d["quantization"]
                y = (y.astype(np.float32) - zero) * scale
            result[name] = self._to_canonical(y.astype(np.float32, copy=False), shapes.get(name))
        return result

    def _stop_pool(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
        self._pool = None

    def close(self) -> None:
        self._stop_pool()
        self.interpreter = None


def _open_interpreter(path: Path, resolver: str, threads: int):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interpreter = Interpreter(model_path=str(path), num_threads=threads,
                              experimental_op_resolver_type=getattr(OpResolverType, resolver))
    interpreter.allocate_tensors()
    return interpreter


_WORKER_INTERPRETER = None  # in a worker process of a parallel runner: its one interpreter


def _start_worker(path: str, resolver: str) -> None:
    global _WORKER_INTERPRETER
    _WORKER_INTERPRETER = _open_interpreter(Path(path), resolver, 1)


def _invoke_in_worker(x: np.ndarray) -> dict[int, np.ndarray]:
    """One static batch through the worker's interpreter: its raw (integer) outputs by tensor index."""
    interpreter = _WORKER_INTERPRETER
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
    interpreter.invoke()
    return {d["index"]: interpreter.get_tensor(d["index"]) for d in interpreter.get_output_details()}
