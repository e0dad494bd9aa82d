import pytest
from analyze_testlib import ort_backends


@pytest.fixture(scope="session")
def demo_onnx(tmp_path_factory, demo_pt):
    """The demo detector's FP32 ONNX pair (edgeq.model.OnnxModels)."""
    from edgeq.model import export_onnx, load_detector

    return export_onnx(load_detector(demo_pt), tmp_path_factory.mktemp("onnx"))


@pytest.fixture
def ort_targets(monkeypatch):
    import edgeq.backend as backend_module

    plugins = ort_backends()
    monkeypatch.setattr(backend_module, "discover", lambda: plugins)
    return plugins
