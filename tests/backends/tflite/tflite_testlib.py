"""Helpers shared by the TFLite family tests (plain functions; the fixtures are in conftest.py)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from edgeq.backend import Job, make_job as make_backend_job
from edgeq.head import HeadSpec

IMGSZ = 160  # small input keeps conversions to seconds; every rule and mapping is size-independent
ASSETS = Path(__file__).parents[3] / "edgeq" / "assets"


def need_stack() -> None:
    """Skip unless the whole conversion stack is installed. Looked up, not imported: importing tf_keras
    writes ~/.keras, and the tests use the stack only through the backend's worker process and LiteRT."""
    missing = [m for m in ("tensorflow", "tf_keras", "onnx2tf", "ai_edge_litert") if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"TFLite stack not installed ({', '.join(missing)}): pip install 'edgeq[tflite]'",
                    allow_module_level=True)


def make_job(target: str, models, head: HeadSpec, staging: Path, calibration=(), allow_fallback=None,
             source_activations=None, **options) -> Job:
    from edgeq_tflite import TFLiteBackend

    backend = TFLiteBackend()
    staging.mkdir(parents=True, exist_ok=True)
    return make_backend_job(backend, target, options=options, allow_fallback=allow_fallback, head=head,
                            body_onnx=models.body, full_onnx=models.full, calibration=calibration, staging=staging,
                            activations=source_activations or {}, progress=False)
