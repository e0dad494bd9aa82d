"""TensorRT engines: only where `tensorrt` imports (Jetson, a CUDA machine); skipped cleanly elsewhere."""

import numpy as np
import pytest


def test_tensorrt_is_reported_missing_here_or_works():
    from edgeq_tensorrt.runner import tensorrt_available

    try:
        import tensorrt  # noqa: F401
    except Exception:  # noqa: BLE001 - same test as tensorrt_available()
        assert not tensorrt_available()
    else:
        assert tensorrt_available()


def test_gpu_engine_from_qdq_onnx(tmp_path, yolo_onnx, calib_images):
    pytest.importorskip("tensorrt")
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("TensorRT without a CUDA device")
    import onnx
    from edgeq_tensorrt.ptq import calibration_array, modelopt_quantize
    from edgeq_tensorrt.runner import TensorRTRunner, build_engine

    _, full, _ = yolo_onnx["silu"]
    qdq = modelopt_quantize(full, tmp_path / "q.onnx", calibration_array(calib_images), tmp_path / "work")
    engine = tmp_path / "m.engine"
    engine.write_bytes(build_engine(qdq))
    x = np.asarray(calib_images[0])
    with TensorRTRunner(engine) as runner:
        out = runner.infer(x)["output0"]
    import onnxruntime as ort

    ref = ort.InferenceSession(str(qdq), providers=["CPUExecutionProvider"]).run(None, {"images": x})[0]
    assert out.shape == ref.shape and np.isfinite(out).all()
    assert onnx.load(str(qdq)).graph.output[0].name == "output0"
