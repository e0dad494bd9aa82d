#!/usr/bin/env python3
"""Run this kit's OpenVINO IR on one image and print the detections (edgeq deploy kit).

Needs numpy, OpenCV and OpenVINO Runtime: pip install openvino opencv-python-headless. The IR was built and
scored on a CPU; --device GPU or NPU runs it on Intel graphics or an NPU where OpenVINO has their plugins.
"""

import sys

import hostside


def add_arguments(parser):
    parser.add_argument("--device", default="CPU", help="OpenVINO device: CPU (default), GPU, NPU or AUTO")


def open_model(path, args, head):
    import openvino as ov

    # f32 hint on CPU: on AMX/AVX512-BF16 CPUs OpenVINO would otherwise run the FP32 parts in bf16, which the
    # report's figures did not
    config = {"INFERENCE_PRECISION_HINT": "f32"} if args.device == "CPU" else {}
    compiled = ov.Core().compile_model(str(path), args.device, config)
    request = compiled.create_infer_request()

    def infer(images):
        result = request.infer({0: images})
        return {next(iter(o.get_names()), None) or f"output{i}": result[o] for i, o in enumerate(compiled.outputs)}

    return infer


if __name__ == "__main__":
    sys.exit(hostside.run_on_image(open_model, __doc__, add_arguments))
