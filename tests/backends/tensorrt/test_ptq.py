"""ModelOpt's PTQ runs in edgeq's process beside other families: what it patches in ONNX Runtime must not outlive it."""

import pytest

pytest.importorskip("modelopt")


def test_onnxruntime_quantizes_as_itself_after_a_modelopt_build(tmp_path, yolo_onnx, calib_images):
    from edgeq_tensorrt.ptq import calibration_array, modelopt_quantize
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, calibrate, quantize_static
    from onnxruntime.quantization.calibrate import CalibraterBase, MinMaxCalibrater

    def patched_by_modelopt():
        return (MinMaxCalibrater.compute_data, MinMaxCalibrater.collect_data, calibrate.create_calibrator,
                CalibraterBase.select_tensors_to_calibrate)

    before = patched_by_modelopt()
    body, full, _ = yolo_onnx["relu6"]
    images = calibration_array(calib_images, limit=2)
    modelopt_quantize(full, tmp_path / "q.onnx", images, tmp_path / "work")
    assert patched_by_modelopt() == before

    class Reader(CalibrationDataReader):  # what the onnxruntime target does next in a --target all run
        def __init__(self):
            self.batches = iter([{"images": images[i:i + 1]} for i in range(len(images))])

        def get_next(self):
            return next(self.batches, None)

    quantize_static(str(body), str(tmp_path / "ort.onnx"), Reader(), quant_format=QuantFormat.QDQ)
    assert (tmp_path / "ort.onnx").stat().st_size > 0
