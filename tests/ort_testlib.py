"""What the small ONNX Runtime test targets share."""


def calibration_reader(job):
    """ONNX Runtime's CalibrationDataReader over a Job's calibration batches."""
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = iter(job.calibration)

        def get_next(self):
            item = next(self.items, None)
            return None if item is None else {"images": item}

    return Reader()
