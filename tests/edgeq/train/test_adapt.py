"""`edgeq adapt` end to end on a tiny job (CPU, one epoch): the wiring, the checkpoint it writes, and its
refusals. Accuracy is the GPU runs' business (README); here only what can fail in the plumbing is asserted."""

from __future__ import annotations

import json

import pytest
import torch

from edgeq.train.device import SMOKE_IMAGE_EPOCHS


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    from edgeq.synthetic import generate_dataset

    return generate_dataset(tmp_path_factory.mktemp("tiny") / "shapes", train=8, val=4, imgsz=320, seed=3,
                            progress=False)


@pytest.fixture(scope="module")
def adapted(tiny_data, demo_pt, tmp_path_factory):
    from edgeq.cli import main

    out = tmp_path_factory.mktemp("adapt") / "run"
    code = main(["adapt", "--activation", "relu6", "--model", str(demo_pt), "--data", str(tiny_data),
                 "--epochs", "1", "--batch", "4", "--workers", "0", "--out", str(out), "--no-progress"])
    return code, out


def test_adapt_writes_a_relu6_checkpoint_that_loads_weights_only(adapted):
    from edgeq.model import load_detector

    code, out = adapted
    assert code == 0
    checkpoint = out / "demo-yolov8n-320-relu6.pt"
    detector = load_detector(checkpoint)  # weights-only, as every edgeq command reads it
    assert detector.activations.get("ReLU6", 0) >= 40 and "SiLU" not in detector.activations
    from ultralytics import YOLO

    yolo = YOLO(str(checkpoint))  # and as Ultralytics loads it
    assert yolo.model.yaml["activation"] == "nn.ReLU6()"


def test_adapt_report_records_before_after_and_training(adapted):
    _, out = adapted
    report = json.loads((out / "adapt.json").read_text())
    assert report["epochs"] == 1 and report["device"] == "cpu" and report["replaced_modules"] == 57
    assert 0 <= report["fp32_after"] <= 100 and report["fp32_before"] > 50  # the demo detector on its shapes
    assert report["eval_images"] == 4
    assert "| original |" in (out / "adapt.md").read_text()
    assert not (out / "train" / "teacher.pt").exists()  # the sanitized copies are not left behind


def test_adapt_refuses_an_existing_output_folder(cli, adapted, tiny_data):
    _, out = adapted
    code, _, err = cli("adapt", "--activation", "relu6", "--data", str(tiny_data), "--out", str(out))
    assert code == 2 and "already holds" in err and "--force" in err


def test_adapt_needs_a_train_split(cli, tmp_path, tiny_data):
    import yaml

    data = yaml.safe_load(tiny_data.read_text())
    del data["train"]
    no_train = tiny_data.parent / "no-train.yaml"
    no_train.write_text(yaml.safe_dump(data))
    code, _, err = cli("adapt", "--activation", "relu6", "--data", str(no_train), "--out", str(tmp_path / "o"))
    assert code == 2 and "no train split" in err and "train:" in err
    assert len(err.strip().splitlines()) == 1


def test_adapt_needs_training_args_or_imgsz(cli, tmp_path, demo_pt, tiny_data):
    ckpt = torch.load(demo_pt, weights_only=False)
    ckpt.pop("train_args")
    bare = tmp_path / "bare.pt"
    torch.save(ckpt, bare)
    code, _, err = cli("adapt", "--activation", "relu6", "--model", str(bare), "--data", str(tiny_data),
                       "--out", str(tmp_path / "o"))
    assert code == 2 and "no training arguments" in err and "--imgsz" in err and "--data" in err


def test_adapt_without_a_gpu_refuses_a_large_job_with_an_estimate(cli, tmp_path, small_data, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    epochs = SMOKE_IMAGE_EPOCHS  # 40 train images x 64 epochs: far past smoke size
    code, _, err = cli("adapt", "--activation", "relu6", "--data", str(small_data), "--epochs", str(epochs),
                       "--out", str(tmp_path / "o"))
    assert code == 2 and "no CUDA device" in err and "would take about" in err and "--device cpu" in err
    assert not (tmp_path / "o").exists()


def test_adapt_refuses_an_activation_the_target_refuses(tmp_path, monkeypatch):
    """The refusal reads the target's own rule table: here one that refuses Clip (ReLU6)."""
    from edgeq.errors import EdgeqError
    from edgeq.rules import Rule, RuleTable, Severity
    from edgeq.train import adapt

    table = RuleTable("toy", (Rule("toy.clip", ("Clip",), "always", Severity.FALLBACK, "Clip is not mapped",
                                   "use ReLU"),))

    class ToyBackend:
        def onnx_rules(self, target):
            return table

    monkeypatch.setattr("edgeq.backend.backend_for", lambda target: ToyBackend())
    with pytest.raises(EdgeqError) as info:
        adapt.refuse_if_target_refuses("toy", "relu6")
    assert "still refuses it" in str(info.value) and "--activation relu" in info.value.one_line()
    adapt.refuse_if_target_refuses("toy", "relu")  # Relu passes the same table


def test_adapt_refuses_zero_epochs(cli, tmp_path):
    code, _, err = cli("adapt", "--activation", "relu6", "--epochs", "0", "--out", str(tmp_path / "o"))
    assert code == 2 and "at least one epoch" in err
