"""TensorRT family: `tensorrt` (GPU, explicit Q/DQ INT8) and `dla` (Jetson Orin DLA, ONNX + calibration cache).

Imports without ModelOpt or TensorRT: both are imported inside the functions that use them.
"""

from edgeq_tensorrt.backend import DLAOptions, TensorRTBackend, TensorRTOptions

__all__ = ["DLAOptions", "TensorRTBackend", "TensorRTOptions"]
