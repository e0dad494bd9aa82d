"""TFLite family: full-integer TFLite for a CPU (`tflite`), the Coral Edge TPU (`edgetpu`) and the NXP i.MX 8M
Plus NPU (`nxp`), with three treatments of the decode head as separate artifacts.

    detached    the INT8 model ends at the per-scale head convolutions (box_i, cls_i, each with its own
                quantization); DFL, box decode, sigmoid and NMS run on the host in FP32 (the default)
    normalized  the decode head inside the INT8 model, computed with normalized scaling factors so boxes and
                scores share one 0..1 output
    pixel       the decode head inside, boxes in pixels next to scores in 0..1 (the naive export, kept only
                to show the damage)

Rules run twice: on the FP32 ONNX before conversion (`rules/<target>-onnx.yaml`: activations, shapes) and on
the produced .tflite (`rules/<target>.yaml`: op table, types, quantization), which also gives the per-op
table (`<artifact>-ops.md`). Heavy imports (TensorFlow, onnx2tf, LiteRT) happen in the worker process or
inside functions, so this module imports with the core dependencies only.
"""

from __future__ import annotations

import shutil
import sys
from collections import OrderedDict
from pathlib import Path
from typing import ClassVar

from edgeq.backend import Artifact, Backend, BackendOptions, Job
from edgeq.errors import EdgeqError, StageError
from edgeq.head import HeadLayout
from edgeq.rules import Finding, RuleTable, Severity
from edgeq_tflite import predicates  # noqa: F401  (registers the checks the rule tables use)
from edgeq_tflite.options import OPTIONS

RULES = Path(__file__).parent / "rules"
INSTALL_FIX = "pip install 'edgeq[tflite]' && pip install --no-deps onnx2tf==1.28.8 tf_keras==2.21.0"
_HEAD_NOTES = {
    "detached": "INT8 body, box/class logits per scale as separate tensors; DFL, box decode and sigmoid run on "
                "the host in FP32 (edgeq.evaluate.decode.decode_detached with {head_json})",
    "normalized": "INT8 including the decode head, boxes in 0..1 from normalized scaling factors "
                  "(multiply by the input size on the host)",
    "pixel": "INT8 including the decode head, boxes in pixels sharing one INT8 output with 0..1 scores (the "
             "naive export, shown for comparison)",
}


def log(message: str) -> None:
    print(f"edgeq: {message}", file=sys.stderr, flush=True)


class TFLiteBackend(Backend):
    family = "tflite"
    extra = "tflite"
    requires: ClassVar[tuple[str, ...]] = ("tensorflow", "tf_keras", "onnx2tf", "onnx_graphsurgeon", "sng4onnx", "psutil", "ai_edge_litert")
    targets: ClassVar[dict[str, str]] = {
        "tflite": "full-integer TFLite (INT8) on this CPU through LiteRT: measured accuracy and latency",
        "edgetpu": "Coral Edge TPU: full-integer TFLite + edgetpu_compiler (INT8 reference kernels emulate it)",
        "nxp": "NXP i.MX 8M Plus NPU (VX delegate): per-tensor full-integer TFLite (emulated on LiteRT)",
    }
    fallback_by_default: ClassVar[dict[str, bool]] = {"tflite": True, "edgetpu": False, "nxp": True}

    # --- availability ---------------------------------------------------------------------------------------

    def ensure_available(self, target: str) -> None:
        if missing := self.missing():
            raise EdgeqError(f"target '{target}' needs {', '.join(missing)}, which is not installed", INSTALL_FIX)

    def options_model(self, target: str) -> type[BackendOptions]:
        return OPTIONS[target]

    def runner_for(self, path: Path):
        from edgeq_tflite.runner import LiteRTRunner

        return LiteRTRunner(path) if Path(path).suffix.lower() == ".tflite" else None

    # --- rules before conversion ----------------------------------------------------------------------------

    def check(self, job: Job) -> list[Finding]:
        """Findings on the FP32 body (what the default detached variant deploys), one per rule and message:
        a SiLU model has 57 identical activation findings, reported once with the count."""
        import onnx

        from edgeq_tflite.graph import onnx_layers_with_producers

        table = RuleTable.load(RULES / f"{job.target}-onnx.yaml")
        findings = table.evaluate(onnx_layers_with_producers(onnx.load(str(job.body_onnx))))
        return _collapse(findings)

    # --- build ----------------------------------------------------------------------------------------------

    def build(self, job: Job) -> list[Artifact]:
        from edgeq_tflite.convert import run_worker, write_calibration

        opts = job.options
        _gate(self.check(job), job)  # the pipeline gates too; this keeps the backend safe on its own
        work = job.staging / ".tflite-work"
        out_dir = job.staging / job.target
        out_dir.mkdir(parents=True, exist_ok=True)
        artifacts: list[Artifact] = []
        try:
            calib = work / "calibration.npy"
            n = write_calibration(job.calibration, _mkdir(calib.parent) / calib.name)
            log(f"{job.target}: {n} calibration images; heads {', '.join(opts.heads)}; "
                f"{', '.join(opts.granularity)}; {opts.io_dtype} I/O")
            for rank, head in enumerate(opts.heads):
                onnx_path = self._onnx_for(job, head, work)
                files = [(out_dir / f"{_name(job.target, head, g)}.tflite", g) for g in opts.granularity]
                log(f"{job.target}: converting the {head} variant ({onnx_path.name})")
                conv = run_worker(onnx_path, calib, files, opts.io_dtype, work / head, f"{job.target}-{head}",
                                  job.staging.parent)
                for path, granularity in files:
                    artifacts.append(self._artifact(job, head, granularity, path, conv, primary=rank == 0,
                                                    log_dir=work / head))
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return artifacts

    def _onnx_for(self, job: Job, head: str, work: Path) -> Path:
        if head == "detached":
            return job.body_onnx
        if head == "pixel":
            return job.full_onnx
        import onnx

        from edgeq.head import attach_head

        path = _mkdir(work / head) / f"{job.body_onnx.stem.removesuffix('-body')}-normalized.onnx"
        onnx.save(attach_head(onnx.load(str(job.body_onnx)), job.head, HeadLayout.NORMALIZED), str(path))
        return path

    def _artifact(self, job: Job, head: str, granularity: str, path: Path, conv, primary: bool,
                  log_dir: Path) -> Artifact:
        from edgeq_tflite.graph import read_tflite
        from edgeq_tflite.optable import build_op_table
        from edgeq_tflite.runner import LiteRTRunner

        opts, name = job.options, path.stem
        graph = read_tflite(path)
        problems = full_integer_problems(graph)
        if problems:
            kept = job.staging.parent / f"{job.target}-full-integer.log"
            kept.write_text("\n".join(problems) + "\n")
            raise StageError("full-integer", f"{path.name} is not full-integer: {problems[0]}", str(kept))
        table = build_op_table(job.target, graph)
        ops_md = path.with_name(f"{name}-ops.md")
        ops_md.write_text(table.markdown(f"{name}: per-op mapping"))
        log(f"{name}: {table.summary()} (table: {ops_md.name})")
        for row in [r for r in table.rows if r.runs_on != table.accelerator][:12]:
            log(f"  #{row.index:<4} {row.op:<24} {row.runs_on:<8} {row.reason[:110]}")
        blocking = [f for f in table.findings if f.severity is Severity.ERROR or
                    (primary and f.severity is Severity.FALLBACK and not job.allow_fallback)]
        if blocking:
            f = blocking[0]
            raise EdgeqError(f"{job.target}: {name}: {f.where}: {f.message}",
                             f.fix + (" or pass --allow-cpu-fallback to accept it"
                                      if f.severity is Severity.FALLBACK else ""))
        job.findings.extend(Finding(f.rule, f.severity, f"{name}: {f.where}", f.message, f.fix)
                            for f in _collapse(table.findings))  # found on the .tflite: into the report
        layout = HeadLayout(head)
        companions = [ops_md]
        notes = [_HEAD_NOTES[head].format(head_json=f"{name}-head.json"),
                 f"{granularity} weights, {opts.io_dtype} I/O, {conv.calibration_images} calibration images",
                 table.summary()]
        if layout is HeadLayout.DETACHED:
            head_json = path.with_name(f"{name}-head.json")
            job.head.to_json(head_json)
            companions.insert(0, head_json)
        inp = graph.inputs[0]
        extra = OrderedDict(
            granularity=granularity, head=head, io_dtype=opts.io_dtype,
            input_quantization={"scale": inp.scale[0], "zero_point": inp.zero_point[0]} if inp.scale else None,
            full_integer=True, ops=len(graph.layers), ops_on_accelerator=table.on_accelerator,
            accelerator=table.accelerator,
            first_unmapped_op=f"#{table.first_unmapped.index} {table.first_unmapped.op}"
            if table.first_unmapped else None,
            param_bytes=graph.param_bytes,
            findings=[f.one_line() for f in _collapse([f for f in table.findings])],
            fp32_conversion_rel_error=max(conv.fp32_rel_error.values()),
            # onnx2tf and calibration run once per head and are shared by its granularities
            export_s={"onnx2tf": conv.seconds.get("onnx2tf_s"), "calibrate": conv.seconds.get("calibrate_s"),
                      "quantize": conv.seconds.get(path.name)},
            kernels=opts.kernels if job.target != "tflite" else "optimized",
        )
        if job.target == "edgetpu":
            notes.append(self._edgetpu(job, path, log_dir, extra, companions))
        reference = job.target != "tflite" and opts.kernels == "reference"
        if job.target != "tflite":
            notes.append(f"accuracy emulated with LiteRT's {'reference' if reference else 'optimized'} INT8 kernels")
        return Artifact(
            name=name, target=job.target, variant=f"int8-{head}-{granularity}", path=path,
            precision="int8+fp32-head" if layout is HeadLayout.DETACHED else "int8", layout=layout,
            status="measured" if job.target == "tflite" else "emulated", note="; ".join(notes),
            open_runner=lambda: LiteRTRunner(path, head=job.head, layout=layout, reference_kernels=reference),
            measure_latency=job.target == "tflite", extra=dict(extra), companions=tuple(companions))

    def _edgetpu(self, job: Job, path: Path, log_dir: Path, extra: dict, companions: list[Path]) -> str:
        from edgeq_tflite import edgetpu

        compiler = edgetpu.compiler_path()
        if job.options.compile == "never" or compiler is None:
            script = edgetpu.write_script(path)
            if script not in companions:
                companions.append(script)
            extra["edgetpu_compiler"] = "not run" if compiler else "not on PATH"
            why = "compile: never" if compiler else "edgetpu_compiler is not on PATH (Coral's package feed only)"
            return f"{path.stem}_edgetpu.tflite not built: {why}; run {script.name} on a host with the compiler"
        compiled, figures = edgetpu.compile_model(path, _mkdir(log_dir), job.staging.parent /
                                                  f"{job.target}-edgetpu-compile.log", job.options.compiler_timeout_s)
        extra["edgetpu_compiler"] = figures
        companions.append(compiled)
        log_file = compiled.with_suffix(".log")
        if log_file.exists():
            companions.append(log_file)
        return (f"compiled {compiled.name} (not runnable here: no Edge TPU): "
                f"{figures.get('ops_on_edgetpu', '?')}/{figures.get('total_ops', '?')} ops on the Edge TPU, "
                f"on-chip {figures.get('on_chip_param_memory', '?')}, "
                f"off-chip {figures.get('off_chip_param_memory', '?')}")


# --- helpers ----------------------------------------------------------------------------------------------


def _name(target: str, head: str, granularity: str) -> str:
    return f"{target}-int8-{head}-{granularity}"


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _collapse(findings: list[Finding]) -> list[Finding]:
    """One finding per (rule, message): the first place it occurs, with how many more there are."""
    groups: OrderedDict[tuple, list[Finding]] = OrderedDict()
    for f in findings:
        groups.setdefault((f.rule, f.severity, f.message, f.fix), []).append(f)
    out = []
    for (rule, severity, message, fix), group in groups.items():
        where = group[0].where if len(group) == 1 else f"{group[0].where} (and {len(group) - 1} more like it)"
        out.append(Finding(rule, severity, where, message, fix))
    return out


def _gate(findings: list[Finding], job: Job) -> None:
    blocking = [f for f in findings if f.severity is Severity.ERROR or
                (f.severity is Severity.FALLBACK and not job.allow_fallback)]
    if blocking:
        f = blocking[0]
        hint = " or pass --allow-cpu-fallback to accept it" if f.severity is Severity.FALLBACK else ""
        raise EdgeqError(f"{job.target}: {f.where}: {f.message}", f.fix + hint)


def full_integer_problems(graph) -> list[str]:
    """Why a .tflite is not a true full-integer model (empty list: it is). Integer I/O; every op's activations
    int8/uint8; constants int8 weights, int32 biases and shape tensors; no DEQUANTIZE back to float."""
    problems = []
    for t in [*graph.inputs, *graph.outputs]:
        if t.dtype not in ("int8", "uint8"):
            problems.append(f"model I/O tensor {t.name} is {t.dtype}")
    for layer in graph.layers:
        if layer.op == "DEQUANTIZE":
            problems.append(f"op #{layer.index} DEQUANTIZE turns {layer.inputs[0].name} back to float")
        const = set(layer.attrs.get("const_inputs", ()))
        for t in (*layer.inputs, *layer.outputs):
            allowed = ("int8", "uint8", "int32") if t.name in const else ("int8", "uint8")
            if t.dtype not in allowed:
                problems.append(f"op #{layer.index} {layer.op}: tensor {t.name} is {t.dtype}")
            elif t.dtype in ("int8", "uint8") and t.scale is None:
                problems.append(f"op #{layer.index} {layer.op}: tensor {t.name} has no quantization parameters")
    return problems
