"""Model YAMLs are checked before Ultralytics builds them: nothing in one is evaluated (issue 20, case 1)."""

import pytest
from ort_testlib import toy_plugins

import edgeq.backend as backend_module
from edgeq.errors import EdgeqError
from edgeq.model import load_detector
from edgeq.untrusted.model_yaml import check_model_config


def _with(yolo_yaml, tmp_path, marker, replace: tuple[str, str] | None = None, activation: str | None = None):
    text = yolo_yaml.read_text()
    if activation is not None:
        text = text.replace("nc: 6", f'nc: 6\nactivation: "{activation}"')
    if replace:
        assert replace[0] in text
        text = text.replace(*replace)
    path = tmp_path / "evil-yolov8n.yaml"
    path.write_text(text.replace("MARKER", str(marker)))
    return path


EVIL_ACTIVATION = "__import__('os').system('touch MARKER') or __import__('torch').nn.SiLU()"


def test_export_of_a_yaml_whose_activation_runs_code_is_refused_and_runs_nothing(cli, tmp_path, yolo_yaml,
                                                                                  monkeypatch):
    monkeypatch.setattr(backend_module, "discover", toy_plugins)
    marker = tmp_path / "pwned"
    evil = _with(yolo_yaml, tmp_path, marker, activation=EVIL_ACTIVATION)
    code, _, err = cli("export", "--target", "ort-int8", "--model", evil, "--out", tmp_path / "out", "--no-progress")
    assert code == 2 and "activation: \"__import__('os')" in err and "--trust-model" in err, err
    assert "Traceback" not in err and not marker.exists() and not (tmp_path / "out").exists()


@pytest.mark.parametrize("replace, words", [
    (("[-1, 1, Conv, [64, 3, 2]]", "[-1, 1, torch_safe_load, ['MARKER.pt']]"), "module 'torch_safe_load'"),
    (("[-1, 1, Conv, [64, 3, 2]]", "[-1, 1, TorchVision, [64, resnet18, DEFAULT]]"), "module 'TorchVision'"),
    (("[-1, 1, Conv, [64, 3, 2]]", "[-1, 1, nn.Module, []]"), "module 'nn.Module'"),
    (("[-1, 1, Conv, [64, 3, 2]]", "[-1, 1, Conv, [\"__import__('os').system('touch MARKER')\", 3, 2]]"),
     "argument \"__import__('os')"),
    (("[-1, 1, Conv, [64, 3, 2]]", "[-1, 1, Conv, [d, 3, 2]]"), "argument 'd'"),
    (("[-1, 3, C2f, [128, True]]", "[-1, 100000, C2f, [128, True]]"), "repeats 100000"),
    (("nc: 6", "nc: .nan"), "nc: nan"),
])
def test_what_ultralytics_would_evaluate_or_look_up_is_refused(yolo_yaml, tmp_path, replace, words):
    marker = tmp_path / "pwned"
    with pytest.raises(EdgeqError, match="edgeq builds only listed layers") as refused:
        load_detector(_with(yolo_yaml, tmp_path, marker, replace=replace), 64)
    assert words in str(refused.value) and not marker.exists() and not marker.with_suffix(".pt").exists()


def test_a_plain_activation_is_built_from_edgeqs_own_spelling(yolo_yaml, tmp_path):
    detector = load_detector(_with(yolo_yaml, tmp_path, None, activation="torch.nn.LeakyReLU( 0.1 , inplace=True)"),
                             64)
    assert detector.main_activation == "LeakyReLU"
    assert detector.module.yaml["activation"] == "nn.LeakyReLU(0.1, inplace=True)"


def test_trust_model_builds_the_yaml_as_ultralytics_does(yolo_yaml, tmp_path):
    """The opt-out for files from a trusted source: Ultralytics evaluates the string (here, a harmless marker)."""
    marker = tmp_path / "ran"
    detector = load_detector(_with(yolo_yaml, tmp_path, marker, activation=EVIL_ACTIVATION), 64, trust_model=True)
    assert marker.exists() and detector.main_activation == "SiLU"


def test_ultralytics_packaged_detection_configs_pass_the_check():
    from edgeq.env import offline_ultralytics

    offline_ultralytics()
    from ultralytics.nn.tasks import yaml_model_load

    for name in ("yolov8n.yaml", "yolo11n.yaml", "yolo12n.yaml", "yolo26n.yaml", "yolov10n.yaml", "yolov5nu.yaml",
                 "yolov3-tinyu.yaml", "rtdetr-l.yaml", "yolov8n-p6.yaml", "yolov9t.yaml"):
        check_model_config(yaml_model_load(name), name)


def test_a_checkpoints_model_yaml_is_checked_before_training_rebuilds_it(tmp_path, demo_pt):
    """Ultralytics' trainer rebuilds the model from the checkpoint's model.yaml, evaluating its activation."""
    import torch

    from edgeq.model import read_checkpoint
    from edgeq.train.source import load_training_source

    ckpt = read_checkpoint(demo_pt, trust_model=False)
    (ckpt.get("ema") or ckpt["model"]).yaml["activation"] = EVIL_ACTIVATION.replace("MARKER", str(tmp_path / "x"))
    torch.save(ckpt, tmp_path / "tampered.pt")
    with pytest.raises(EdgeqError, match=r"tampered.pt \(its model.yaml\)': activation"):
        load_training_source(tmp_path / "tampered.pt", None, trust_model=False)
