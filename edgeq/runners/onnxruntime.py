"""ONNX Runtime runner (CPU): FP32 ONNX references and Q/DQ emulation graphs."""

from __future__ import annotations


import numpy as np

from edgeq.env import cpus
from edgeq.runners import Runner


class OnnxRuntimeRunner(Runner):
    def load(self) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = cpus()
        options.log_severity_level = 3
        self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        shape = self.session.get_inputs()[0].shape
        self.input_shape = tuple(shape) if all(isinstance(d, int) for d in shape) else None
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.runtime = f"onnxruntime {ort.__version__}"

    def infer(self, images: np.ndarray) -> dict[str, np.ndarray]:
        outputs = self.session.run(self.output_names, {self.input_name: images.astype(np.float32, copy=False)})
        # an FP16-typed graph's outputs (TensorRT 11's typed DLA graph) reach the host decoder as float32
        return {name: o.astype(np.float32) if o.dtype == np.float16 else o
                for name, o in zip(self.output_names, outputs)}

    def close(self) -> None:
        self.session = None
