"""Rockchip NPUs (RK3588, RK3576, RK3566/68, RV1106): rknn-toolkit2's quantizer and simulator, in their own
interpreter."""

from edgeq_rknn.backend import RknnBackend

__all__ = ["RknnBackend"]
