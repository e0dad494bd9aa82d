"""TFLite family: full-integer TFLite for a CPU (`tflite`), the Coral Edge TPU (`edgetpu`) and the NXP
i.MX 8M Plus NPU (`nxp`). Imports without TensorFlow, onnx2tf or LiteRT: those load inside the conversion
worker process and the runner."""

from edgeq_tflite.backend import TFLiteBackend

__all__ = ["TFLiteBackend"]
