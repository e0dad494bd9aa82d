"""OpenVINO backend: NNCF PTQ with the decode head kept in FP32 through NNCF's ignored scope.

NNCF's CPU configuration quantizes weights per-channel and activations per-tensor. The head's DFL softmax,
sigmoid and box arithmetic are excluded by name (`edgeq_head/...`) when `detach_head` is on: boxes in
pixels and scores in 0..1 never share an INT8 range, at the cost of a few float ops on the CPU.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from edgeq.plugin import (
    HEAD_PREFIX,
    Artifact,
    Backend,
    BackendOptions,
    BuildResult,
    DeploySteps,
    Finding,
    HeadLayout,
    Job,
    Precision,
    QuantAwareTraining,
    QuantPlan,
    Role,
    RuleTable,
    bar,
    load_profiles,
)
from edgeq_openvino.runner import OpenVINORunner, import_openvino

HERE = Path(__file__).parent


class OpenVINOOptions(BackendOptions):
    preset: Literal["performance", "mixed"] = "mixed"  # mixed: asymmetric activations (SiLU goes negative)
    subset_size: int = 300  # calibration images NNCF uses (capped by calibration.images)
    fast_bias_correction: bool = True
    detach_head: bool = True  # decode head out of quantization (NNCF ignored scope)
    compare_attached_head: bool = True  # also build the fully quantized variant for the report


class OpenVINOBackend(Backend):
    family = "openvino"
    extra = "openvino"
    requires = ("openvino", "nncf")
    tools = ("openvino", "nncf")
    profiles = load_profiles(HERE / "profiles.yaml")

    def options_model(self, target: str) -> type[BackendOptions]:
        return OpenVINOOptions

    def quant_plan(self, job: Job) -> QuantPlan:
        """The profile's scheme, made symmetric by the performance preset; the head is quantized when not detached."""
        opts: OpenVINOOptions = job.options
        scheme = job.profile.quantization
        if opts.preset == "performance":
            scheme = scheme.model_copy(update={"activations": "symmetric"})
        return QuantPlan(scheme, head_quantized=not opts.detach_head)

    def check(self, job: Job) -> list[Finding]:
        from edgeq.plugin import onnx_layers

        table = RuleTable.load(HERE / job.profile.rules["onnx"])
        return table.evaluate(onnx_layers(job.graph(job.full_onnx)))

    def build(self, job: Job) -> BuildResult:
        ov = import_openvino()

        opts: OpenVINOOptions = job.options
        core = ov.Core()
        artifacts = []
        if not job.primary_only:
            fp32 = _read_onnx(ov, job.full_onnx)
            fp32_path = job.staging / job.target / "openvino-fp32" / "model.xml"
            ov.save_model(_at_batch(fp32, job.batch), str(fp32_path), compress_to_fp16=False)
            artifacts.append(self._artifact(job, "openvino-fp32", "fp32", fp32_path, Precision.parse("fp32"),
                                            Role.REFERENCE, "FP32 IR"))
        # (detach head, variant, role, note): the deployable one first, the other head treatment as a comparison
        variants = [(True, "int8", Role.DEPLOYABLE, "INT8, decode head in FP32 (NNCF ignored scope)")] \
            if opts.detach_head else []
        if (opts.compare_attached_head and not job.primary_only) or not opts.detach_head:
            variants.append((False, "int8-attached-head", Role.COMPARISON if opts.detach_head else Role.DEPLOYABLE,
                             "INT8 including the decode head (boxes and scores share INT8 ranges)"))
        if job.qat_onnx is not None:
            path = job.staging / job.target / "openvino-int8-qat" / "model.xml"
            ov.save_model(_int8_weights(_at_batch(core.read_model(str(_with_head(job))), job.batch)), str(path),
                          compress_to_fp16=False)
            head = "decode head quantized too" if not opts.detach_head else "decode head in FP32"
            artifacts.insert(0, self._artifact(job, "openvino-int8-qat", "int8-qat", path,
                                               Precision.int8(head=None if not opts.detach_head else "fp32"),
                                               Role.QAT, f"INT8 from quantization-aware training (NNCF, {head}); "
                                               f"{opts.preset} preset"))
        kept = f"; {len(job.keep_float)} layer(s) kept in FP32" if job.keep_float else ""
        for detach, variant, role, note in variants:
            path = job.staging / job.target / f"openvino-{variant}" / "model.xml"
            quantized = self._quantize(_read_onnx(ov, job.full_onnx), job, detach)  # calibrated at batch 1
            ov.save_model(_at_batch(quantized, job.batch), str(path), compress_to_fp16=False)
            precision = Precision.int8(head="fp32" if detach else None, keep=job.keep_float)
            artifacts.append(self._artifact(job, f"openvino-{variant}", variant, path, precision, role,
                                            f"{note}; {opts.preset} preset; calibration {job.calibration_method}"
                                            f"{kept}"))
        return BuildResult(artifacts)

    def deploy_steps(self, job: Job, artifacts: list[Artifact]) -> DeploySteps:
        version = import_openvino().__version__.split("-")[0]
        return DeploySteps(
            runtime=f"OpenVINO Runtime {version} (`pip install openvino=={version}`; the IR loads in any later "
                    "release)",
            device_needs="an x86-64 CPU (AVX2; VNNI or AMX runs INT8 fastest), Python 3 with numpy and "
                         "opencv-python-headless, and OpenVINO Runtime",
            script=HERE / "kit_infer.py",
            input_note="The IR takes that float32 tensor as it is; its first layers quantize it to INT8.",
            run_example="python3 infer.py image.jpg                # the default file, on the CPU\n"
                        "python3 infer.py image.jpg --model openvino-fp32/model.xml --device GPU")

    def quantization_aware(self, target: str) -> type[QuantAwareTraining]:
        return NNCFQuantAwareTraining

    def runner_for(self, path: Path) -> OpenVINORunner | None:
        return OpenVINORunner(path) if path.suffix.lower() == ".xml" else None

    def _artifact(self, job: Job, name: str, variant: str, path: Path, precision: Precision, role: Role,
                  note: str) -> Artifact:
        return Artifact(name=name, target=job.target, variant=variant, path=path, precision=precision, role=role,
                        layout=HeadLayout.PIXEL, status=job.profile.figures, note=note,
                        open_runner=lambda: OpenVINORunner(path), measure_latency=job.profile.latency_meaningful,
                        files=(path, path.with_suffix(".bin")))

    def _quantize(self, model, job: Job, detach_head: bool):
        import logging

        import nncf

        nncf.set_log_level(logging.WARNING)

        opts: OpenVINOOptions = job.options
        subset = min(opts.subset_size, len(job.calibration))
        images = bar(job.calibration[:subset], desc=f"calibrate ({'fp32 head' if detach_head else 'all int8'})",
                     enabled=job.progress, total=subset)
        ignored = nncf.IgnoredScope(patterns=[f"{HEAD_PREFIX}.*"] if detach_head else [],
                                    names=_operations_of(model, job.keep_float))
        return nncf.quantize(model, nncf.Dataset(list(images)), ignored_scope=ignored, **_nncf_parameters(job))


def _nncf_parameters(job: Job) -> dict:
    """What NNCF is told for this job, the same for the PTQ of the IR and the QAT of the torch graph."""
    import nncf

    opts: OpenVINOOptions = job.options
    preset = {"performance": nncf.QuantizationPreset.PERFORMANCE, "mixed": nncf.QuantizationPreset.MIXED}
    advanced = nncf.AdvancedQuantizationParameters(
        activations_range_estimator_params=_range_estimator(job.calibration_method))
    return {"preset": preset[opts.preset], "subset_size": min(opts.subset_size, len(job.calibration)),
            "fast_bias_correction": opts.fast_bias_correction, "advanced_parameters": advanced}


class NNCFQuantAwareTraining(QuantAwareTraining):
    """NNCF's PyTorch quantization: its CPU hardware configuration places FakeQuantize as it does for the IR
    (per-channel symmetric weights, per-tensor activations, asymmetric with the mixed preset), the same range
    estimators and fast bias correction on the same images start it, and its quantizer ranges train with the
    weights. With `detach_head: false` the graph holds edgeq's decode head, quantized like the PTQ IR's."""

    library = "NNCF (PyTorch QAT)"
    requires = ("nncf",)

    @property
    def head_quantized(self) -> bool:
        return not self.job.options.detach_head

    def describe(self) -> str:
        opts: OpenVINOOptions = self.job.options
        head = "decode head quantized too" if not opts.detach_head else "decode head in FP32"
        return (f"{self.library}, CPU configuration, {opts.preset} preset, {head}, ranges from NNCF's "
                f"{self.job.calibration_method} calibration, trained with the weights")

    def prepare(self, graph, calibration: list):
        import logging
        import os

        # NNCF compiles its torch extension on first use and gives up after 60 s, which a loaded 2-core machine
        # exceeds; a first build may take minutes
        os.environ.setdefault("NNCF_EXTENSION_LOAD_TIMEOUT", "900")
        import nncf

        nncf.set_log_level(logging.WARNING)
        return nncf.quantize(graph.eval(), nncf.Dataset(calibration), **_nncf_parameters(self.job))

    def export(self, trained, path: Path) -> Path:
        """An ONNX whose FakeQuantize nodes (NNCF's export) OpenVINO reads as its own; the body alone unless
        the head was trained quantized (`build` attaches the FP32 head then)."""
        import warnings

        import torch

        outputs = [*self.job.head.body_outputs, *(["output0"] if self.head_quantized else [])]
        trained = trained.cpu().eval()
        example = torch.zeros(1, 3, self.job.head.imgsz, self.job.head.imgsz)
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(trained, (example,), str(path), opset_version=17, input_names=["images"],
                              output_names=outputs, dynamo=False)
        return path


def _int8_weights(model):
    """Store the QAT graph's weights as the INT8 they are quantized to (OpenVINO's own weight compression of
    FakeQuantize'd constants, bit-identical outputs): as exported they are FP32 behind a FakeQuantize, an IR three
    times the PTQ one's size."""
    from openvino._offline_transformations import compress_quantize_weights_transformation

    compress_quantize_weights_transformation(model)
    return model


def _with_head(job: Job) -> Path:
    """The QAT ONNX ending in output0: as trained when the head was in it, else with edgeq's FP32 decode head."""
    import onnx

    from edgeq.plugin import OUTPUT_NAME, attach_head

    model = onnx.load(str(job.qat_onnx))
    if OUTPUT_NAME in [o.name for o in model.graph.output]:
        keep = [o for o in model.graph.output if o.name == OUTPUT_NAME]
        del model.graph.output[:]
        model.graph.output.extend(keep)
    else:
        model = attach_head(model, job.head, HeadLayout.PIXEL)
    path = job.staging / "openvino-int8-qat.onnx"
    onnx.save(model, str(path))
    return path


def _read_onnx(ov, path: Path):
    """The ONNX as OpenVINO's converter makes it: `convert_model` runs the front end's fusions (`Core.read_model`
    does not), so ONNX's Sigmoid + Mul becomes one Swish. That is what NNCF must see: given the two ops, it
    quantizes both inputs of the Multiply (x, and sigmoid(x) in 0..1) at every SiLU, 57 extra quantizers on a
    YOLOv8n that `yolo export format=openvino int8=True` (PyTorch's SiLU converts to Swish) does not have."""
    return ov.convert_model(str(path))


def _operations_of(model, layers: tuple[str, ...]) -> list[str]:
    """The OpenVINO operations an ONNX node became: its friendly name, and `<name>/...` for the parts it was split
    into (a Conv with bias is `<name>/WithoutBiases` + an Add named `<name>`); ignoring only the Add would leave
    the convolution's input quantized."""
    wanted = set(layers)
    return [op.get_friendly_name() for op in model.get_ops()
            if op.get_friendly_name() in wanted or op.get_friendly_name().split("/WithoutBiases")[0] in wanted]


def _range_estimator(method: str):
    """NNCF's activation range estimator for an edgeq calibration method (profiles.yaml says which are offered)."""
    from nncf.quantization.range_estimator import (
        AggregatorType,
        RangeEstimatorParameters,
        RangeEstimatorParametersSet,
        StatisticsCollectorParameters,
        StatisticsType,
    )

    if method == "default":
        return RangeEstimatorParameters()  # empty: NNCF's own per-preset default
    if method == "minmax":
        return RangeEstimatorParametersSet.MINMAX
    if method == "mse":
        return RangeEstimatorParametersSet.HISTOGRAM
    outlier = 1.0 - float(method.removeprefix("percentile-")) / 100.0
    quantile = StatisticsCollectorParameters(statistics_type=StatisticsType.QUANTILE,
                                             aggregator_type=AggregatorType.MEAN, quantile_outlier_prob=outlier)
    return RangeEstimatorParameters(min=quantile, max=quantile)


def _at_batch(model, batch: int):
    """The IR with a static batch of `batch` (edgeq's ONNX copies the batch in its Reshapes, so it re-plans)."""
    if batch != 1:
        shape = list(model.inputs[0].get_partial_shape().to_shape())
        model.reshape({model.inputs[0]: [batch, *shape[1:]]})
    return model
