"""ONNX Runtime target (x86 and Arm CPUs): static INT8 Q/DQ ONNX from ONNX Runtime's own quantizer."""

from edgeq_onnxruntime.backend import OnnxRuntimeBackend

__all__ = ["OnnxRuntimeBackend"]
