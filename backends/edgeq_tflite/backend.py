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

import dataclasses
import shutil
from collections import OrderedDict
from pathlib import Path
from typing import ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict

from edgeq.plugin import (
    Artifact,
    Backend,
    BackendOptions,
    BuildResult,
    DeploySteps,
    EdgeqError,
    Finding,
    HeadLayout,
    Job,
    Precision,
    QuantPlan,
    Role,
    RuleTable,
    Severity,
    StageError,
    WHOLE_MODEL,
    TargetProfile,
    load_profiles,
    log,
)
from edgeq_tflite import predicates  # noqa: F401  (registers the checks the rule tables use)
from edgeq_tflite.options import OPTIONS

HERE = Path(__file__).parent
_HEAD_NOTES = {
    "detached": "{kind} body, box/class logits per scale as separate tensors; DFL, box decode and sigmoid run on "
                "the host in FP32 (edgeq.hostside.decode_detached with {head_json}, shipped in the deploy kit)",
    "normalized": "{kind} including the decode head, boxes in 0..1 from normalized scaling factors "
                  "(multiply by the input size on the host)",
    "pixel": "{kind} including the decode head, boxes in pixels sharing one integer output with 0..1 scores (the "
             "naive export, shown for comparison)",
}


class TFLiteDeploy(BaseModel):
    """What the target's deploy kit says (edgeq.deploy): the device, its runtime, the delegate infer.py loads."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    device_needs: str
    runtime: str
    delegate: str | None = None  # None: the CPU runs the file
    compiled_suffix: str | None = None  # the device runs <stem><suffix>.tflite, made by `build`
    build: tuple[str, ...] = ()
    verify: str = ""  # how to see on the device that the accelerator ran the file


class TFLiteProfile(TargetProfile):
    compiler: str | None = None  # the accelerator's compiler run on each .tflite (edgetpu_compiler)
    deploy: TFLiteDeploy


class TFLiteBackend(Backend):
    family = "tflite"
    extra = "tflite"
    requires: ClassVar[tuple[str, ...]] = ("tensorflow", "tf_keras", "onnx2tf", "onnx_graphsurgeon", "sng4onnx",
                                           "psutil", "ai_edge_litert")
    tools = ("tensorflow", "tf_keras", "onnx2tf", "ai-edge-litert", "ethos-u-vela")
    profiles = load_profiles(HERE / "profiles.yaml", TFLiteProfile)

    # --- availability ---------------------------------------------------------------------------------------

    def options_model(self, target: str) -> type[BackendOptions]:
        return OPTIONS[target]

    def quantization_aware(self, target: str):
        """None here: the full-integer .tflite comes from onnx2tf and the TFLite converter, which calibrates its own
        ranges from images and takes no ranges learned in PyTorch; that would need TensorFlow-side QAT."""
        raise EdgeqError(f"target {target} offers no quantization-aware training: the TFLite converter calibrates "
                         "its own INT8 ranges and cannot take ranges learned in PyTorch",
                         f"swap to ReLU6 with `edgeq adapt --activation relu6 --target {target}` (this family's "
                         "training fix), or train for openvino, tensorrt or dla")

    def runner_for(self, path: Path):
        from edgeq_tflite.runner import LiteRTRunner

        return LiteRTRunner(path) if Path(path).suffix.lower() == ".tflite" else None

    def deploy_steps(self, job: Job, artifacts: list[Artifact]) -> DeploySteps:
        deploy: TFLiteDeploy = job.profile.deploy
        folder = job.staging / job.target
        files = [a.path.relative_to(folder) for a in artifacts if a.path.is_relative_to(folder)]
        compiled = {str(f): (str(f.with_name(f"{f.stem}{deploy.compiled_suffix}.tflite")),)
                    for f in files} if deploy.compiled_suffix else {}
        default = next((a for a in artifacts if a.role is Role.DEPLOYABLE and a.path.is_relative_to(folder)), None)
        run = compiled.get(str(default.path.relative_to(folder)), (None,))[0] if default else None
        example = "python3 infer.py image.jpg" + (f" --model {run}" if run else "") + \
            (f" --delegate {deploy.delegate}" if deploy.delegate else "")
        note = ("The model takes NHWC {dtype} input: infer.py transposes the letterboxed tensor and quantizes it "
                "with the input tensor's own scale and zero point (both in the file); outputs are dequantized "
                "with theirs.").format(dtype=default.extra.get("io_dtype", job.options.io_dtype) if default
                                       else job.options.io_dtype)
        runtime = f"{deploy.runtime}. {deploy.verify}" if deploy.verify else deploy.runtime
        return DeploySteps(runtime=runtime, device_needs=deploy.device_needs, script=HERE / "kit_infer.py",
                           build=deploy.build, input_note=note, run_example=example, device_files=compiled)

    def quant_plan(self, job: Job) -> QuantPlan:
        """Full integer: the decode head is quantized unless the first (deployable) head treatment detaches it."""
        return QuantPlan(job.profile.quantization, head_quantized=job.options.heads[0] != "detached")

    # --- rules before conversion ----------------------------------------------------------------------------

    def check(self, job: Job) -> list[Finding]:
        """Findings on the FP32 body (what the default detached variant deploys), one per rule and message:
        a SiLU model has 57 identical activation findings, reported once with the count."""
        from edgeq_tflite.graph import onnx_layers_with_producers

        if job.profile.compiler == "vela":
            from edgeq_tflite import vela

            vela.check_settings(_vela_settings(job))  # names Vela does not know, before any conversion
        table = RuleTable.load(HERE / job.profile.rules["onnx"])
        findings = table.evaluate(onnx_layers_with_producers(job.graph(job.body_onnx)))
        return _collapse(findings)

    # --- build: convert each head variant, then describe each file -------------------------------------------

    def build(self, job: Job) -> BuildResult:
        from edgeq_tflite.convert import Wanted, convert_onnx, write_calibration

        opts = job.options
        work = job.staging / f".{job.target}-work"  # one per target: --jobs builds a family's targets at once
        out_dir = _mkdir(job.staging / job.target)
        result = BuildResult([])
        try:
            calib = work / "calibration.npy"
            n = write_calibration(job.calibration, _mkdir(calib.parent) / calib.name)
            heads, granularities, kinds = (opts.heads[:1], opts.granularity[:1], self._activations(job)[:1]) \
                if job.primary_only else (opts.heads, opts.granularity, self._activations(job))
            log(f"{job.target}: {n} calibration images; heads {', '.join(heads)}; "
                f"{', '.join(granularities)}; {', '.join(_KIND[a] for a in kinds)} "
                f"({', '.join(f'{_io_dtype(opts, a)} I/O' for a in kinds)})")
            for rank, head in enumerate(heads):
                onnx_path = self._onnx_for(job, head, work)
                files = [(out_dir / f"{_name(job.target, head, g, a)}.tflite", g, a) for a in kinds
                         for g in granularities]
                log(f"{job.target}: converting the {head} variant ({onnx_path.name})")
                conv = convert_onnx(onnx_path, calib, [Wanted(p, g, a, _io_dtype(opts, a)) for p, g, a in files],
                                    work / head, f"{job.target}-{head}", job.log_dir)
                for number, (path, granularity, kind) in enumerate(files):
                    role = Role.DEPLOYABLE if rank == 0 and number == 0 else Role.COMPARISON
                    artifact, findings = self._describe(job, head, granularity, kind, path, conv, role,
                                                        log_dir=work / head)
                    result.artifacts.append(artifact)
                    result.findings += findings
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return result

    @staticmethod
    def _activations(job: Job) -> list[str]:
        """The activation types to build, first the deployable one: the options' list, or 16x8 alone where the
        job keeps layers in the higher precision (the search's step on a scheme whose higher precision is the
        whole model's: the converter has no per-op 16x8)."""
        if WHOLE_MODEL in job.keep_float:  # only the search puts it there; --keep-float is refused on this scheme
            return ["int16"]
        return list(job.options.activations)

    def _onnx_for(self, job: Job, head: str, work: Path) -> Path:
        if head == "detached":
            return job.body_onnx
        if head == "pixel":
            return job.full_onnx
        import onnx

        from edgeq.plugin import attach_head

        path = _mkdir(work / head) / f"{job.body_onnx.stem.removesuffix('-body')}-normalized.onnx"
        onnx.save(attach_head(onnx.load(str(job.body_onnx)), job.head, HeadLayout.NORMALIZED), str(path))
        return path

    def _describe(self, job: Job, head: str, granularity: str, kind: str, path: Path, conv, role: Role,
                  log_dir: Path) -> tuple[Artifact, list[Finding]]:
        """One converted file: verified full-integer (INT8 or 16x8, `kind`), mapped op by op, gated, compiled where
        the target has a compiler, and described for the report."""
        from edgeq_tflite.graph import read_tflite

        graph = read_tflite(path)
        _require_full_integer(job, path, graph, kind)
        table = self._op_table(job, path, graph)
        # every variant must build; only the primary (first) head is held to the fallback policy, the others
        # are comparisons in the report
        primary = HeadLayout(head) is HeadLayout(job.options.heads[0])
        job.fallback.enforce([f for f in table.findings if primary or f.severity is Severity.ERROR], where=path.stem)
        findings = [Finding(f.rule, f.severity, f"{path.stem}: {f.where}", f.message, f.fix)
                    for f in _collapse(table.findings)]
        companions = [path.with_name(f"{path.stem}-ops.md")]
        notes = [_HEAD_NOTES[head].format(kind={"int8": "INT8", "int16": "16x8"}[kind], head_json=f"{path.stem}-head.json"),
                 f"{_KIND_NOTE[kind]}, {granularity} weights, {_io_dtype(job.options, kind)} I/O, "
                 f"{conv.calibration_images} calibration images"
                 + (f" (conversion from edgeq's cache, {conv.cached[path.name]})" if path.name in conv.cached else ""),
                 table.summary()]
        if HeadLayout(head) is HeadLayout.DETACHED:
            head_json = path.with_name(f"{path.stem}-head.json")
            job.head.to_json(head_json)
            companions.insert(0, head_json)
        extra = _figures(job, head, granularity, kind, graph, table, conv, path)
        if job.profile.compiler == "vela":
            compiled_note, vela_findings = self._compile_vela(job, path, log_dir, extra, companions)
            notes.append(compiled_note)
            findings += vela_findings
        elif job.profile.compiler:
            notes.append(self._compile(job, path, log_dir, extra, companions))
        if job.profile.figures == "emulated":
            notes.append(f"accuracy emulated with LiteRT's {job.options.kernels} {_KIND[kind]} kernels")
        kernels = self._check_kernels(job, path)
        if kernels is not None:
            notes.append(kernels.note())
            extra["kernel_check"] = kernels.record()
        artifact = self._artifact(job, head, granularity, kind, path, role, "; ".join(notes), extra, companions,
                                  kernels)
        return artifact, findings

    def _check_kernels(self, job: Job, path: Path):
        """Reference kernels asked for: whether a faster LiteRT path computes exactly what they compute here."""
        if job.options.kernels != "reference":
            return None
        from edgeq_tflite.kernels import check_kernels

        images = [np.asarray(job.calibration[i], dtype=np.float32)
                  for i in range(min(job.options.kernel_check_images, len(job.calibration)))]
        check = check_kernels(path, images)
        log(f"{path.stem}: {check.note()}")
        return check

    def _op_table(self, job: Job, path: Path, graph):
        from edgeq_tflite.optable import build_op_table

        table = build_op_table(job.target, graph, HERE / job.profile.rules["tflite"])
        ops_md = path.with_name(f"{path.stem}-ops.md")
        ops_md.write_text(table.markdown(f"{path.stem}: per-op mapping"))
        log(f"{path.stem}: {table.summary()} (table: {ops_md.name})")
        for row in [r for r in table.rows if r.runs_on != table.accelerator][:12]:
            log(f"  #{row.index:<4} {row.op:<24} {row.runs_on:<8} {row.reason[:110]}")
        return table

    def _artifact(self, job: Job, head: str, granularity: str, kind: str, path: Path, role: Role, note: str,
                  extra: dict, companions: list[Path], kernels=None) -> Artifact:
        from edgeq_tflite.kernels import parallel_interpreters
        from edgeq_tflite.runner import LiteRTRunner

        layout = HeadLayout(head)
        resolver = ("BUILTIN_REF" if kernels is None or not kernels.identical else kernels.chosen) \
            if job.options.kernels == "reference" else "AUTO"
        reference, parallel = resolver == "BUILTIN_REF", parallel_interpreters()
        head_precision = "fp32" if layout is HeadLayout.DETACHED else None
        return Artifact(
            name=path.stem, target=job.target, variant=f"{_KIND[kind]}-{head}-{granularity}", path=path,
            precision=Precision.int8(head=head_precision) if kind == "int8" else
            Precision("int8", "int16", head_precision), role=role, layout=layout,
            status=job.profile.figures, note=note,
            open_runner=lambda: LiteRTRunner(path, head=job.head, layout=layout, resolver=resolver, parallel=parallel),
            measure_latency=job.profile.latency_meaningful, extra=dict(extra), companions=tuple(companions),
            slow_evaluation=reference)

    def _compile_vela(self, job: Job, path: Path, log_dir: Path, extra: dict,
                      companions: list[Path]) -> tuple[str, list[Finding]]:
        """Vela on the file (it runs here): `<name>_vela.tflite` beside it, its placement and estimates in the
        report; each op it leaves on the CPU is a fallback finding with its reason, held to the fallback policy."""
        from edgeq_tflite import vela

        compiled, log_file, report = vela.compile_model(path, _vela_settings(job), _mkdir(log_dir),
                                                        job.log_dir / f"{job.target}-vela.log",
                                                        job.options.compiler_timeout_s)
        companions += [compiled, log_file]
        extra["vela"] = report.to_dict()
        findings = [Finding("ethos-u.vela-cpu-op", Severity.FALLBACK, f"{path.stem}: {op['name']}",
                            f"Vela placed {op['op']} on the CPU: {op['reason']}",
                            "replace the op with one Vela maps (rules/ethos-u-onnx.yaml lists the usual ones), or "
                            "detach that part of the graph to the host")
                    for op in report.cpu_ops]
        primary = HeadLayout(extra["head"]) is HeadLayout(job.options.heads[0])
        if primary:
            job.fallback.enforce(findings, where=compiled.stem)
        log(f"{compiled.name}: {report.summary()}")
        ops_md = path.with_name(f"{path.stem}-ops.md")
        lines = ["", f"## Vela's placement ({compiled.name}): the authority", "", report.summary() + " (estimated).",
                 ""]
        lines += [f"- CPU: {op['op']} `{op['name']}`: {op['reason']}" for op in report.cpu_ops] or \
            ["Every op is on the NPU."]
        ops_md.write_text(ops_md.read_text() + "\n".join(lines) + "\n")
        return f"compiled {compiled.name} (not runnable here: no Ethos-U): {report.summary()} (estimated)", findings

    def _compile(self, job: Job, path: Path, log_dir: Path, extra: dict, companions: list[Path]) -> str:
        """The Edge TPU compiler where it is on PATH; else the script that runs it on a host that has it."""
        from edgeq_tflite import edgetpu

        compiler = edgetpu.compiler_path()
        if job.options.compile == "never" or compiler is None:
            script = edgetpu.write_script(path)
            if script not in companions:
                companions.append(script)
            extra["edgetpu_compiler"] = "not run" if compiler else "not on PATH"
            why = "compile: never" if compiler else "edgetpu_compiler is not on PATH (Coral's package feed only)"
            return f"{path.stem}_edgetpu.tflite not built: {why}; run {script.name} on a host with the compiler"
        compiled, figures = edgetpu.compile_model(path, _mkdir(log_dir), job.log_dir /
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


def _vela_settings(job: Job):
    from edgeq_tflite.vela import VelaSettings

    o = job.options
    return VelaSettings(o.accelerator_config, o.system_config, o.memory_mode,
                        Path(o.vela_config) if o.vela_config else None, o.optimise, o.sram_kib)


_KIND = {"int8": "int8", "int16": "16x8"}  # activation type -> how file names and notes say it
_KIND_NOTE = {"int8": "INT8 activations", "int16": "16x8 (int16 activations, int8 weights, int64 biases)"}


def _name(target: str, head: str, granularity: str, kind: str = "int8") -> str:
    return f"{target}-{_KIND[kind]}-{head}-{granularity}"


def _io_dtype(options, kind: str) -> str:
    """The file's integer I/O: the options' io_dtype for INT8, int16 for 16x8 (all the converter takes for it)."""
    return "int16" if kind == "int16" else options.io_dtype


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
        out.append(dataclasses.replace(group[0], where=where))
    return out


def _require_full_integer(job: Job, path: Path, graph, kind: str = "int8") -> None:
    if problems := full_integer_problems(graph, kind):
        kept = job.log_dir / f"{job.target}-full-integer.log"
        kept.write_text("\n".join(problems) + "\n")
        raise StageError("full-integer", f"{path.name} is not full-integer: {problems[0]}", str(kept))


def _figures(job: Job, head: str, granularity: str, kind: str, graph, table, conv, path: Path) -> dict:
    """The artifact's figures for report.json."""
    inp = graph.inputs[0]
    return OrderedDict(
        granularity=granularity, head=head, activations=kind, io_dtype=_io_dtype(job.options, kind),
        input_quantization={"scale": inp.scale[0], "zero_point": inp.zero_point[0]} if inp.scale else None,
        full_integer=True, ops=len(graph.layers), ops_on_accelerator=table.on_accelerator,
        accelerator=table.accelerator,
        first_unmapped_op=f"#{table.first_unmapped.index} {table.first_unmapped.op}" if table.first_unmapped else None,
        param_bytes=graph.param_bytes,
        findings=[f.one_line() for f in _collapse(table.findings)],
        fp32_conversion_rel_error=max(conv.fp32_rel_error.values()),
        # onnx2tf and calibration run once per head and are shared by its granularities
        export_s={"onnx2tf": conv.seconds.get("onnx2tf_s"), "calibrate": conv.seconds.get("calibrate_s"),
                  "quantize": conv.seconds.get(path.name)},
        kernels=job.options.kernels,
        conversion_cached=conv.cached.get(path.name),  # the cache key when the file was not converted by this run
    )


def full_integer_problems(graph, activations: str = "int8") -> list[str]:
    """Why a .tflite is not a true full-integer model of its kind (empty list: it is). `activations`: int8 (INT8
    or UINT8 activations and I/O, int32 biases) or int16 (16x8: int16 activations and I/O, int8 weights, int64
    biases). Every op's activations of that type; constants int8 weights, biases and int32 shape tensors; no
    DEQUANTIZE back to float."""
    features = ("int16",) if activations == "int16" else ("int8", "uint8")
    constants = (*features, "int8", "int32", "int64") if activations == "int16" else (*features, "int32")
    problems = []
    for t in [*graph.inputs, *graph.outputs]:
        if t.dtype not in features:
            problems.append(f"model I/O tensor {t.name} is {t.dtype}")
    for layer in graph.layers:
        if layer.op == "DEQUANTIZE":
            problems.append(f"op #{layer.index} DEQUANTIZE turns {layer.inputs[0].name} back to float")
        const = set(layer.attrs.get("const_inputs", ()))
        for t in (*layer.inputs, *layer.outputs):
            allowed = constants if t.name in const else features
            if t.dtype not in allowed:
                problems.append(f"op #{layer.index} {layer.op}: tensor {t.name} is {t.dtype}")
            elif t.dtype in ("int8", "uint8", "int16") and t.scale is None:
                problems.append(f"op #{layer.index} {layer.op}: tensor {t.name} has no quantization parameters")
    return problems
