"""Datasets resolved as Ultralytics resolves them: keys, `path`, split forms, nested folders, refusals."""

import shutil
from pathlib import Path

import pytest
import yaml

from edgeq.data import load_dataset
from edgeq.errors import EdgeqError


def _image(path: Path, source: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(source, path)
    return path


@pytest.fixture(scope="module")
def jpg(small_data) -> Path:
    return load_dataset(small_data).images("val")[0]


def test_yaml_dataset_lists_splits(small_data):
    ds = load_dataset(small_data)
    assert len(ds.images("train")) == 40 and len(ds.images("val")) == 40
    assert ds.names == ("circle", "square", "triangle", "star", "cross", "ring")
    assert ds.root == small_data.parent.resolve()


def test_folder_dataset_flat(tmp_path, jpg):
    (tmp_path / "labels").mkdir()
    _image(tmp_path / "images" / jpg.name, jpg)
    ds = load_dataset(tmp_path)
    assert ds.images("val") == ds.images("train") and len(ds.images("val")) == 1


def test_folder_holding_one_yaml_is_that_dataset(tmp_path, jpg):
    _image(tmp_path / "pics" / "a.jpg", jpg)
    (tmp_path / "data.yaml").write_text(yaml.safe_dump({"names": ["a"], "train": "pics", "val": "pics"}))
    assert len(load_dataset(tmp_path).images("val")) == 1


def test_names_as_list_or_dict(tmp_path, jpg):
    _image(tmp_path / "images" / "val" / "a.jpg", jpg)
    for names in (["hat", "head"], {0: "hat", 1: "head"}):
        (tmp_path / "d.yaml").write_text(yaml.safe_dump({"names": names, "train": "images/val", "val": "images/val"}))
        assert load_dataset(tmp_path / "d.yaml").names == ("hat", "head")


def test_roboflow_layout_with_parent_relative_splits(tmp_path, jpg):
    """Roboflow writes `train: ../train/images` beside a yaml in the dataset folder; Ultralytics drops the `../`."""
    root = tmp_path / "export"
    _image(root / "train" / "images" / "a.jpg", jpg)
    _image(root / "valid" / "images" / "b.jpg", jpg)
    (root / "data.yaml").write_text(yaml.safe_dump({"names": ["a"], "nc": 1, "train": "../train/images",
                                                    "val": "../valid/images"}))
    ds = load_dataset(root / "data.yaml")
    assert [p.name for p in ds.images("val")] == ["b.jpg"] and ds.root == root.resolve()


def test_relative_path_is_the_working_directory_when_it_exists_there(tmp_path, jpg, monkeypatch):
    _image(tmp_path / "work" / "sets" / "hats" / "images" / "val" / "a.jpg", jpg)
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "d.yaml").write_text(yaml.safe_dump({"path": "sets/hats", "names": ["a"],
                                                             "train": "images/val", "val": "images/val"}))
    monkeypatch.chdir(tmp_path / "work")
    ds = load_dataset(tmp_path / "cfg" / "d.yaml")
    assert ds.root == (tmp_path / "work" / "sets" / "hats").resolve() and len(ds.images("val")) == 1


def test_relative_path_elsewhere_means_ultralytics_datasets_folder(tmp_path, monkeypatch):
    from ultralytics.utils import DATASETS_DIR

    (tmp_path / "d.yaml").write_text(yaml.safe_dump({"path": "no-such-set-for-edgeq", "names": ["a"],
                                                     "train": "images/train", "val": "images/val"}))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(EdgeqError, match=str(Path(DATASETS_DIR) / "no-such-set-for-edgeq")):
        load_dataset(tmp_path / "d.yaml")


def test_split_as_list_of_folders_txt_list_and_nested_folders(tmp_path, jpg, monkeypatch):
    _image(tmp_path / "a" / "deep" / "er" / "1.jpg", jpg)
    _image(tmp_path / "b" / "2.png", jpg)
    _image(tmp_path / "listed" / "3.jpg", jpg)
    (tmp_path / "b" / "notes.txt").write_text("not an image")
    (tmp_path / "val.txt").write_text("./listed/3.jpg\n")
    (tmp_path / "d.yaml").write_text(yaml.safe_dump({"names": ["a"], "train": ["a", "b"], "val": "val.txt"}))
    ds = load_dataset(tmp_path / "d.yaml")
    assert [p.name for p in ds.images("train")] == ["1.jpg", "2.png"]
    assert [p.name for p in ds.images("val")] == ["3.jpg"]


def test_download_script_never_runs(tmp_path):
    marker = tmp_path / "downloaded"
    (tmp_path / "d.yaml").write_text(yaml.safe_dump({"names": ["a"], "train": "images/train", "val": "images/val",
                                                     "download": f"open({str(marker)!r}, 'w').write('x')"}))
    with pytest.raises(EdgeqError, match="images not found"):
        load_dataset(tmp_path / "d.yaml")
    assert not marker.exists()


@pytest.mark.parametrize("content, problem", [
    (None, "does not exist"),
    ({"names": ["a"], "train": "images/train"}, "'val:' key missing"),
    ({"names": ["a"], "train": "images/train", "val": "nowhere"}, "missing path"),
    ({"names": ["a"], "train": "images/train", "val": "images/empty"}, "holds no images"),
    ({"train": "x", "val": "x"}, "no 'names:'"),
    ({"names": ["a", "b"], "nc": 3, "train": "x", "val": "x"}, "must match"),
    ("names: [a\n", "not valid YAML"),
])
def test_bad_datasets_name_the_problem(tmp_path, content, problem):
    (tmp_path / "images" / "train").mkdir(parents=True)
    (tmp_path / "images" / "empty").mkdir(parents=True)
    path = tmp_path / "data.yaml"
    if content is not None:
        path.write_text(content if isinstance(content, str) else yaml.safe_dump(content))
    with pytest.raises(EdgeqError, match=problem) as err:
        load_dataset(path).images("val")
    assert "Fix:" in str(err.value) and "\n" not in str(err.value)
