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
    # --jobs 2: both targets of the family built at once in worker processes (they once shared a work folder that
    # the first to finish deleted under the other)
    code = main(["export", "--target", "tflite,edgetpu", "--jobs", "2", "--out", str(out), "--calib-images", "32",
                 "--val-images", "16", "--no-progress", "--set", "options.heads=detached", "--set",
                 "evaluation.latency_runs=0"])
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


def test_validate_on_the_device_reproduces_the_reports_figure(kits, tmp_path, cli):
    """The tflite kit's `infer.py --validate` with LiteRT, as on a device: the report's figure for the shipped file
    on the same images (by hash), and `edgeq compare` with the per-output agreement of the four images it kept."""
    report = json.loads((kits / "tflite" / "report.json").read_text())
    record = tmp_path / "device-validation.json"
    run = subprocess.run([sys.executable, str(kits / "tflite" / "infer.py"), "--validate", report["data"]["source"],
                          "--out", str(record)], capture_output=True, text=True, check=False, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    device = json.loads(record.read_text())
    entry = next(a for a in report["artifacts"] if a["name"] == device["artifact"]["name"])
    assert entry["role"] == "deployable" and device["dataset"]["images"] == 16
    assert device["dataset"]["sha256"] == report["data"]["evaluation_set"]["sha256"]
    assert abs(device["map50_95"] - entry["map50_95"]) <= 0.05
    code, printed, err = cli("compare", kits / "report.json", record)  # the run's report: the target's is used
    assert code == 0, err
    assert f"| edgeq (measured, {entry['runtime']}) | {entry['map50_95']:.2f} |" in printed
    assert "(4 images: val_000000.jpg, val_000001.jpg, val_000002.jpg, val_000003.jpg)" in printed
    rows = {r[1].strip(): r for r in (line.split("|") for line in printed.splitlines()) if len(r) == 6 and
            r[1].strip()[:4] in ("box_", "cls_")}
    assert sorted(rows) == ["box_0", "box_1", "box_2", "cls_0", "cls_1", "cls_2"], printed
    # the same file through the same LiteRT kernels here: integer arithmetic, every value equal
    assert all(r[3].strip() == "0" and r[4].strip() == "100.0%" for r in rows.values()), printed


def test_validate_an_emulated_target_says_which_runtime_its_outputs_meet(kits, tmp_path, cli):
    """The Edge TPU kit's file run by LiteRT on this CPU stands in for the board: compare sets it against edgeq's
    emulated figure (LiteRT's reference INT8 kernels) and says the raw outputs are held to the runner `edgeq eval`
    uses for the file, which is not the one behind that figure."""
    report = json.loads((kits / "edgetpu" / "report.json").read_text())
    record = tmp_path / "device-validation.json"
    run = subprocess.run([sys.executable, str(kits / "edgetpu" / "infer.py"), "--validate", report["data"]["source"],
                          "--model", "edgetpu-int8-detached-per-channel.tflite", "--out", str(record)],
                         capture_output=True, text=True, check=False, cwd=kits / "edgetpu")
    assert run.returncode == 0, run.stderr
    code, printed, err = cli("compare", kits / "report.json", record)
    assert code == 0, err
    entry = next(a for a in report["artifacts"] if a["name"] == "edgetpu-int8-detached-per-channel")
    assert f"| edgeq (emulated, {entry['runtime']}) | {entry['map50_95']:.2f} |" in printed
    assert "reference" in entry["runtime"] and "the raw outputs are compared with" in printed


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
