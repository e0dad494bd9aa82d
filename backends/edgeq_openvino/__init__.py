"""OpenVINO target (Intel CPUs): FP32 IR, and INT8 IR through NNCF post-training quantization."""

from edgeq_openvino.backend import OpenVINOBackend

__all__ = ["OpenVINOBackend"]
