"""Q/DQ ONNX -> ONNX without Q/DQ + TensorRT calibration cache (what DLA builds from).

DLA cannot build explicitly quantized (Q/DQ) networks; it takes a plain network plus per-tensor scales. This
turns any Q/DQ ONNX into that pair: ours (ModelOpt PTQ), a QAT export (pytorch-quantization, Ultralytics'
`quantize=8` training), or one from onnxruntime's `quantize_static`.

1. Activation QuantizeLinear -> DequantizeLinear pairs are removed and their scale is kept for the float tensor
   they quantized. Asymmetric pairs (uint8, zero point != 0) become the symmetric scale covering the same range.
2. Weight Q/DQ (or DQ-only int8 weights) are folded back to float weights: TensorRT quantizes weights itself,
   per output channel from their max, which is what Q/DQ weights hold (checked, as NVIDIA's translator does).
3. Scales that Q/DQ placement leaves out are inferred from neighbours, forward and backward until nothing
   changes (the same reasoning as NVIDIA's qdq-translator, extended):
     Concat        output = largest input scale; missing inputs = output scale
     Sigmoid/Tanh  output = 1/127 (the range is [0, 1] / [-1, 1] whatever the input)
     Mul (SiLU)    x * sigmoid(x): output = scale of x, and x = output scale going backwards
     Mul / Add     both inputs known: output = s1 * s2 * 127 / s1 + s2 (bounds of the product / sum)
     data movement MaxPool, ReLU, Clip, Reshape, Transpose, nearest Resize, Slice, ...: output = input and back
   Tensors still without a scale are listed; their consumers run in FP16 on DLA.

CLI: `python -m edgeq_tensorrt.translate model_qdq.onnx --out DIR [--trt-version 10.3] [--tensorrt 11]`
(`--tensorrt 11`: the strongly typed graph TensorRT 11.4.1 builds for DLA instead of the cache).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgeq.plugin import EdgeqError
from edgeq_tensorrt.calib_cache import float32, write_cache
from edgeq_tensorrt.qdq import DQ_OPS, INT8_MAX, Q_OPS, GraphIndex

SIGMOID_SCALE = float32(1.0 / INT8_MAX)
_FIX_NO_SCALES = ("pass an ONNX with QuantizeLinear/DequantizeLinear pairs carrying constant scales (e.g. "
                  "`edgeq export --target tensorrt` or a QAT export), or calibrate the FP32 model with --target dla")
FORWARD_SAME = {"MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "Relu", "Clip", "LeakyRelu",
                "Reshape", "Transpose", "Flatten", "Squeeze", "Unsqueeze", "Slice", "Split", "Resize", "Upsample",
                "Pad", "Identity", "Dropout"}
BACKWARD_SAME = {"MaxPool", "Relu", "Clip", "Reshape", "Transpose", "Flatten", "Squeeze", "Unsqueeze", "Resize",
                 "Upsample", "Pad", "Identity", "Dropout"}


@dataclass
class Translation:
    model: object  # onnx.ModelProto without Q/DQ nodes
    scales: dict[str, float]  # tensor -> scale (float32 values), read and inferred
    read: set[str] = field(default_factory=set)  # scales taken from Q/DQ nodes
    inferred: dict[str, str] = field(default_factory=dict)  # tensor -> the rule that gave its scale
    unscaled: dict[str, list[str]] = field(default_factory=dict)  # tensor without scale -> consumer nodes
    asymmetric: list[str] = field(default_factory=list)  # tensors whose asymmetric Q/DQ became symmetric
    weight_mismatch: list[str] = field(default_factory=list)  # weight scales that are not per-channel max/127

    @property
    def fp16_nodes(self) -> list[str]:
        return sorted({n for consumers in self.unscaled.values() for n in consumers})


def _scalar_scale(values: np.ndarray, where: str) -> float:
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    if values.size == 0 or not np.all(np.isfinite(values)) or np.any(values <= 0):
        raise EdgeqError(f"{where} has scale {values.tolist()[:4]}; scales must be positive and finite",
                         "re-export the Q/DQ model from a calibrated quantizer")
    return float(values.max())


def translate_model(model, name: str = "model") -> Translation:
    """Strip Q/DQ from `model` (a copy is modified) and collect per-tensor scales; see the module docstring."""
    import onnx
    from onnx import numpy_helper

    model = onnx.ModelProto.FromString(model.SerializeToString())
    index = GraphIndex(model)
    graph = model.graph
    q_nodes = [i for i, n in enumerate(graph.node) if n.op_type in Q_OPS]
    dq_nodes = [i for i, n in enumerate(graph.node) if n.op_type in DQ_OPS]
    if not q_nodes and not dq_nodes:
        raise EdgeqError(f"'{name}' has no QuantizeLinear/DequantizeLinear nodes, so it carries no INT8 scales",
                         _FIX_NO_SCALES)
    alias: dict[str, str] = {}  # DequantizeLinear output -> float tensor it stands for
    result = Translation(model=model, scales={})
    new_inits = []
    for i in q_nodes:
        node = graph.node[i]
        scale, zero = index.const_input(node, 1), index.const_input(node, 2)
        if scale is None:
            raise EdgeqError(f"QuantizeLinear '{node.name or node.output[0]}' in '{name}' has no constant scale",
                             _FIX_NO_SCALES)
        consumers = index.consumers.get(node.output[0], [])
        strays = [graph.node[c] for c in consumers if graph.node[c].op_type not in DQ_OPS]
        if strays:
            raise EdgeqError(f"'{name}': QuantizeLinear '{node.name}' feeds {strays[0].op_type} (QOperator format)",
                             "export the model in QDQ format (QuantizeLinear -> DequantizeLinear -> float op)")
        source = node.input[0]
        for c in consumers:
            alias[graph.node[c].output[0]] = source
        if index.is_const(source):  # weight: TensorRT re-quantizes it per channel from its max
            weight = index.consts[source]
            if weight.ndim >= 2 and np.asarray(scale).size == weight.shape[0]:
                expected = np.abs(weight.reshape(weight.shape[0], -1)).max(axis=1) / INT8_MAX
                if not np.allclose(expected, np.asarray(scale).reshape(-1), rtol=1e-3, atol=1e-8):
                    result.weight_mismatch.append(source)
            continue
        s = _scalar_scale(scale, f"QuantizeLinear '{node.name}'")
        zp = 0 if zero is None else int(np.asarray(zero).reshape(-1)[0])
        if zp != 0 or (zero is not None and zero.dtype == np.uint8):
            qmin, qmax = (0, 255) if zero is not None and zero.dtype == np.uint8 else (-128, 127)
            amax = max(abs((qmin - zp) * s), abs((qmax - zp) * s))
            s = amax / INT8_MAX
            result.asymmetric.append(source)
        s = float32(s)
        result.scales[source] = max(s, result.scales.get(source, 0.0))
        result.read.add(source)
    for i in dq_nodes:
        node = graph.node[i]
        if node.output[0] in alias:
            continue
        data = index.consts.get(node.input[0])
        if data is None:
            raise EdgeqError(f"'{name}': DequantizeLinear '{node.name}' reads '{node.input[0]}', which no "
                             "QuantizeLinear produces", "export the model in QDQ format with Q/DQ pairs")
        scale, zero = index.const_input(node, 1), index.const_input(node, 2)
        if scale is None:
            raise EdgeqError(f"DequantizeLinear '{node.name}' in '{name}' has no constant scale", _FIX_NO_SCALES)
        axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
        shape = [1] * data.ndim
        if np.asarray(scale).size > 1:
            shape[axis] = -1
        zero = np.zeros(1) if zero is None else zero.astype(np.float64)
        values = (data.astype(np.float64) - np.reshape(zero, shape if zero.size > 1 else [1] * data.ndim)) \
            * np.reshape(scale, shape)
        new_inits.append(numpy_helper.from_array(values.astype(np.float32), node.output[0]))
    keep = [n for n in graph.node if n.op_type not in Q_OPS + DQ_OPS]
    del graph.node[:]
    graph.node.extend(keep)
    graph.initializer.extend(new_inits)

    def resolve(t: str) -> str:
        for _ in range(64):
            if t not in alias:
                return t
            t = alias[t]
        return t

    for node in graph.node:
        for k, inp in enumerate(node.input):
            if inp in alias:
                node.input[k] = resolve(inp)
    for out in graph.output:  # a Q/DQ pair on a network output: the producer's tensor takes the output's name
        if out.name in alias:
            real = resolve(out.name)
            _rename(graph, real, out.name)
            if real in result.scales:
                result.scales[out.name] = result.scales.pop(real)
                result.read.discard(real)
                result.read.add(out.name)
    used = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
    inits = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(inits)
    inputs = [i for i in graph.input if i.name in used or i.name in {o.name for o in graph.output}]
    del graph.input[:]
    graph.input.extend(inputs)
    del graph.value_info[:]
    onnx.checker.check_model(model)
    infer_missing_scales(model, result.scales, result.inferred)
    result.unscaled = unscaled_tensors(model, result.scales)
    return result


def _rename(graph, old: str, new: str) -> None:
    for node in graph.node:
        for k, v in enumerate(node.input):
            if v == old:
                node.input[k] = new
        for k, v in enumerate(node.output):
            if v == old:
                node.output[k] = new


def infer_missing_scales(model, scales: dict[str, float], why: dict[str, str]) -> None:
    """Fill `scales` in place from neighbouring tensors (forward and backward passes until nothing changes)."""
    index = GraphIndex(model)
    nodes = list(model.graph.node)
    sigmoid_of = {n.output[0]: n.input[0] for n in nodes if n.op_type == "Sigmoid"}

    def acts(names) -> list[str]:
        return [t for t in names if t and not index.is_const(t)]

    def put(t: str, value: float, rule: str) -> bool:
        if t in scales or not t or index.is_const(t) or not np.isfinite(value) or value <= 0:
            return False
        scales[t] = float32(value)
        why[t] = rule
        return True

    def forward(node, relaxed: bool) -> bool:
        op, ins, outs = node.op_type, acts(node.input), list(node.output)
        known = [scales[t] for t in ins if t in scales]
        if op in ("Sigmoid", "Tanh"):
            return put(outs[0], SIGMOID_SCALE, f"{op} output range is [{0 if op == 'Sigmoid' else -1}, 1]")
        if op in FORWARD_SAME and ins and ins[0] in scales:
            results = [put(o, scales[ins[0]], f"{op} keeps its input range") for o in outs]  # all, no short cut
            return any(results)
        if op == "Concat" and known and (relaxed or len(known) == len(ins)):
            return put(outs[0], max(known), "Concat output = largest input scale")
        if op == "Mul" and len(ins) == 2:
            x = next((a for a in ins if sigmoid_of.get(ins[1 - ins.index(a)]) == a), None)
            if x is not None and x in scales:
                return put(outs[0], scales[x], "SiLU x*sigmoid(x) stays within the range of x")
            if relaxed and len(known) == 2 and x is None:
                return put(outs[0], known[0] * known[1] * INT8_MAX, "Mul: product of the input ranges")
        if relaxed and op in ("Add", "Sub") and len(ins) == 2 and len(known) == 2:
            return put(outs[0], known[0] + known[1], f"{op}: sum of the input ranges")
        return False

    def sliced_only(t: str) -> float | None:
        """A tensor read only through Slice/Split: only the sliced parts matter, so take their largest scale."""
        consumers = [index.node(c) for c in index.consumers.get(t, [])]
        if not consumers or any(c.op_type not in ("Slice", "Split") or c.input[0] != t for c in consumers):
            return None
        outs = [o for c in consumers for o in c.output if o]
        return max(scales[o] for o in outs) if all(o in scales for o in outs) else None

    def backward(node) -> bool:
        op, ins, outs = node.op_type, acts(node.input), list(node.output)
        changed = False
        for o in outs:
            if o not in scales and (value := sliced_only(o)) is not None:
                changed |= put(o, value, "read only through Slice/Split: largest scale of the slices")
        if not outs or outs[0] not in scales:
            return changed
        out = scales[outs[0]]
        if op in BACKWARD_SAME and ins:
            return put(ins[0], out, f"{op} input takes its output's range")
        if op == "Concat":
            results = [put(t, out, "Concat input = Concat output scale") for t in ins]  # all, no short cut
            return any(results)
        if op == "Mul" and len(ins) == 2:
            x = next((a for a in ins if sigmoid_of.get(ins[1 - ins.index(a)]) == a), None)
            if x is not None:
                return put(x, out, "SiLU input takes the SiLU output's range")
        return False

    for relaxed in (False, True, False):
        for _ in range(32):
            changed = False
            for node in nodes:
                changed |= forward(node, relaxed)
            for node in reversed(nodes):
                changed |= backward(node)
            if not changed:
                break


def unscaled_tensors(model, scales: dict[str, float]) -> dict[str, list[str]]:
    """Float activations (graph inputs and node outputs, not network outputs) without a scale -> consumers."""
    index = GraphIndex(model)
    outputs = set(index.graph_outputs)
    missing = {}
    candidates = list(index.graph_inputs) + [o for n in model.graph.node for o in n.output if o]
    for t in candidates:
        if t in scales or t in outputs or index.is_const(t):
            continue
        consumers = [index.node(c).name or index.node(c).output[0] for c in index.consumers.get(t, [])]
        if consumers:
            missing[t] = consumers
    return missing


@dataclass(frozen=True)
class TranslatedFiles:
    onnx: Path
    cache: Path
    precision: Path  # JSON: int8 scales, inferred ones and why, FP16 nodes (for --layerPrecisions)


def _load(qdq_onnx: Path):
    import onnx

    if not qdq_onnx.is_file():
        raise EdgeqError(f"Q/DQ model '{qdq_onnx}' does not exist", "pass the path of a Q/DQ .onnx file")
    try:
        return onnx.load(str(qdq_onnx))
    except Exception as exc:  # noqa: BLE001 - protobuf decode errors come in several types
        raise EdgeqError(f"'{qdq_onnx}' is not a readable ONNX model ({type(exc).__name__})",
                         "pass a valid .onnx file") from None


def translate_typed(qdq_onnx: Path, out_dir: Path, stem: str | None = None) -> Path:
    """TensorRT 11.4.1's DLA input from a Q/DQ ONNX (a QAT export): `<stem>-trt11.onnx`, strongly typed as edgeq's
    own tensorrt11/ graph (Q/DQ on every INT8 tensor, the scales read and inferred as for the cache, the tensors
    without a scale typed FP16, INT8 input, FP16 outputs). TensorRT 11 has no calibrator: without Q/DQ nodes a
    model carries no INT8 for it, and is refused."""
    import onnx

    from edgeq_tensorrt.emulate import emulation_model

    qdq_onnx = Path(qdq_onnx)
    model = _load(qdq_onnx)
    if not any(n.op_type in Q_OPS + DQ_OPS for n in model.graph.node):
        raise EdgeqError(f"'{qdq_onnx.name}' has no QuantizeLinear/DequantizeLinear nodes: TensorRT 11 builds INT8 "
                         "only from Q/DQ nodes (no calibrator, no cache), so this QAT ONNX has no INT8 for it",
                         "export the QAT model with its quantizers as Q/DQ nodes, or calibrate the FP32 model with "
                         "`edgeq export --target dla` (its tensorrt11/ folder)")
    result = translate_model(model, qdq_onnx.name)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{stem or qdq_onnx.stem}-trt11.onnx"
    onnx.save(emulation_model(result.model, result.scales, result.fp16_nodes, typed=True), str(path))
    return path


def translate(qdq_onnx: Path, out_dir: Path, trt_version: str = "10.3", stem: str | None = None) -> TranslatedFiles:
    """The CLI-callable translator: writes `<stem>-noqdq.onnx`, `<stem>.cache`, `<stem>-precision.json`.

    Files are written under temporary names and renamed when all three are complete.
    """
    import onnx

    qdq_onnx = Path(qdq_onnx)
    model = _load(qdq_onnx)
    result = translate_model(model, qdq_onnx.name)
    stem = stem or qdq_onnx.stem
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    final = TranslatedFiles(out_dir / f"{stem}-noqdq.onnx", out_dir / f"{stem}.cache",
                            out_dir / f"{stem}-precision.json")
    tmp = [p.with_name(f".{p.name}.partial-{os.getpid()}") for p in (final.onnx, final.cache, final.precision)]
    try:
        onnx.save(result.model, str(tmp[0]))
        write_cache(tmp[1], result.scales, trt_version)
        tmp[2].write_text(json.dumps(precision_config(result), indent=2))
        for partial, done in zip(tmp, (final.onnx, final.cache, final.precision)):
            os.replace(partial, done)
    finally:
        for partial in tmp:
            partial.unlink(missing_ok=True)
    return final


def precision_config(result: Translation) -> dict:
    return {"int8_tensor_scales": result.scales, "read_from_qdq": sorted(result.read),
            "inferred": result.inferred, "fp16_nodes": result.fp16_nodes,
            "tensors_without_scale": result.unscaled, "asymmetric_converted": result.asymmetric,
            "weights_not_per_channel_max": result.weight_mismatch}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", type=Path, help="ONNX with QuantizeLinear/DequantizeLinear pairs (PTQ or QAT export)")
    parser.add_argument("--out", "-o", type=Path, default=Path("translated"))
    parser.add_argument("--trt-version", default="10.3", help="TensorRT version for the cache header")
    parser.add_argument("--tensorrt", choices=("10", "11"), default="10",
                        help="10: ONNX without Q/DQ + calibration cache (JetPack 6); 11: the strongly typed DLA "
                             "graph TensorRT 11.4.1+ builds (JetPack 7.2.2+)")


def run(args: argparse.Namespace) -> int:
    """`edgeq translate`: Q/DQ ONNX -> ONNX without Q/DQ + calibration cache (or TensorRT 11's typed graph);
    raises EdgeqError on bad input."""
    if getattr(args, "tensorrt", "10") == "11":
        print(translate_typed(args.model, args.out))
        return 0
    files = translate(args.model, args.out, args.trt_version)
    config = json.loads(files.precision.read_text())
    print(f"{files.onnx}\n{files.cache} ({len(config['int8_tensor_scales'])} scales, "
          f"{len(config['inferred'])} inferred)\nfp16 nodes: {len(config['fp16_nodes'])}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edgeq_tensorrt.translate", description=TRANSLATE_HELP)
    add_arguments(parser)
    try:
        return run(parser.parse_args(argv))
    except EdgeqError as exc:
        print(f"edgeq: error: {exc.one_line()}", file=sys.stderr)
        return exc.exit_code


TRANSLATE_HELP = "Q/DQ ONNX -> ONNX without Q/DQ + TensorRT calibration cache (DLA)"

if __name__ == "__main__":
    sys.exit(main())
