"""Shared fixtures: a small synthetic dataset, the demo weights, and a CLI caller."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_AUTOINSTALL", "false")
# runs of several targets one after another: the stand-in plugins tests patch into edgeq's registry live in this
# process only, where a spawned --jobs worker cannot see them (the tests of --jobs pass it explicitly)
os.environ["EDGEQ_JOBS"] = "1"


@pytest.fixture(scope="session", autouse=True)
def _cache(tmp_path_factory):
    """Keep every cache of the test run inside pytest's temp folder unless the caller chose one (tox does)."""
    if "EDGEQ_CACHE" not in os.environ:
        os.environ["EDGEQ_CACHE"] = str(tmp_path_factory.mktemp("edgeq-cache"))


@pytest.fixture(scope="session")
def small_data(tmp_path_factory) -> Path:
    """40 train + 40 val synthetic images at 320 px (seed 0, never seen by the demo weights)."""
    from edgeq.synthetic import generate_dataset

    return generate_dataset(tmp_path_factory.mktemp("data") / "shapes", train=40, val=40, imgsz=320, seed=0)


@pytest.fixture(scope="session")
def demo_pt() -> Path:
    from edgeq.demo import demo_model

    return demo_model("silu")


@pytest.fixture(scope="session")
def yolo_yaml() -> Path:
    """An untrained YOLOv8n of the demo's shape (6 classes): for graph-level tests that need no accuracy."""
    return Path(__file__).parents[1] / "edgeq" / "assets" / "demo-yolov8n-silu.yaml"


@pytest.fixture
def malicious_checkpoint(tmp_path) -> tuple[Path, Path]:
    """A .pt whose unpickling would run a shell command creating the returned marker file."""
    import torch

    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    torch.save({"model": Payload(), "train_args": {}}, tmp_path / "evil.pt")
    return tmp_path / "evil.pt", marker


@pytest.fixture
def cli(capsys):
    """Run `edgeq ...` in-process: returns (exit code, stdout, stderr)."""
    from edgeq.cli import main

    def run(*args: str):
        code = main([str(a) for a in args])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


@pytest.fixture
def topk_selection_onnx():
    """predictions (1, 6, 64) -> best class score -> TopK 8 -> GatherElements: an end-to-end head exported with
    its selection inside the graph (as Ultralytics' one-to-one export does), for the targets' rule tables."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    inits = [numpy_helper.from_array(np.array([8], np.int64), "k"),
             numpy_helper.from_array(np.array([1], np.int64), "axis1"),
             numpy_helper.from_array(np.array([1, 6, 8], np.int64), "shape6")]
    nodes = [helper.make_node("ReduceMax", ["pred", "axis1"], ["best"], name="best_score", keepdims=0),
             helper.make_node("TopK", ["best", "k"], ["top_scores", "top_index"], name="topk", axis=1),
             helper.make_node("Unsqueeze", ["top_index", "axis1"], ["index3"], name="index_3d"),
             helper.make_node("Expand", ["index3", "shape6"], ["index6"], name="index_expand"),
             helper.make_node("GatherElements", ["pred", "index6"], ["picked"], name="gather", axis=2)]
    graph = helper.make_graph(nodes, "selection", [helper.make_tensor_value_info("pred", TensorProto.FLOAT, [1, 6, 64])],
                              [helper.make_tensor_value_info("picked", TensorProto.FLOAT, [1, 6, 8])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    return onnx.shape_inference.infer_shapes(model)




@pytest.fixture(scope="session")
def outlier_pt(tmp_path_factory, demo_pt) -> Path:
    """The demo detector with one layer that ruins INT8 (planted_models.plant_outlier)."""
    from planted_models import plant_outlier

    return plant_outlier(demo_pt, tmp_path_factory.mktemp("outlier") / "demo-outlier-320.pt")
