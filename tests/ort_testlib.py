"""Small real test targets on ONNX Runtime (no OpenVINO needed) and what they share: `ort-int8` and `ort-int8-b`
(ONNX Runtime's static INT8 quantizer on the whole model), `failing` (its converter crashes), `exotic` (its
dependency is not installed)."""

import shutil
from pathlib import Path

from edgeq.analyze.scheme import HigherPrecision, QuantScheme
from edgeq.backend import Artifact, Backend, BackendOptions, BuildResult, DeploySteps, Job, TargetProfile
from edgeq.errors import StageError
from edgeq.head import HeadLayout
from edgeq.runners.onnxruntime import OnnxRuntimeRunner


def calibration_reader(job):
    """ONNX Runtime's CalibrationDataReader over a Job's calibration batches."""
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = iter(job.calibration)

        def get_next(self):
            item = next(self.items, None)
            return None if item is None else {"images": item}

    return Reader()


class OrtOptions(BackendOptions):
    quantize: bool = True


class OrtInt8Backend(Backend):
    """ONNX Runtime's static INT8 quantizer on the full model, head included (the naive export)."""

    family, extra, requires = "ort-test", "ort-test", ("onnxruntime",)
    profiles = {name: TargetProfile(description="test target", accelerator="CPU", figures="emulated",
                                    latency_meaningful=False, fallback_default=True)
                for name in ("ort-int8", "ort-int8-b")}

    def options_model(self, target):
        return OrtOptions

    def check(self, job: Job):
        return []

    def build(self, job: Job):
        from onnxruntime.quantization import QuantFormat, quantize_static

        out = job.staging / job.target / "model-int8.onnx"  # the contract: artifacts in the target's folder
        out.parent.mkdir(parents=True, exist_ok=True)
        if job.options.quantize:
            quantize_static(str(job.full_onnx), str(out), calibration_reader(job), quant_format=QuantFormat.QDQ)
        else:  # the FP32 graph as the artifact: outputs worth decoding (the naive INT8 rounds every score to 0)
            shutil.copyfile(job.full_onnx, out)
        return BuildResult([Artifact(name=job.target, target=job.target, variant="int8", path=out, precision="int8",
                                     layout=HeadLayout.PIXEL, status="emulated", note="naive: head quantized",
                                     open_runner=lambda: OnnxRuntimeRunner(out))])


    def deploy_steps(self, job: Job, artifacts: list[Artifact]) -> DeploySteps:
        return DeploySteps(runtime="ONNX Runtime", device_needs="a CPU with onnxruntime",
                           script=Path(__file__).with_name("ort_kit_infer.py"), build=("echo nothing to build",))


class FailingBackend(OrtInt8Backend):
    profiles = {"failing": TargetProfile(description="always fails in its converter", accelerator="CPU",
                                         figures="emulated", latency_meaningful=False, fallback_default=True)}

    def build(self, job: Job):
        (job.staging / job.target).mkdir(parents=True, exist_ok=True)
        (job.staging / job.target / "half-written.bin").write_bytes(b"x" * 100)
        log = job.log_dir / "failing-convert.log"
        log.write_text("converter said: boom\n")
        raise StageError("convert", "the converter crashed", str(log))


class FailingTrialBackend(FailingBackend):
    """Fails in its converter too, and offers calibration methods: `auto` reaches it through trial builds."""

    profiles = {"failing-trial": TargetProfile(
        description="fails while auto calibration tries its methods", accelerator="CPU", figures="emulated",
        latency_meaningful=False, fallback_default=True, quantization=QuantScheme(
            weights="per-channel", activations="asymmetric", ops=("Conv",), default_method="min-max",
            methods={"minmax": "native", "percentile-99.999": "native"},
            higher_precision=HigherPrecision(precision="fp32", how="test")))}


class MissingDepBackend(OrtInt8Backend):
    extra, requires = "exotic", ("no_such_module_for_edgeq",)
    profiles = {"exotic": TargetProfile(description="needs a module that is not installed", accelerator="CPU",
                                        figures="emulated", latency_meaningful=False, fallback_default=True)}


def toy_plugins() -> dict:
    ort = OrtInt8Backend()
    return {"ort-int8": ort, "ort-int8-b": ort, "failing": FailingBackend(), "failing-trial": FailingTrialBackend(),
            "exotic": MissingDepBackend()}


def tiny_conv_onnx(path: Path, size: int = 32, out_channels: int = 1) -> Path:
    """A 1x1 convolution `images` (1, 3, size, size) -> `output0`: the smallest valid model file, for tests of how
    a runtime takes (or refuses) a file rather than of what it computes."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph([helper.make_node("Conv", ["images", "w"], ["output0"])], "tiny",
                              [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, size, size])],
                              [helper.make_tensor_value_info("output0", TensorProto.FLOAT,
                                                             [1, out_channels, size, size])],
                              [numpy_helper.from_array(np.ones((out_channels, 3, 1, 1), np.float32), "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.save(model, str(path))
    return path
