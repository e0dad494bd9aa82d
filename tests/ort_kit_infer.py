#!/usr/bin/env python3
"""The `ort-int8` test target's kit script: runs an ONNX artifact with ONNX Runtime (what a family's
kit_infer.py does with its own runtime)."""

import sys

import hostside


def open_model(path, args, head):
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]

    def infer(images):
        return dict(zip(names, session.run(None, {session.get_inputs()[0].name: images})))

    return infer


if __name__ == "__main__":
    sys.exit(hostside.run_on_image(open_model, __doc__))
