"""Helpers of the analyze tests: a scheme to vary, two small real targets on ONNX Runtime's quantizer, and the
export arguments they share."""


def scheme(**changes):
    from edgeq.analyze.scheme import HigherPrecision, QuantScheme

    base = {"weights": "per-channel", "activations": "asymmetric", "ops": ("Conv", "Add", "Mul", "Concat"),
            "default_method": "min-max", "methods": {"minmax": "native"},
            "higher_precision": HigherPrecision(precision="fp32", how="test")}
    return QuantScheme(**{**base, **changes})


# ORT quantizes these ops' inputs only (not their outputs), as NNCF and TensorRT place quantizers: a kept Conv's
# input stays float
QUANTIZED_OPS = ("Conv", "Add", "MaxPool")


def ort_backends():
    """Two small real targets on ONNX Runtime's static INT8 quantizer (per-channel weights, asymmetric
    activations, decode head excluded): `ort-mixed` keeps layers in float through nodes_to_exclude, as
    OpenVINO's ignored scope does; `ort-fullint` describes a full-integer chip that has no float layers."""
    from edgeq.analyze.scheme import HigherPrecision, QuantScheme
    from edgeq.backend import Artifact, Backend, BackendOptions, BuildResult, QuantPlan, TargetProfile
    from edgeq.head import HEAD_PREFIX, HeadLayout
    from edgeq.runners.onnxruntime import OnnxRuntimeRunner

    common = {"weights": "per-channel", "activations": "asymmetric", "ops": QUANTIZED_OPS,
              "default_method": "ONNX Runtime min-max",
              "methods": {"minmax": "native: ONNX Runtime MinMax", "percentile-99.999": "native: ONNX Runtime Percentile"},
              "not_offered": "the test quantizer has min-max and percentile only"}
    mixed = QuantScheme(**common, higher_precision=HigherPrecision(precision="fp32", how="nodes_to_exclude"))
    fullint = QuantScheme(**common, float_layer_cost="cut", no_higher_precision_why="the test chip runs integer ops "
                          "only", training_remedy="quantization-aware training")

    def profile(scheme):
        return TargetProfile(description="test target", accelerator="CPU", figures="emulated",
                             latency_meaningful=False, fallback_default=True, quantization=scheme)

    class OrtMixedBackend(Backend):
        family, extra, requires = "ort-mixed", "ort-mixed", ("onnxruntime",)
        profiles = {"ort-mixed": profile(mixed), "ort-fullint": profile(fullint)}

        def options_model(self, target):
            return BackendOptions

        def check(self, job):
            return []

        def quant_plan(self, job):
            return QuantPlan(job.profile.quantization)

        def build(self, job):
            import onnx
            from onnxruntime.quantization import (
                CalibrationMethod,
                QuantFormat,
                QuantType,
                quantize_static,
            )
            from ort_testlib import calibration_reader

            percentile = job.calibration_method == "percentile-99.999"
            head = [n.name for n in onnx.load(str(job.full_onnx)).graph.node if n.name.startswith(HEAD_PREFIX)]
            out = job.staging / "model-int8.onnx"
            quantize_static(str(job.full_onnx), str(out), calibration_reader(job), quant_format=QuantFormat.QDQ,
                            per_channel=True,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            op_types_to_quantize=list(QUANTIZED_OPS), nodes_to_exclude=[*head, *job.keep_float],
                            calibrate_method=CalibrationMethod.Percentile if percentile else CalibrationMethod.MinMax,
                            extra_options={"OpTypesToExcludeOutputQuantization": list(QUANTIZED_OPS),
                                           "CalibPercentile": 99.999})
            return BuildResult([Artifact(name=f"{job.target}-int8", target=job.target, variant="int8", path=out,
                                         precision="int8+fp32-head", layout=HeadLayout.PIXEL, status="emulated",
                                         note=f"{len(job.keep_float)} kept, {job.calibration_method}",
                                         open_runner=lambda: OnnxRuntimeRunner(out))])

    backend = OrtMixedBackend()
    return {"ort-mixed": backend, "ort-fullint": backend}


def export_args(tmp_path, target, model, data, *extra):
    return ["export", "--target", target, "--model", model, "--imgsz", 320, "--data", data, "--calib-images", 24,
            "--val-images", 40, "--out", tmp_path / "out", "--no-progress", "--set", "evaluation.latency_runs=0",
            "--set", "analysis.metric_images=8", "--set", "analysis.map_layers=3", "--set",
            "analysis.map_images=24", *extra]
