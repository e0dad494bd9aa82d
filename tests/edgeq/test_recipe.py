import pytest

from edgeq.errors import EdgeqError
from edgeq.recipe import available, load_recipe


def test_shipped_recipes_load_by_name():
    assert "intel-cpu-openvino" in available()
    recipe = load_recipe("intel-cpu-openvino")
    assert recipe.target == "openvino" and recipe.options["detach_head"] is True


def test_extends_merges_sections(tmp_path):
    (tmp_path / "base.yaml").write_text("target: openvino\ncalibration: {images: 10, seed: 3}\noptions: {a: 1}\n")
    (tmp_path / "child.yaml").write_text("extends: base.yaml\ncalibration: {images: 20}\noptions: {b: 2}\n")
    recipe = load_recipe(str(tmp_path / "child.yaml"))
    assert recipe.calibration.images == 20 and recipe.calibration.seed == 3
    assert recipe.options == {"a": 1, "b": 2}


def test_extends_a_shipped_recipe_by_name(tmp_path):
    (tmp_path / "mine.yaml").write_text("extends: intel-cpu-openvino\nimgsz: 320\n")
    recipe = load_recipe(str(tmp_path / "mine.yaml"))
    assert recipe.imgsz == 320 and recipe.target == "openvino"


def test_unknown_key_is_named_by_its_path(tmp_path):
    (tmp_path / "r.yaml").write_text("target: openvino\ncalibration: {methd: entropy}\n")
    with pytest.raises(EdgeqError, match=r"unknown recipe key 'calibration\.methd'"):
        load_recipe(str(tmp_path / "r.yaml"))


def test_set_overrides_and_types(tmp_path):
    recipe = load_recipe("intel-cpu-openvino", sets=["calibration.images=12", "options.preset=performance",
                                                     "max_drop=0.5"])
    assert recipe.calibration.images == 12 and recipe.options["preset"] == "performance" and recipe.max_drop == 0.5
    with pytest.raises(EdgeqError, match="evaluation.images"):
        load_recipe("intel-cpu-openvino", sets=["evaluation.images=zero"])
    with pytest.raises(EdgeqError, match="not key=value"):
        load_recipe("intel-cpu-openvino", sets=["calibration.images"])


def test_unknown_recipe_and_cycles(tmp_path):
    with pytest.raises(EdgeqError, match="unknown recipe 'no-such'"):
        load_recipe("no-such")
    (tmp_path / "a.yaml").write_text("extends: b.yaml\ntarget: x\n")
    (tmp_path / "b.yaml").write_text("extends: a.yaml\n")
    with pytest.raises(EdgeqError, match="extends itself"):
        load_recipe(str(tmp_path / "a.yaml"))


def test_max_drop_in_points_or_as_a_share_of_the_default_loss():
    recipe = load_recipe(None, target="openvino", sets=["max_drop=50%"])
    assert recipe.max_drop == "50%" and recipe.budget(0.42) == 0.21 and recipe.budget(-0.1) == 0.0
    assert load_recipe(None, target="openvino", sets=["max_drop=0.3"]).budget(5.0) == 0.3
    for bad, words in (("150%", "0% to 100%"), ("-1", "negative"), ("lots", "neither points")):
        with pytest.raises(EdgeqError, match=words):
            load_recipe(None, target="openvino", sets=[f"max_drop={bad}"])
