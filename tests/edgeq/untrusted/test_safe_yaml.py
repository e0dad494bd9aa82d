"""The one loader for user YAML (issue 20, case 6, and the YAML half of case 9): limits, no tags, aliases
expanded under a budget, and Ultralytics reading through it."""

import time

import pytest

from edgeq.errors import EdgeqError
from edgeq.untrusted.safe_yaml import MAX_DEPTH, load_file, load_text

LAUGHS = ('a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]\n'
          + "".join(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]\n" for i in range(1, 10)))


def _data_yaml(tmp_path, body: str):
    path = tmp_path / "data.yaml"
    path.write_text(f"path: {tmp_path}\ntrain: images\nval: images\n{body}")
    (tmp_path / "images").mkdir(exist_ok=True)
    return path


@pytest.mark.timeout(60)
def test_alias_bomb_in_a_data_yaml_is_refused_in_a_moment(tmp_path):
    """A billion strings from a 1 kB file: Ultralytics' class-name check used to walk them until the machine ran
    out of memory (6 GB after 95 s)."""
    from edgeq.data import load_dataset

    started = time.perf_counter()
    with pytest.raises(EdgeqError, match=r"data.yaml' expands to over [\d,]+ values .*aliases"):
        load_dataset(_data_yaml(tmp_path, LAUGHS + "names: *a9\n"))
    assert time.perf_counter() - started < 5


@pytest.mark.timeout(60)
def test_deep_nesting_is_refused_without_recursion_error(tmp_path):
    from edgeq.data import load_dataset

    with pytest.raises(EdgeqError, match=f"nests deeper than {MAX_DEPTH} levels"):
        load_dataset(_data_yaml(tmp_path, "names: " + "[" * 50_000 + "]" * 50_000 + "\n"))


def test_ultralytics_reads_yaml_through_the_same_loader(tmp_path):
    """check_det_dataset and yaml_model_load read the file themselves: their read is edgeq's vetted one."""
    from edgeq.env import offline_ultralytics

    offline_ultralytics()
    from ultralytics.utils import YAML

    path = _data_yaml(tmp_path, LAUGHS + "names: *a9\n")
    with pytest.raises(EdgeqError, match="expands to over"):
        YAML.load(path)
    path.write_text("names: !!python/object/apply:os.system ['true']\n")
    with pytest.raises(EdgeqError, match="uses the YAML tag"):
        YAML.load(path)
    path.write_text("a: &x [1, 2]\nb: *x\n")
    assert YAML.load(path, append_filename=True) == {"a": [1, 2], "b": [1, 2], "yaml_file": str(path)}


@pytest.mark.parametrize("text, words", [
    ("names: !!python/object/apply:os.system ['touch /tmp/edgeq-pwned']\n", "uses the YAML tag"),
    ("names: !custom [a]\n", "uses the YAML tag '!custom'"),
    ("a: &a [*a]\n", "inside or before its anchor"),
    ("n: " + "9" * 5000 + "\n", "holds a value YAML cannot represent"),
    ("a: [1\n", "is not valid YAML (while parsing a flow sequence, expected ',' or ']'"),
    ("--- 1\n--- 2\n", "expected a single document"),
])
def test_what_the_loader_refuses(text, words):
    with pytest.raises(EdgeqError, match=words.replace("(", r"\(").replace("[", r"\[")):
        load_text(text, "recipe 'r.yaml'")


def test_aliases_become_independent_copies():
    data = load_text("base: &b {images: 10}\nrun: {<<: *b, seed: 1}\nagain: *b\n", "r")
    assert data == {"base": {"images": 10}, "run": {"images": 10, "seed": 1}, "again": {"images": 10}}
    assert data["base"] is not data["again"]


def test_files_that_are_not_yaml_text(tmp_path):
    (tmp_path / "folder.yaml").mkdir()
    with pytest.raises(EdgeqError, match="recipe '.*folder.yaml' is a folder"):
        load_file(tmp_path / "folder.yaml", "recipe")
    (tmp_path / "latin1.yaml").write_bytes("names: [caf\xe9]\n".encode("latin-1"))
    with pytest.raises(EdgeqError, match=r"is not UTF-8 text \(byte 11 is 0xe9\)"):
        load_file(tmp_path / "latin1.yaml", "dataset file")
    (tmp_path / "big.yaml").write_text("# " + "x" * (2 << 20))
    with pytest.raises(EdgeqError, match="too big"):
        load_file(tmp_path / "big.yaml", "dataset file")
