"""Host-side decoding in numpy: the FP32 half of a detached head, then the head's selection of detections
(class-aware NMS, or Ultralytics' NMS-free top-k for end-to-end heads) for every layout.

The code is `edgeq.hostside`, the module every deploy kit ships, so the evaluator decodes exactly as the device
does; the detached decoder mirrors `edgeq.head.build_decode_head` operation for operation, and a test holds the
two to the same numbers.
"""

from edgeq.hostside import decode_detached, nms, postprocess, select_detections, to_pixel_predictions, topk_select

__all__ = ["decode_detached", "nms", "postprocess", "select_detections", "to_pixel_predictions", "topk_select"]
