"""Accuracy recovery without retraining: a target's quantization scheme as data (`scheme`), activation ranges by
several calibration methods (`ranges`), the scheme emulated layer by layer in ONNX Runtime (`fakequant`), the
per-layer sensitivity sweep behind `edgeq analyze` (`sensitivity`, `output`) and the mixed-precision search
behind `--max-drop` (`search`). Core only: nothing here imports a backend or its dependencies."""
