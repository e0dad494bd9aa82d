"""Deploy kits of the TFLite family from one `--target tflite,edgetpu` run on the demo: the tflite kit's infer.py
runs here (LiteRT, as a user's device would) and prints what edgeq's runner and decoder give; the Edge TPU kit
says how to compile and which delegate runs the compiled file."""

import json
import subprocess
import sys

import pytest
from tflite_testlib import need_stack

need_stack()


@pytest.fixture(scope="module")
def kits(tmp_path_factory):
    from edgeq.cli import main

    out = tmp_path_factory.mktemp("kits") / "out"
    code = main(["export", "--target", "tflite,edgetpu", "--out", str(out), "--calib-images", "32", "--val-images",
                 "16", "--no-progress", "--set", "options.heads=detached", "--set", "evaluation.latency_runs=0"])
    assert code == 0
    return out


def test_tflite_kit_prints_what_the_evaluator_sees(kits):
    from deploy_testlib import evaluator_detections, parse_detections
    from edgeq_tflite.runner import LiteRTRunner

    from edgeq.data import load_dataset
    from edgeq.head import HeadSpec

    kit = kits / "tflite"
    deploy = json.loads((kit / "deploy.json").read_text())
    assert deploy["default"] == "tflite-int8-detached-per-channel.tflite"
    image = min(load_dataset(json.loads((kits / "report.json").read_text())["data"]).images("val"))
    run = subprocess.run([sys.executable, str(kit / "infer.py"), str(image)], capture_output=True, text=True,
                         check=False)
    assert run.returncode == 0, run.stderr
    printed = parse_detections(run.stdout)
    head = HeadSpec.from_json(kit / "head.json")
    runner = LiteRTRunner(kit / deploy["default"], head=head, layout=None)
    expected = evaluator_detections(runner, kit, image)
    assert len(printed) == len(expected) > 0
    for got, want in zip(printed, expected):
        assert got[0] == want[0] and abs(got[1] - want[1]) < 2e-3
        assert max(abs(a - b) for a, b in zip(got[2:], want[2:])) < 0.5


def test_edgetpu_kit_names_the_compiler_and_the_delegate(kits):
    kit = kits / "edgetpu"
    text = (kit / "DEPLOY.md").read_text()
    assert "./compile_edgetpu.sh" in text and "edgetpu_compiler" in text and "libedgetpu1-std" in text
    assert ("python3 infer.py image.jpg --model edgetpu-int8-detached-per-channel_edgetpu.tflite --delegate "
            "libedgetpu.so.1") in text
    deploy = json.loads((kit / "deploy.json").read_text())
    assert deploy["artifacts"][0]["device_files"] == ["edgetpu-int8-detached-per-channel_edgetpu.tflite"]
    # the compiled file is not built here: the kit says so instead of failing in the interpreter
    run = subprocess.run([sys.executable, str(kit / "infer.py"), "x.jpg", "--model",
                          "edgetpu-int8-detached-per-channel_edgetpu.tflite"], capture_output=True, text=True,
                         check=False, cwd=kit)
    assert run.returncode == 2 and "does not exist; build it first" in run.stderr
