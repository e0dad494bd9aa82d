#!/usr/bin/env python3
"""Run this kit's .rknn on one image on a Rockchip board's NPU and print the detections (edgeq deploy kit).

Needs the board's NPU driver and librknnrt.so, Python 3 with numpy, opencv-python-headless and rknn-toolkit-lite2
(`from rknnlite.api import RKNNLite`), all of the version the kit was built with (DEPLOY.md). The .rknn takes the
letterboxed image as uint8 NHWC RGB; its outputs come back as float32 in the ONNX model's NCHW shapes.
"""

import sys

import hostside
import numpy as np

CORE_MASKS = {"auto": "NPU_CORE_AUTO", "0": "NPU_CORE_0", "1": "NPU_CORE_1", "2": "NPU_CORE_2",
              "0_1": "NPU_CORE_0_1", "0_1_2": "NPU_CORE_0_1_2"}


def add_arguments(parser):
    parser.add_argument("--core-mask", choices=sorted(CORE_MASKS), default="auto",
                        help="NPU cores to run on (RK3588: 3 cores, RK3576: 2; other chips: auto)")


def open_model(path, args, head):
    from rknnlite.api import RKNNLite

    rknn = RKNNLite()
    if rknn.load_rknn(str(path)) != 0:
        raise SystemExit(f"infer.py: RKNNLite could not load {path}")
    if rknn.init_runtime(core_mask=getattr(RKNNLite, CORE_MASKS[args.core_mask])) != 0:
        raise SystemExit("infer.py: RKNNLite.init_runtime failed (is librknnrt.so of the kit's version installed?)")
    def infer(images):
        nhwc = np.clip(np.rint(images.transpose(0, 2, 3, 1) * 255.0), 0, 255).astype(np.uint8)
        outputs = rknn.inference(inputs=[nhwc], data_format=["nhwc"])
        names = head.body_outputs if len(outputs) > 1 else ["output0"]  # the converter keeps the ONNX's order
        return dict(zip(names, (np.asarray(o, np.float32) for o in outputs)))

    return infer


if __name__ == "__main__":
    sys.exit(hostside.run_on_image(open_model, __doc__, add_arguments))
