"""OpenVINO CPU runner."""

from __future__ import annotations

import sys

import numpy as np

from edgeq.plugin import cpus, BatchNotSupported, Runner


def import_openvino():
    """Import OpenVINO without its telemetry client, which writes an id and usage counts into ~/intel as soon
    as `openvino` is imported (and tries to send them). OpenVINO's converter and NNCF both fall back to a
    no-op stub when `openvino_telemetry` cannot be imported; a None entry in sys.modules makes it so."""
    sys.modules.setdefault("openvino_telemetry", None)
    import openvino

    return openvino


class OpenVINORunner(Runner):
    def load(self) -> None:
        ov = import_openvino()
        self._compile(ov.Core().read_model(str(self.path)))
        self.runtime = f"openvino {ov.__version__.split('-')[0]}"

    def resize(self, batch: int) -> None:
        ov = import_openvino()
        model = ov.Core().read_model(str(self.path))
        shape = [batch, *self.input_shape[1:]] if self.input_shape else None
        try:
            model.reshape({model.inputs[0]: shape})
        except (RuntimeError, TypeError) as exc:
            first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
            raise BatchNotSupported(f"OpenVINO cannot reshape '{self.path.name}' to batch {batch} ({first})") from None
        self._compile(model)

    def _compile(self, model) -> None:
        ov = import_openvino()
        # f32 precision hint: on AMX/AVX512-BF16 CPUs OpenVINO would otherwise run "FP32" models in bf16,
        # and the FP32 figures (and the FP32 head of INT8 models) would not be FP32.
        config = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY",
                  "INFERENCE_NUM_THREADS": cpus()}
        self.compiled = ov.Core().compile_model(model, "CPU", config)
        self.request = self.compiled.create_infer_request()
        self.names = output_names(self.compiled.outputs)
        shape = self.compiled.inputs[0].get_partial_shape()
        self.input_shape = tuple(d.get_length() for d in shape) if shape.is_static else None

    def infer(self, images: np.ndarray) -> dict[str, np.ndarray]:
        result = self.request.infer({0: images})
        return {name: result[output] for name, output in zip(self.names, self.compiled.outputs)}

    def close(self) -> None:
        self.request = self.compiled = None


def output_names(outputs) -> list[str]:
    """Each output's tensor name; an IR whose outputs carry none (Ultralytics 8.4's OpenVINO export) gets edgeq's
    canonical names by position: `output0` for one output (the decoded layout), `output{i}` for several."""
    names = []
    for i, output in enumerate(outputs):
        names.append(next(iter(output.get_names()), None) or ("output0" if len(outputs) == 1 else f"output{i}"))
    return names
