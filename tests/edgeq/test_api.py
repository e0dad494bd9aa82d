"""The Python API: the same export and evaluation as the CLI, typed results, the CLI's one-line errors as
exceptions, nothing printed unless asked."""

import pytest

import edgeq
from edgeq.errors import EdgeqError


def test_export_and_evaluate_in_a_few_lines(tmp_path, small_data, capsys):
    result = edgeq.export(target="onnxruntime", data=small_data, out=tmp_path / "out", calib_images=8,
                          val_images=16, options={"compare_attached_head": False},
                          set={"evaluation.latency_runs": 0})
    shipped = result.shipped
    assert shipped.name == "onnxruntime-int8" and shipped.role == "deployable" and shipped.map50_95 > 50
    assert (result.out / shipped.path).is_file() and result.report.reference["images"] == 16
    score = edgeq.evaluate(result.out / "onnxruntime" / "model-fp32.onnx", data=small_data, val_images=16)
    assert score.images == 16 and abs(score.map50_95 - result.report.reference["map50_95"]) <= 0.3
    printed = capsys.readouterr()
    assert printed.out == "" and printed.err == ""  # quiet unless verbose=True


@pytest.mark.parametrize("kwargs, fragment", [
    ({"calib_imgs": 3}, "unknown recipe key 'calib_imgs'"),
    ({"options": {"opz": 1}}, "unknown recipe key 'options.opz'"),
    ({"target": "nope"}, "unknown target 'nope'"),
])
def test_mistakes_raise_the_clis_one_line_error(tmp_path, kwargs, fragment):
    with pytest.raises(EdgeqError) as err:
        edgeq.export(**{"target": "onnxruntime", "out": tmp_path / "o", **kwargs})
    assert fragment in err.value.one_line() and not (tmp_path / "o").exists()
