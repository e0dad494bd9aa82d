#!/usr/bin/env python3
"""Run this kit's full-integer .tflite on one image and print the detections (edgeq deploy kit).

Needs numpy, OpenCV and a TFLite interpreter: LiteRT (pip install ai-edge-litert) or tflite-runtime. On an
accelerator, pass its delegate: --delegate libedgetpu.so.1 with the *_edgetpu.tflite file (Coral Edge TPU),
--delegate /usr/lib/libvx_delegate.so (NXP i.MX 8M Plus NPU), --delegate /usr/lib/libethosu_delegate.so with the
*_vela.tflite file (NXP i.MX93's Ethos-U65: the delegate hands Vela's ethos-u custom op to the NPU). Without one
the file runs on the CPU (a *_vela.tflite does not: its ethos-u op exists only on the NPU).
"""

import sys

import hostside
import numpy as np


def add_arguments(parser):
    parser.add_argument("--delegate", help="delegate library to run the model on (default: none, the CPU)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: the interpreter's)")


def _interpreter_module():
    try:
        from ai_edge_litert import interpreter
    except ImportError:
        from tflite_runtime import interpreter
    return interpreter


def open_model(path, args, head):
    tfl = _interpreter_module()
    delegates = [tfl.load_delegate(args.delegate)] if args.delegate else None
    interpreter = tfl.Interpreter(model_path=str(path), experimental_delegates=delegates, num_threads=args.threads)
    interpreter.allocate_tensors()
    source = interpreter.get_input_details()[0]
    outputs = _named_outputs(interpreter, head)

    def infer(images):
        x = np.transpose(images, (0, 2, 3, 1))  # the converter's models take NHWC
        if source["dtype"] in (np.int8, np.uint8, np.int16):  # int16: a 16x8 file
            scale, zero = source["quantization"]
            info = np.iinfo(source["dtype"])
            x = np.clip(np.round(x / scale) + zero, info.min, info.max)
        interpreter.set_tensor(source["index"], x.astype(source["dtype"]))
        interpreter.invoke()
        result = {}
        for name, detail in outputs:
            y = interpreter.get_tensor(detail["index"])
            if detail["dtype"] in (np.int8, np.uint8, np.int16):
                scale, zero = detail["quantization"]
                y = (y.astype(np.float32) - zero) * scale
            result[name] = _nchw(y.astype(np.float32), name, head)
        return result

    return infer


def _named_outputs(interpreter, head):
    """(name, detail) per output: from the signature edgeq's converter writes (box_0, cls_0, ... or output0),
    else from shapes (grid size gives the scale, channels tell box from class logits)."""
    details = interpreter.get_output_details()
    by_index = {d["index"]: d for d in details}
    signatures = interpreter.get_signature_list() if hasattr(interpreter, "get_signature_list") else {}
    if signatures:
        runner = interpreter.get_signature_runner(next(iter(signatures)))
        names = signatures[next(iter(signatures))]["outputs"]
        indices = runner.get_output_details() if hasattr(runner, "get_output_details") else {}
        if indices and all(n in indices for n in names):
            return [(n, by_index.get(indices[n]["index"], indices[n])) for n in names]
    if len(details) == 1:
        return [(hostside.OUTPUT_NAME, details[0])]
    named = []
    for d in details:
        _, h, _, c = (int(v) for v in d["shape"])
        scale = next(i for i, s in enumerate(head.strides) if head.imgsz // s == h)
        named.append((f"{'box' if c == 4 * head.reg_max and c != head.nc else 'cls'}_{scale}", d))
    return named


def _nchw(y, name, head):
    """NHWC per-scale logits -> NCHW; output0 as (1, 4 + nc, anchors)."""
    if name == hostside.OUTPUT_NAME:
        return y if y.shape[1] == 4 + head.nc else np.transpose(y, (0, 2, 1))
    return np.transpose(y, (0, 3, 1, 2))


if __name__ == "__main__":
    sys.exit(hostside.run_on_image(open_model, __doc__, add_arguments))
