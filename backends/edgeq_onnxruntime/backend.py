"""ONNX Runtime family: static INT8 quantization for ONNX Runtime's CPU execution provider (x86 and Arm).

ONNX Runtime's own quantizer (`onnxruntime.quantization.quantize_static`) writes a Q/DQ ONNX; at load time ORT's
graph optimizer fuses each DequantizeLinear -> Conv -> QuantizeLinear into its integer kernels (QLinearConv,
MatMulInteger paths), so the file edgeq scores here is the file the device runs, with the same runtime: figures
and latency are measured (latency is this machine's; an Arm board's differs, its accuracy does not).

Artifacts, by role:
    onnxruntime-int8                (deployable) the body (images -> box_i/cls_i) in INT8, the decode head in FP32
                                    on the host (hostside.py, shipped in the kit): boxes in pixels and 0..1 scores
                                    never share a range, and the host decode is a few hundred float ops
    onnxruntime-int8-attached-head  (comparison) the whole model, the decode head excluded from quantization
    onnxruntime-fp32                (reference) the FP32 ONNX, timed beside them

Which ops are quantized is an option (`options.ops`, default Conv and MatMul: the ones ORT's integer kernels gain
most on, as Ultralytics' own ONNX INT8 export does); per-channel weights; uint8 activations with int8 weights
(U8S8, what VNNI and Arm's dot-product kernels take) unless options say otherwise.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Literal

from pydantic import field_validator

from edgeq.plugin import (
    HEAD_PREFIX,
    INPUT_NAME,
    Artifact,
    Backend,
    BackendOptions,
    BuildResult,
    DeploySteps,
    EdgeqError,
    Finding,
    HeadLayout,
    Job,
    OnnxRuntimeRunner,
    Precision,
    QuantPlan,
    Role,
    RuleTable,
    StageError,
    load_profiles,
    log,
    onnx_layers,
)

HERE = Path(__file__).parent
# edgeq's calibration methods -> ONNX Runtime's CalibrationMethod and its extra options
_METHODS = {"default": ("MinMax", {}), "minmax": ("MinMax", {}), "entropy": ("Entropy", {}),
            "percentile-99.99": ("Percentile", {"CalibPercentile": 99.99}),
            "percentile-99.999": ("Percentile", {"CalibPercentile": 99.999})}


class OnnxRuntimeOptions(BackendOptions):
    ops: tuple[str, ...] = ("Conv", "MatMul")  # op types whose inputs (and weights) are quantized
    per_channel: bool = True
    activation_type: Literal["uint8", "int8"] = "uint8"  # U8S8: what x86 VNNI and Arm sdot/udot kernels take
    symmetric_activations: bool = False
    reduce_range: bool = False  # 7-bit weights: only for x86 CPUs without VNNI, whose U8S8 path can saturate
    compare_attached_head: bool = True  # also build the whole model with its head in FP32 (a comparison)

    @field_validator("ops")
    @classmethod
    def _quantizable(cls, ops: tuple[str, ...]) -> tuple[str, ...]:
        """Only op types ONNX Runtime's QDQ quantizer handles (its own registry): another would be silently left
        in FP32."""
        from onnxruntime.quantization.registry import QDQRegistry

        unknown = [op for op in ops if op not in QDQRegistry]
        if unknown or not ops:
            raise ValueError(f"{', '.join(unknown) or 'an empty list'}: ONNX Runtime's QDQ quantizer takes "
                             f"{', '.join(sorted(QDQRegistry))}")
        return ops


class OnnxRuntimeBackend(Backend):
    family = "onnxruntime"
    extra = "onnxruntime"
    requires = ("onnxruntime",)
    tools = ("onnxruntime",)
    profiles = load_profiles(HERE / "profiles.yaml")

    def options_model(self, target: str) -> type[BackendOptions]:
        return OnnxRuntimeOptions

    def quant_plan(self, job: Job) -> QuantPlan:
        """The profile's scheme with the options' op set and activation symmetry."""
        opts: OnnxRuntimeOptions = job.options
        scheme = job.profile.quantization.model_copy(update={
            "ops": tuple(opts.ops), "outputs": tuple(opts.ops), "candidates": tuple(o for o in opts.ops if o in ("Conv", "MatMul", "Gemm")),
            "weights": "per-channel" if opts.per_channel else "per-tensor",
            "activations": "symmetric" if opts.symmetric_activations else "asymmetric"})
        return QuantPlan(scheme)

    def check(self, job: Job) -> list[Finding]:
        table = RuleTable.load(HERE / job.profile.rules["onnx"])
        return table.evaluate(onnx_layers(job.graph(job.full_onnx)))

    def build(self, job: Job) -> BuildResult:
        opts: OnnxRuntimeOptions = job.options
        out = job.staging / job.target
        out.mkdir(parents=True, exist_ok=True)
        work = job.staging / f".{job.target}-work"  # one per target, as in every family
        kept = f"; {len(job.keep_float)} layer(s) kept in FP32" if job.keep_float else ""
        what = (f"ONNX Runtime static INT8 ({', '.join(opts.ops)}; {'per-channel' if opts.per_channel else 'per-tensor'} "
                f"weights, {opts.activation_type} activations, calibration {job.calibration_method}{kept})")
        artifacts = []
        try:
            body = self._quantize(job, job.body_onnx, out / "model-int8.onnx", work, ())
            head_json = out / "model-int8-head.json"
            job.head.to_json(head_json)
            artifacts.append(Artifact(
                name=f"{job.target}-int8", target=job.target, variant="int8", path=body, role=Role.DEPLOYABLE,
                precision=Precision.int8(head="fp32", keep=job.keep_float), layout=HeadLayout.DETACHED,
                status=job.profile.figures, note=f"{what}; decode head in FP32 on the host (hostside.py)",
                open_runner=lambda: OnnxRuntimeRunner(body), measure_latency=job.profile.latency_meaningful,
                companions=(head_json,)))
            if opts.compare_attached_head and not job.primary_only:
                head = [n.name for n in job.graph(job.full_onnx).graph.node if n.name.startswith(HEAD_PREFIX)]
                full = self._quantize(job, job.full_onnx, out / "model-int8-attached-head.onnx", work, head)
                artifacts.append(Artifact(
                    name=f"{job.target}-int8-attached-head", target=job.target, variant="int8-attached-head",
                    path=full, role=Role.COMPARISON, precision=Precision.int8(head="fp32", keep=job.keep_float),
                    layout=HeadLayout.PIXEL, status=job.profile.figures,
                    note=f"{what}; decode head inside, excluded from quantization",
                    open_runner=lambda: OnnxRuntimeRunner(full), measure_latency=job.profile.latency_meaningful))
            if not job.primary_only:
                fp32 = out / "model-fp32.onnx"
                shutil.copyfile(job.full_onnx, fp32)
                artifacts.append(Artifact(
                    name=f"{job.target}-fp32", target=job.target, variant="fp32", path=fp32, role=Role.REFERENCE,
                    precision=Precision.parse("fp32"), layout=HeadLayout.PIXEL, status=job.profile.figures,
                    note="FP32 ONNX, timed beside the INT8 files", open_runner=lambda: OnnxRuntimeRunner(fp32),
                    measure_latency=job.profile.latency_meaningful))
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return BuildResult(artifacts)

    def _quantize(self, job: Job, source: Path, target: Path, work: Path, exclude: list[str] | tuple) -> Path:
        """quantize_static on `source` into `target`; its temporary models stay in `work`."""
        import tempfile

        from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

        opts: OnnxRuntimeOptions = job.options
        method, extra = _METHODS[job.calibration_method]
        work.mkdir(parents=True, exist_ok=True)
        log(f"{job.target}: quantizing {source.name} ({len(job.calibration)} calibration images, {method})")
        previous, tempfile.tempdir = tempfile.tempdir, str(work)  # ORT's calibrator writes augmented models there
        try:
            quantize_static(
                str(source), str(target), _calibration_reader(job), quant_format=QuantFormat.QDQ,
                op_types_to_quantize=list(opts.ops), per_channel=opts.per_channel, reduce_range=opts.reduce_range,
                activation_type=QuantType.QUInt8 if opts.activation_type == "uint8" else QuantType.QInt8,
                weight_type=QuantType.QInt8, nodes_to_exclude=[*exclude, *job.keep_float],
                calibrate_method=getattr(CalibrationMethod, method),
                extra_options={"ActivationSymmetric": opts.symmetric_activations, "WeightSymmetric": True,
                               **extra})
        except EdgeqError:
            raise
        except Exception as exc:  # noqa: BLE001 - ORT's quantizer raises anything; one line, the log keeps it
            import traceback

            log_path = job.log_dir / f"{job.target}-quantize.log"
            log_path.write_text(traceback.format_exc())
            raise StageError("onnxruntime-quantize", f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}",
                             str(log_path)) from None
        finally:
            tempfile.tempdir = previous
        return target

    def deploy_steps(self, job: Job, artifacts: list[Artifact]) -> DeploySteps:
        import onnxruntime

        version = onnxruntime.__version__
        return DeploySteps(
            runtime=f"ONNX Runtime {version} (`pip install onnxruntime=={version}`; the Q/DQ file loads in any later "
                    "release, and in onnxruntime builds for Arm64 Linux and Android)",
            device_needs="a CPU (x86-64 with AVX2, VNNI for the fastest INT8; or 64-bit Arm, dot-product extension "
                         "for the fastest INT8), Python 3 with numpy, opencv-python-headless and onnxruntime",
            script=HERE / "kit_infer.py",
            input_note="The Q/DQ file takes that float32 tensor as it is; its first QuantizeLinear makes it INT8.",
            run_example="python3 infer.py image.jpg                       # the deployable file, head decoded here\n"
                        "python3 infer.py image.jpg --threads 4           # intra-op threads (default: all cores)")


def _calibration_reader(job: Job):
    """ONNX Runtime's CalibrationDataReader over the job's calibration batches (float32 NCHW in [0, 1])."""
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.indices = iter(range(len(job.calibration)))

        def get_next(self):
            index = next(self.indices, None)
            return None if index is None else {INPUT_NAME: job.calibration[index]}

    return Reader()
