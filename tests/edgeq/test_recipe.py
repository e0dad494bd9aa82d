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


def test_an_extends_cycle_through_other_spellings_of_the_path_is_named(tmp_path):
    """`../dir/a.yaml` is a.yaml again: the chain is compared by resolved path, not by how it was spelled."""
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "a.yaml").write_text("extends: ../dir/a.yaml\ntarget: openvino\n")
    with pytest.raises(EdgeqError, match="extends itself"):
        load_recipe(str(tmp_path / "dir" / "a.yaml"))


@pytest.mark.parametrize("text, words", [
    ("extends: 5\ntarget: openvino\n", "extends: 5 is not a recipe name or path"),
    ("extends: [a.yaml, b.yaml]\ntarget: openvino\n", "is not a recipe name or path"),
    ("target: openvino\ncalibration: {images: !!python/object/apply:os.system ['true']}\n", "uses the YAML tag"),
    ("- target\n- openvino\n", "does not hold a mapping of keys"),
    ("target: openvino\nevaluation: {conf: .nan}\n", "recipe key 'evaluation.conf' is nan"),
    ("target: openvino\noptions: {threshold: .inf}\n", "recipe key 'options.threshold' is inf"),
])
def test_recipe_files_that_are_refused_in_one_line(tmp_path, text, words):
    (tmp_path / "r.yaml").write_text(text)
    with pytest.raises(EdgeqError, match=words.replace("[", r"\[")):
        load_recipe(str(tmp_path / "r.yaml"))


def test_a_recipe_that_is_a_folder_or_not_utf8(tmp_path):
    (tmp_path / "folder.yaml").mkdir()
    with pytest.raises(EdgeqError, match="is a folder, not a file"):
        load_recipe(str(tmp_path / "folder.yaml"))
    (tmp_path / "latin.yaml").write_bytes("target: openvino\ndescription: caf\xe9\n".encode("latin-1"))
    with pytest.raises(EdgeqError, match="is not UTF-8 text"):
        load_recipe(str(tmp_path / "latin.yaml"))


@pytest.mark.parametrize("assignment, words", [
    ("calibration.images=[1", "the value is not valid YAML"),
    ("calibration.images=!!python/name:os.system", "uses the YAML tag"),
    ("max_drop=nan", "neither points"),
    ("max_drop=.inf", "is inf"),
    ("max_drop=inf%", "neither points"),
    ("evaluation.iou=.nan", "is nan"),
])
def test_set_values_that_are_refused_in_one_line(assignment, words):
    with pytest.raises(EdgeqError, match=words):
        load_recipe(None, target="openvino", sets=[assignment])


def test_recipe_remembers_the_files_it_was_read_from(tmp_path):
    (tmp_path / "base.yaml").write_text("target: openvino\n")
    (tmp_path / "child.yaml").write_text("extends: base.yaml\n")
    recipe = load_recipe(str(tmp_path / "child.yaml"))
    assert recipe.sources == ((tmp_path / "child.yaml").resolve(), (tmp_path / "base.yaml").resolve())
    assert "_sources" not in recipe.model_dump() and recipe.model_copy().sources == recipe.sources
