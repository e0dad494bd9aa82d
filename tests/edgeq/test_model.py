from pathlib import Path

import pytest
import ultralytics

from edgeq.errors import EdgeqError
from edgeq.model import load_detector

CFG = Path(ultralytics.__file__).parent / "cfg" / "models"


def test_missing_model(tmp_path):
    with pytest.raises(EdgeqError, match="does not exist"):
        load_detector(tmp_path / "nope.pt", 320)


def test_corrupt_checkpoint(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"this is not a checkpoint")
    with pytest.raises(EdgeqError, match="could not read .* as an Ultralytics checkpoint"):
        load_detector(bad, 320)


@pytest.mark.parametrize("cfg, task", [("v8/yolov8-seg.yaml", "segment"), ("v8/yolov8-cls.yaml", "classify"),
                                       ("v8/yolov8-pose.yaml", "pose")])
def test_non_detection_models_are_refused(cfg, task):
    with pytest.raises(EdgeqError, match=f"{task} model"):
        load_detector(CFG / cfg, 320)


@pytest.mark.parametrize("imgsz", [300, 0, 650])
def test_input_size_must_be_multiple_of_32(yolo_yaml, imgsz):
    with pytest.raises(EdgeqError, match="multiple of 32"):
        load_detector(yolo_yaml, imgsz)


def test_yaml_model_loads_untrained(yolo_yaml):
    detector = load_detector(yolo_yaml, 320)
    assert detector.head.nc == 6 and detector.head.strides == (8, 16, 32) and not detector.trained
    assert detector.main_activation == "SiLU" and detector.activations["SiLU"] > 40


def test_demo_checkpoint_loads_at_its_training_size(demo_pt):
    detector = load_detector(demo_pt)  # no imgsz: the size the checkpoint was trained at
    assert detector.trained and detector.head.names[0] == "circle" and detector.head.imgsz == 320
    assert load_detector(yolo_yaml_path := demo_pt.with_name("demo-yolov8n-silu.yaml")).head.imgsz == 640
    assert yolo_yaml_path.exists()


def test_demo_shorthand():
    from edgeq.demo import demo_model
    from edgeq.intake import resolve_model
    from edgeq.recipe import load_recipe

    model = resolve_model(load_recipe(None, target="openvino", overrides={"model": "demo:relu6"}))
    assert model == demo_model("relu6") and load_detector(model).main_activation == "ReLU6"
    with pytest.raises(EdgeqError, match="no demo detector 'demo:gelu'"):
        demo_model("gelu")


@pytest.mark.parametrize("name, reg_max", [("yolo11n.yaml", 16), ("yolov8s.yaml", 16), ("yolo26n.yaml", 1)])
def test_bare_names_are_ultralytics_packaged_configs(name, tmp_path, monkeypatch, reg_max):
    monkeypatch.chdir(tmp_path)  # not on disk here: the packaged config, never a download
    detector = load_detector(name, 320)
    assert detector.head.nc == 80 and detector.head.reg_max == reg_max and not detector.trained


def test_unknown_bare_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(EdgeqError, match="neither a file nor one of Ultralytics' packaged configs") as err:
        load_detector("yolo99n.yaml")
    assert "yolo11n.yaml" in str(err.value)


def test_bare_weights_name_not_on_disk_says_nothing_is_downloaded(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(EdgeqError, match="'yolov8n.pt' is not on disk, and edgeq downloads nothing") as err:
        load_detector("yolov8n.pt")
    assert "pass its path with --model" in str(err.value)


def test_malicious_checkpoint_is_refused_without_running(malicious_checkpoint):
    evil, marker = malicious_checkpoint
    with pytest.raises(EdgeqError, match="posix.system .*outside Ultralytics' weights-only allow-list") as err:
        load_detector(evil)
    assert "--trust-model" in str(err.value) and "nothing from the file was run" in str(err.value)
    assert not marker.exists()


def test_trust_model_loads_a_checkpoint_outside_the_allow_list(tmp_path, demo_pt):
    """A legacy checkpoint carrying an argparse.Namespace (as old training scripts saved their options)."""
    import argparse

    import torch

    ckpt = torch.load(demo_pt, map_location="cpu", weights_only=False)
    ckpt["opt"] = argparse.Namespace(epochs=10)
    legacy = tmp_path / "legacy.pt"
    torch.save(ckpt, legacy)
    with pytest.raises(EdgeqError, match="argparse.Namespace"):
        load_detector(legacy)
    detector = load_detector(legacy, trust_model=True)
    assert detector.trained and detector.head.nc == 6
