"""Quantization-aware training for the TensorRT family with NVIDIA ModelOpt's PyTorch quantization (the library
NVIDIA's own QAT recipes and Ultralytics' `quantize=8` training use): fake quantization on the inputs and weights
of every convolution, symmetric INT8, per-channel weights, per-tensor activations, as TensorRT and DLA run them.

The ranges start where this target's PTQ starts: ModelOpt's calibrator for the job's method (entropy by default,
TensorRT's criterion) on the same calibration images, and stay fixed while the weights train (ModelOpt keeps
`amax` as a buffer). On DLA, layers the build keeps in FP16 (its last head convolutions, unless
`options.fp16_last_convs: false`) train without quantizers, as they run.

The export is the trained weights as a plain FP32 body ONNX, named exactly like the FP32 one (the quantizers are
removed first), because both emitters already know what to do with it: DLA wants ONNX without Q/DQ plus a
calibration cache, the GPU pipeline places and calibrates Q/DQ with ModelOpt's ONNX PTQ.
"""

from __future__ import annotations

from pathlib import Path

from edgeq.plugin import QuantAwareTraining

# ModelOpt's histogram searches with a stride of 16 bins: its entropy search over every bin takes minutes per model
_HISTOGRAM = {"default": ("entropy", {"stride": 16}), "entropy": ("entropy", {"stride": 16}),
              "mse": ("mse", {"stride": 16}),
              "percentile-99.99": ("percentile", {"percentile": 99.99}),
              "percentile-99.999": ("percentile", {"percentile": 99.999})}


class ModelOptQuantAwareTraining(QuantAwareTraining):
    library = "NVIDIA ModelOpt (PyTorch QAT)"
    requires = ("modelopt", "huggingface_hub")  # ModelOpt's torch plugins import huggingface_hub unconditionally

    def describe(self) -> str:
        method = _HISTOGRAM.get(self.job.calibration_method, ("max", {}))[0]
        kept = len(self._float_layers())
        return (f"{self.library}: convolution inputs and weights INT8 (symmetric; per-channel weights), ranges from "
                f"ModelOpt {method} calibration, fixed while the weights train"
                + (f"; {kept} layer(s) without quantizers (FP16 on {self.job.target})" if kept else ""))

    def prepare(self, graph, calibration: list):
        import torch
        from modelopt.torch.quantization import quantize

        def forward_loop(model):
            with torch.no_grad():
                for image in calibration:
                    model(image)

        config = {"quant_cfg": [{"quantizer_name": "*", "enable": False},
                                {"quantizer_name": "*weight_quantizer", "cfg": {"num_bits": 8, "axis": 0}},
                                {"quantizer_name": "*input_quantizer", "cfg": {"num_bits": 8, "axis": None}}],
                  "algorithm": "max"}
        quantized = quantize(graph.eval(), config, forward_loop)
        if self.job.calibration_method in _HISTOGRAM:
            _recalibrate_inputs(quantized, forward_loop, *_HISTOGRAM[self.job.calibration_method])
        for name in self._float_layers():
            module = quantized.get_submodule(name)
            for quantizer in ("input_quantizer", "weight_quantizer"):
                getattr(module, quantizer).disable()
        _disable_unseen(quantized)
        return quantized

    def _float_layers(self) -> list[str]:
        """Torch module names of the convolutions the target keeps out of INT8 (DLA's FP16 last convs)."""
        from edgeq_tensorrt.backend import TensorRTBackend

        plan = TensorRTBackend().quant_plan(self.job)
        return [conv_module(name, self.job) for name in plan.float_layers]

    def export(self, trained, path: Path) -> Path:
        """The trained weights, quantizers removed, through edgeq's own body export (same names as the FP32)."""
        import copy
        import shutil
        import tempfile

        from modelopt.torch.opt.dynamic import DynamicModule

        from edgeq.plugin import Detector, export_onnx

        plain = copy.deepcopy(trained.detection_model()).cpu().float().eval()  # ModelOpt's state sits on the graph
        for module in plain.modules():
            if isinstance(module, DynamicModule):
                module.export()  # back to the torch class it wraps
        job = self.job
        detector = Detector(source=Path(path.stem), module=plain, head=job.head, activations={}, trained=True)
        with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
            models = export_onnx(detector, Path(tmp))
            shutil.move(models.body, path)
        return path


def conv_module(onnx_name: str, job) -> str:
    """The module of a Conv node of edgeq's body ONNX, inside the training graph: `/model.4/m.0/cv1/conv/Conv` is
    `body.m.model.4.m.0.cv1.conv`; head convolutions are called directly by the body, so their scope lacks the
    head's index (`/cv2.0/cv2.0.2/Conv` is `body.m.model.22.cv2.0.2`)."""
    parts = onnx_name.strip("/").split("/")[:-1]
    if parts[0].startswith("model."):
        return "body.m." + ".".join(parts)
    return f"body.m.model.{_head_index(job)}." + ".".join(parts[1:])


def _head_index(job) -> int:
    import onnx

    names = [n.name for n in onnx.load(str(job.body_onnx)).graph.node if n.name.startswith("/model.")]
    return max(int(n.split("/")[1].split(".")[1]) for n in names) + 1


def _disable_unseen(model) -> None:
    """Quantizers of modules the body never runs (Detect's DFL conv) have no range: off, they run nowhere."""
    import torch
    from modelopt.torch.quantization.nn import TensorQuantizer

    for module in model.modules():
        if isinstance(module, TensorQuantizer) and module.is_enabled:
            amax = getattr(module, "amax", None)
            if amax is None or bool(torch.isnan(torch.as_tensor(amax)).any()):
                module.disable()


def _recalibrate_inputs(model, forward_loop, method: str, kwargs: dict) -> None:
    """Activation ranges from ModelOpt's histogram calibrator (entropy, MSE or percentile), weights from max."""
    from modelopt.torch.quantization.calib import HistogramCalibrator
    from modelopt.torch.quantization.model_calib import enable_stats_collection
    from modelopt.torch.quantization.nn import TensorQuantizer

    inputs = {id(m) for n, m in model.named_modules() if isinstance(m, TensorQuantizer)
              and n.endswith("input_quantizer") and m.is_enabled}
    for _, module in model.named_modules():
        if id(module) in inputs:
            module._calibrator = HistogramCalibrator(num_bits=8, axis=None, unsigned=False)
    enable_stats_collection(model)
    forward_loop(model)
    for _, module in model.named_modules():
        if not isinstance(module, TensorQuantizer) or module._disabled:
            continue
        if id(module) in inputs:  # strict=False: modules the body never runs (Detect's DFL conv) saw nothing
            module.load_calib_amax(method, strict=False, **kwargs)
        else:
            module.load_calib_amax(strict=False)
        module.enable_quant()
        module.disable_calib()
