"""rknn-toolkit2's side of the rknn family: runs in the toolchain's own interpreter (numpy 1.26, onnx 1.18,
protobuf 4.25), where edgeq is not installed, through edgeq's worker protocol (`edgeq_worker`).

    mode "build"     load the ONNX, configure (mean/std, target platform, dtype, algorithm, granularity), quantize
                     on the calibration set (with `float16_layers`: the toolkit's two-step hybrid quantization,
                     those layers in float16 on the NPU), export the .rknn
    mode "accuracy"  the same conversion, then the toolkit's accuracy_analysis (each op in the simulator against
                     its float run) on the given images: tensor -> single-layer cosine
    mode "simulate"  the same conversion, then the toolkit's simulator (`init_runtime()` with no target) serving
                     inference requests over a Unix socket the parent listens on, until it says "close" or hangs up

The simulator cannot load a .rknn file (it runs only a model built in the same process), so "simulate" converts
again from the same ONNX, configuration and calibration files, and checks that the model it built is the file
shipped (the same bytes but for the heap addresses the toolkit writes into it) before it answers any request.
"""

import io
import json
import os
import socket
import struct
import sys
import time
from importlib.metadata import PackageNotFoundError, version

from edgeq_worker import Failure, log

# the share of a .rknn's bytes two conversions of the same model may differ in (the toolkit's heap addresses)
MAX_DIFFERING_FRACTION = 0.002


def run(job):
    found = _toolkit_version()
    if found != job["toolkit_version"]:
        raise Failure("rknn-version", f"rknn-toolkit2 {found} is installed in {sys.prefix}; edgeq's rknn family "
                      f"is pinned to {job['toolkit_version']} ({job['version_why']}): reinstall it with "
                      f"`edgeq toolchains install rknn --force`")
    started = time.perf_counter()
    rknn = _convert(job)
    built_s = time.perf_counter() - started
    try:
        if job["mode"] == "build":
            _check(rknn.export_rknn(job["out"]), "rknn-export", f"export_rknn({job['out']})")
            log(f"exported {job['out']} in {built_s:.1f} s")
            return {"toolkit_version": found, "build_seconds": round(built_s, 1)}
        if job["mode"] == "accuracy":
            return {"toolkit_version": found, "cosine": _accuracy(rknn, job["images"])}
        _same_as_shipped(rknn, job)
        _check(rknn.init_runtime(), "rknn-simulator", "init_runtime() (the simulator)")
        served = _serve(rknn, job["socket"])
        return {"toolkit_version": found, "build_seconds": round(built_s, 1), "images": served}
    finally:
        rknn.release()


def _accuracy(rknn, images):
    """accuracy_analysis on each image (the simulator against the toolkit's float run): tensor -> the mean over
    the images of its "single" cosine (each op fed the float input), read from the toolkit's error_analysis.txt,
    whose rows are `[Op] tensor  entire_cos | entire_euc  single_cos | single_euc`."""
    import re

    row = re.compile(r"^\[(\w+)\]\s+(\S+)\s+([-\d.]+)\s*\|\s*\S+\s+([-\d.]+)\s*\|")
    sums, counts = {}, {}
    for i, path in enumerate(images):
        folder = f"snapshot-{i}"
        _check(rknn.accuracy_analysis(inputs=[path], output_dir=folder), "rknn-accuracy",
               f"accuracy_analysis({path})")
        with open(os.path.join(folder, "error_analysis.txt"), encoding="utf-8") as f:
            for line in f:
                m = row.match(line)
                if m and m.group(1) not in ("Input", "exDataConvert"):
                    sums[m.group(2)] = sums.get(m.group(2), 0.0) + float(m.group(4))
                    counts[m.group(2)] = counts.get(m.group(2), 0) + 1
    if not sums:
        raise Failure("rknn-accuracy", "accuracy_analysis wrote no per-layer rows (error_analysis.txt unread)")
    log(f"accuracy_analysis: {len(sums)} tensors on {len(images)} image(s)")
    return {t: round(sums[t] / counts[t], 6) for t in sums}


def _toolkit_version():
    try:
        return version("rknn-toolkit2")
    except PackageNotFoundError:
        raise Failure("rknn-version", f"rknn-toolkit2 is not installed in {sys.prefix}: "
                      "run `edgeq toolchains install rknn`") from None


def _convert(job):
    """RKNN() configured, loaded from the ONNX and built (quantized on the calibration list, or FP16)."""
    from rknn.api import RKNN

    rknn = RKNN(verbose=job.get("verbose", False))
    config = dict(mean_values=[[0.0, 0.0, 0.0]], std_values=[[255.0, 255.0, 255.0]],  # uint8 in, /255 on the NPU
                  target_platform=job["target_platform"], optimization_level=job.get("optimization_level", 3))
    if job["quantize"]:
        config.update(quantized_dtype=job["quantized_dtype"], quantized_algorithm=job["quantized_algorithm"],
                      quantized_method=job["quantized_method"])
    log(f"rknn.config({json.dumps(config)})")
    _check(rknn.config(**config), "rknn-config", "config()")
    _check(rknn.load_onnx(model=job["onnx"]), "rknn-load", f"load_onnx({job['onnx']}) (see the log; an opset above "
           "19 or an op the toolkit does not know fails here)")
    if job["quantize"] and job.get("float16_layers"):
        return _hybrid(rknn, config, job)
    if job["quantize"]:
        _check(rknn.build(do_quantization=True, dataset=job["dataset"]), "rknn-build",
               "build(do_quantization=True) (the quantizer)")
    else:
        _check(rknn.build(do_quantization=False), "rknn-build", "build(do_quantization=False)")
    return rknn


def _hybrid(rknn, config, job):
    """The toolkit's hybrid quantization: step 1 calibrates and writes <stem>.model/.data/.quantization.cfg into
    the working folder with the subgraphs between each [input tensor, output tensor] pair of `float16_layers`
    marked float16 (its `custom_hybrid`); step 2, in a new RKNN configured the same, builds from those files.
    A pair the toolkit did not find leaves the config's custom_quantize_layers short, which is refused here: the
    build would silently be all INT8."""
    from rknn.api import RKNN

    pairs = [list(p) for p in job["float16_layers"]]
    _check(rknn.hybrid_quantization_step1(dataset=job["dataset"], custom_hybrid=pairs), "rknn-build",
           "hybrid_quantization_step1() (the quantizer, with the float16 layers)")
    rknn.release()
    stem = os.path.splitext(os.path.basename(job["onnx"]))[0]
    cfg = f"{stem}.quantization.cfg"
    marked = _float16_tensors(cfg)
    missing = [p for p in pairs if p[1] not in marked]
    if missing:
        raise Failure("rknn-build", f"rknn-toolkit2 marked no float16 layer for {missing[0]} "
                      f"({len(missing)} of {len(pairs)} pairs unmatched; the quantization config is {cfg})")
    inputs = _mark_float16(cfg, job.get("float16_inputs", []), marked)
    log(f"hybrid quantization: {len(marked) + len(inputs)} tensors float16 for {len(pairs)} kept layers "
        f"({len(inputs)} of them the kept layers' inputs)")
    rknn = RKNN(verbose=job.get("verbose", False))
    _check(rknn.config(**config), "rknn-config", "config()")
    _check(rknn.hybrid_quantization_step2(model_input=f"{stem}.model", data_input=f"{stem}.data",
                                          model_quantization_cfg=cfg), "rknn-build",
           "hybrid_quantization_step2() (the build with the float16 layers)")
    return rknn


def _mark_float16(cfg, tensors, marked):
    """Add `tensors` (the kept layers' activation inputs, and for an input written by a SiLU the conv output
    inside it) to the config's custom_quantize_layers as float16: the toolkit's custom_hybrid keeps the layers
    between a pair in float16 but leaves the pair's input tensor as its producer writes it, in INT8, so a layer
    whose input range is what ruins it (the planted outlier of the tests) would gain nothing. Tensors the config
    does not quantize (the graph input) are left as they are."""
    with open(cfg, encoding="utf-8") as f:
        text = f.read()
    head, sep, rest = text.partition("quantize_parameters:\n")
    added = [t for t in dict.fromkeys(tensors) if t not in marked and f"\n    {t}:\n" in "\n" + rest]
    if not added:
        return []
    head = head.replace("custom_quantize_layers: {}\n", "custom_quantize_layers:\n")
    head += "".join(f"    {t}: float16\n" for t in added)
    with open(cfg, "w", encoding="utf-8") as f:
        f.write(head + sep + rest)
    return added


def _float16_tensors(cfg):
    """The tensor names under `custom_quantize_layers:` marked float16 in the toolkit's quantization config (YAML
    whose top-level block of that name is flat `<tensor>: float16` lines, so it is read by lines)."""
    marked, inside = set(), False
    with open(cfg, encoding="utf-8") as f:
        for line in f:
            if not line.startswith(" "):
                inside = line.startswith("custom_quantize_layers:")
                continue
            if inside and line.rstrip().endswith(": float16"):
                marked.add(line.strip()[:-len(": float16")])
    return marked


def _check(code, stage, what):
    """The toolkit reports failures as a non-zero return value (its reason is in the log, printed by it)."""
    if code != 0:
        raise Failure(stage, f"rknn-toolkit2's {what} returned {code}")


def _same_as_shipped(rknn, job):
    """Export what this process built and compare it with the shipped file, so the simulator is known to run that
    file: the same size and the same bytes except the few where the toolkit writes its own heap addresses into the
    file (measured on the 320 px demo: 1,079 of 4,069,328 bytes, in three small tables); a different quantization
    would change the weights, i.e. most of the file."""
    again = job["out"] + ".simulated.rknn"
    _check(rknn.export_rknn(again), "rknn-export", f"export_rknn({again})")
    import numpy as np  # the toolchain's numpy 1.26, imported once its version is known to be the pinned one

    shipped, rebuilt = (np.fromfile(p, dtype=np.uint8) for p in (job["out"], again))
    os.unlink(again)
    differing = int(np.count_nonzero(shipped != rebuilt)) if shipped.size == rebuilt.size else None
    if differing is None or differing > MAX_DIFFERING_FRACTION * shipped.size:
        raise Failure("rknn-simulator", f"converting again did not give the shipped .rknn ({shipped.size} bytes; "
                      f"again: {rebuilt.size} bytes, {differing if differing is not None else 'all'} differing), so "
                      "the simulator would not run the file shipped; rebuild the export")
    log(f"the rebuilt model is the shipped {job['out']} ({differing} of {shipped.size} bytes differ: heap addresses)")


def _serve(rknn, path):
    """Requests on the parent's Unix socket: a uint8 NHWC image as .npy -> the outputs as .npz, in order."""
    import numpy as np

    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.connect(path)
    served = 0
    try:
        while (request := _receive(conn)) is not None:
            image = np.load(io.BytesIO(request))
            outputs = rknn.inference(inputs=[image], data_format="nhwc")
            if outputs is None:
                raise Failure("rknn-simulator", "the simulator returned no outputs (see the log)")
            buffer = io.BytesIO()
            np.savez(buffer, *[np.asarray(o, dtype=np.float32) for o in outputs])
            _send(conn, buffer.getvalue())
            served += 1
    finally:
        conn.close()
    log(f"simulated {served} images")
    return served


def _receive(conn):
    header = _exactly(conn, 8)
    if header is None:
        return None
    (size,) = struct.unpack("<Q", header)
    return None if size == 0 else _exactly(conn, size)


def _exactly(conn, size):
    chunks, left = [], size
    while left:
        chunk = conn.recv(min(left, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _send(conn, payload):
    conn.sendall(struct.pack("<Q", len(payload)) + payload)
