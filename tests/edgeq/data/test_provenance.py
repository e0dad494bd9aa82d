"""The calibration set on record: images by content hash, one hash for the evaluation set, and calibration images
that are also evaluation images (by content, under any name) refused in one line unless --allow-overlap."""

import json
import shutil

import pytest
import yaml
from ort_testlib import toy_plugins

import edgeq.backend as backend_module
from edgeq.data import label_path, load_dataset
from edgeq.data.provenance import content_hash, evaluation_set_hash, image_sets

COPIED = 3  # evaluation images planted into the calibration split under new names


@pytest.fixture
def overlapping_data(tmp_path, small_data):
    """The small dataset with COPIED of its val images (and their labels) copied into train, renamed."""
    root = tmp_path / "shapes"
    shutil.copytree(small_data.parent, root)
    config = yaml.safe_load(small_data.read_text())
    config["path"] = str(root)
    (root / "data.yaml").write_text(yaml.safe_dump(config))
    dataset = load_dataset(root / "data.yaml")
    for i, image in enumerate(dataset.images("val")[:COPIED]):
        copy = root / "images" / "train" / f"copied-{i}{image.suffix}"
        shutil.copyfile(image, copy)
        shutil.copyfile(label_path(image), label_path(copy))
    return root / "data.yaml"


def test_the_evaluation_set_hash_is_its_content_in_any_order_under_any_name(tmp_path, small_data):
    images = list(load_dataset(small_data).images("val")[:5])
    assert evaluation_set_hash(images) == evaluation_set_hash(images[::-1])
    renamed = tmp_path / "images" / "val"
    renamed.mkdir(parents=True)
    moved = []
    for i, image in enumerate(images):
        moved.append(shutil.copyfile(image, renamed / f"other-{i}{image.suffix}"))
        label_path(moved[-1]).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(label_path(image), label_path(moved[-1]))
    assert evaluation_set_hash(moved) == evaluation_set_hash(images)
    label_path(moved[0]).write_text("0 0.5 0.5 0.1 0.1\n")  # one label changed: another set
    assert evaluation_set_hash(moved) != evaluation_set_hash(images)
    assert evaluation_set_hash(moved[1:]) == evaluation_set_hash(images[1:])


def test_image_sets_find_the_copies_by_content(overlapping_data):
    dataset = load_dataset(overlapping_data)
    train, val = dataset.images("train"), dataset.images("val")
    sets = image_sets(train, val, dataset.root)
    assert len(sets.overlap) == COPIED and all(c.startswith("images/train/copied-") for c, _ in sets.overlap)
    assert [e["sha256"] for e in sets.calibration] == [content_hash(p) for p in train]
    assert sets.calibration[0]["path"] == str(train[0].relative_to(dataset.root))
    clean = [p for p in train if not p.name.startswith("copied-")]
    assert not image_sets(clean, val, dataset.root).overlap
    assert image_sets(clean, val, dataset.root).evaluation_sha256 == sets.evaluation_sha256


@pytest.fixture
def toy_targets(monkeypatch):
    monkeypatch.setattr(backend_module, "discover", toy_plugins)


def _export(cli, out, data, *extra):
    return cli("export", "--target", "ort-int8", "--model", "demo", "--imgsz", 320, "--data", data,
               "--calib-images", 200, "--val-images", 200, "--out", out, "--no-progress",
               "--set", "evaluation.latency_runs=0", "--set", "options.quantize=false", *extra)


def test_overlap_is_refused_in_one_line_naming_both_counts(cli, tmp_path, overlapping_data, toy_targets):
    code, _, err = _export(cli, tmp_path / "out", overlapping_data)
    lines = [line for line in err.splitlines() if line.startswith("edgeq: error:")]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert f"{COPIED} of the 43 calibration images (split 'train') are also among the 40 evaluation images" in lines[0]
    assert "by content" in lines[0] and "Fix:" in lines[0] and "--allow-overlap" in lines[0]
    assert not (tmp_path / "out").exists()


def test_allow_overlap_exports_and_the_report_keeps_both_sets(cli, tmp_path, overlapping_data, toy_targets):
    code, _, err = _export(cli, tmp_path / "out", overlapping_data, "--allow-overlap")
    assert code == 0, err
    data = json.loads((tmp_path / "out" / "report.json").read_text())["data"]
    dataset = load_dataset(overlapping_data)
    assert data["overlap_images"] == COPIED and len(data["calibration_set"]) == data["calib_images"] == 43
    by_path = {e["path"]: e["sha256"] for e in data["calibration_set"]}
    assert by_path["images/train/copied-0.jpg"] == content_hash(dataset.images("val")[0])
    assert all(by_path[str(p.relative_to(dataset.root))] == content_hash(p) for p in dataset.images("train"))
    assert data["evaluation_set"] == {"images": 40, "sha256": evaluation_set_hash(dataset.images("val"))}
    md = (tmp_path / "out" / "report.md").read_text()
    assert f"**{COPIED} of them also evaluation images** (`--allow-overlap`)" in md
