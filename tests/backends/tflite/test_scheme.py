"""The scheme is what the converter does: every op the profile says shares one scale across its tensors has one
scale in the real full-integer file (so the emulation in `edgeq analyze` ties what the converter ties)."""

from tflite_testlib import make_job, need_stack

# the TFLite builtins the converter writes for the ONNX ops of the scheme's ties
TFLITE_OPS = {"Concat": ("CONCATENATION",), "MaxPool": ("MAX_POOL_2D",), "AveragePool": ("AVERAGE_POOL_2D",),
              "Reshape": ("RESHAPE",), "Transpose": ("TRANSPOSE",), "Squeeze": ("SQUEEZE", "RESHAPE"),
              "Unsqueeze": ("RESHAPE", "EXPAND_DIMS"), "Flatten": ("RESHAPE",),
              "Slice": ("SLICE", "STRIDED_SLICE"), "Split": ("SPLIT", "SPLIT_V"), "Pad": ("PAD", "PADV2"),
              "Resize": ("RESIZE_NEAREST_NEIGHBOR", "RESIZE_BILINEAR")}


def test_ops_the_scheme_ties_have_one_scale_in_the_converted_file(tmp_path, onnx_pair, calib_160):
    need_stack()
    from edgeq_tflite import TFLiteBackend
    from edgeq_tflite.graph import read_tflite

    (models, detector) = onnx_pair("demo-yolov8n-silu-320.pt")
    calib, _ = calib_160
    job = make_job("tflite", models, detector.head, tmp_path / "staging", calibration=calib, heads=["detached"],
                   granularity=["per-channel"])
    graph = read_tflite(TFLiteBackend().build(job).shipped().path)
    tied = {tflite for tie in job.plan.scheme.unified for op in tie.ops for tflite in TFLITE_OPS[op]}
    checked = 0
    for layer in graph.layers:
        if layer.op not in tied:
            continue
        constants = set(layer.attrs["const_inputs"])
        scales = {t.scale for t in (*layer.inputs, *layer.outputs) if t.name not in constants and t.scale}
        assert len(scales) == 1, f"{layer.op} {layer.name}: {scales}"
        checked += 1
    assert checked > 10
