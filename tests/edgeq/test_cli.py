import importlib.util

import pytest


def test_targets_lists_every_family(cli):
    code, out, _ = cli("targets")
    assert code == 0
    for target in ("openvino", "tflite", "edgetpu", "nxp", "tensorrt", "dla"):
        assert f"| {target} |" in out


@pytest.mark.skipif(importlib.util.find_spec("openvino") is not None, reason="openvino is installed in this env")
def test_backend_without_its_dependency_names_the_extra(cli, tmp_path):
    code, _, err = cli("export", "--target", "openvino", "--out", tmp_path / "o")
    assert code == 2 and "pip install 'edgeq[openvino]'" in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_recipes_lists_and_resolves(cli):
    code, out, _ = cli("recipes")
    assert code == 0 and "| intel-cpu-openvino | openvino |" in out
    code, out, _ = cli("recipes", "intel-cpu-openvino")
    assert code == 0 and "target: openvino" in out and "extends" not in out


def test_help_teaches(cli, capsys):
    with pytest.raises(SystemExit) as exc:
        cli("export", "--help")
    assert exc.value.code == 0
    text = capsys.readouterr().out
    assert "examples:" in text and "--max-drop" in text and "--force" in text



def test_batch_on_a_batch_1_target_is_one_line_exit_2_before_any_work(cli, tmp_path):
    code, _, err = cli("export", "--target", "edgetpu", "--batch", "4", "--out", tmp_path / "o")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "target edgetpu builds batch 1 only: the Edge TPU compiler" in err and "leave --batch out" in err
    assert not (tmp_path / "o").exists() and not list(tmp_path.iterdir())
