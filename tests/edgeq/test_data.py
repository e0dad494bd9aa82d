import numpy as np
import pytest
import yaml

from edgeq.data import load_dataset, preprocess, read_labels, subsample
from edgeq.errors import EdgeqError


def test_yaml_dataset_lists_splits(small_data):
    ds = load_dataset(small_data)
    assert len(ds.images("train")) == 40 and len(ds.images("val")) == 40
    assert ds.names == ("circle", "square", "triangle", "star", "cross", "ring")


def test_folder_dataset_flat(tmp_path, small_data):
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    src = load_dataset(small_data).images("val")[0]
    (tmp_path / "images" / src.name).write_bytes(src.read_bytes())
    ds = load_dataset(tmp_path)
    assert ds.images("val") == ds.images("train") and len(ds.images("val")) == 1


@pytest.mark.parametrize("content, problem", [
    (None, "does not exist"),
    ({"names": ["a"], "train": "images/train"}, "no 'val' split"),
    ({"names": ["a"], "train": "images/train", "val": "nowhere"}, "does not exist"),
    ({"names": ["a"], "train": "images/train", "val": "images/empty"}, "holds no images"),
    ({"train": "x"}, "no 'names:'"),
])
def test_bad_datasets_name_the_problem(tmp_path, content, problem):
    (tmp_path / "images" / "train").mkdir(parents=True)
    (tmp_path / "images" / "empty").mkdir(parents=True)
    path = tmp_path / "data.yaml"
    if content is not None:
        path.write_text(yaml.safe_dump(content))
    with pytest.raises(EdgeqError, match=problem) as err:
        load_dataset(path).images("val")
    assert "Fix:" in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("line", ["0 0.5 0.5 0.2", "x 0.5 0.5 0.2 0.2", "0 1.5 0.5 0.2 0.2", "9 0.5 0.5 0.2 0.2",
                                  "0 0.1 0.1 0.2 0.3 0.4 0.5 0.6"])
def test_malformed_label_lines_name_file_and_line(tmp_path, line):
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    image = tmp_path / "images" / "a.jpg"
    (tmp_path / "labels" / "a.txt").write_text(f"1 0.5 0.5 0.1 0.1\n{line}\n")
    with pytest.raises(EdgeqError, match=r"a\.txt:2"):
        read_labels(image, nc=6)


def test_letterbox_round_trip():
    image = np.zeros((100, 200, 3), np.uint8)
    batch, box = preprocess(image, 320)
    assert batch.shape == (1, 3, 320, 320) and batch.dtype == np.float32
    assert box.ratio == 1.6 and box.pad == (0, 80)
    original = np.array([[10, 20, 110, 70]], np.float32)
    letterboxed = original * box.ratio + np.array([0, 80, 0, 80])
    np.testing.assert_allclose(box.to_original(letterboxed), original, atol=1e-4)


def test_subsample_is_deterministic_and_sorted(tmp_path):
    paths = [tmp_path / f"{i:03}.jpg" for i in range(100)]
    a, b = subsample(paths, 10, seed=0), subsample(list(reversed(paths)), 10, seed=0)
    assert a == b == sorted(a) and len(set(a)) == 10
    assert subsample(paths, 10, seed=1) != a
    assert subsample(paths, 1000) == paths
