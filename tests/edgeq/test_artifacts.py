"""open_any tells a file's output layout apart: with --head-json and no --layout, the head's per-scale outputs
by name are a detached file (once an internal KeyError 'output0'), one decoded output is pixel boxes."""

import pytest

from edgeq.artifacts import open_any
from edgeq.data import load_dataset
from edgeq.errors import EdgeqError
from edgeq.head import HeadLayout
from edgeq.model import export_onnx, load_detector


@pytest.fixture(scope="module")
def exported(demo_pt, tmp_path_factory):
    folder = tmp_path_factory.mktemp("onnx")
    detector = load_detector(demo_pt, 320)
    detector.head.to_json(folder / "head.json")
    return export_onnx(detector, folder), folder / "head.json"


def test_a_head_description_without_a_layout_finds_the_detached_body(exported, small_data):
    models, head_json = exported
    dataset = load_dataset(small_data)
    _, head, layout = open_any(models.body, None, None, head_json, dataset)
    assert layout is HeadLayout.DETACHED and head.nc == 6
    _, _, layout = open_any(models.full, None, None, head_json, dataset)
    assert layout is HeadLayout.PIXEL


def test_outputs_that_fit_neither_the_head_nor_a_decoded_output_are_one_line(exported, small_data, tmp_path):
    import onnx

    models, head_json = exported
    model = onnx.load(str(models.body))
    model.graph.output[0].name = "renamed"
    for node in model.graph.node:
        node.output[:] = ["renamed" if o == "box_0" else o for o in node.output]
    onnx.save(model, str(tmp_path / "renamed.onnx"))
    with pytest.raises(EdgeqError, match="neither the head's per-scale outputs") as info:
        open_any(tmp_path / "renamed.onnx", None, None, head_json, load_dataset(small_data))
    assert "pass --layout" in info.value.one_line()
