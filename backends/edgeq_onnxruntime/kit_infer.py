#!/usr/bin/env python3
"""Run this kit's ONNX Runtime INT8 model on one image and print the detections (edgeq deploy kit).

Needs numpy, OpenCV and ONNX Runtime: pip install onnxruntime opencv-python-headless (x86-64 or Arm64). ONNX
Runtime fuses the file's Q/DQ pairs into its integer kernels when it loads it; nothing is built on the device.
"""

import os
import sys

import hostside


def add_arguments(parser):
    parser.add_argument("--threads", type=int, default=0, help="intra-op threads (default 0: one per core)")


def open_model(path, args, head):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads or os.cpu_count() or 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]

    def infer(images):
        return dict(zip(names, session.run(names, {session.get_inputs()[0].name: images})))

    return infer


if __name__ == "__main__":
    sys.exit(hostside.run_on_image(open_model, __doc__, add_arguments))
