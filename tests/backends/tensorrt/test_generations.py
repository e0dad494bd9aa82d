"""TensorRT 10 and 11 side by side: options.tensorrt and options.jetson refused in one line where the device cannot
build them, and the emitted build scripts run against a stand-in trtexec that reports a TensorRT version: each
builds only with its own generation (one line naming the other folder otherwise), refuses DLA where TensorRT or
the Jetson has none, and passes trtexec only flags its generation accepts (the flag table)."""

import os
import subprocess
import sys

import pytest
from edgeq_tensorrt import DLAOptions, TensorRTOptions
from edgeq_tensorrt.generations import generations, removed_flags, selected
from edgeq_tensorrt.scripts import DlaBuild, write_gpu_shell, write_python, write_shell


def test_generation_option_and_the_devices_that_refuse_it():
    assert [g.name for g in selected(DLAOptions().tensorrt)] == ["10", "11"]  # default: both
    assert DLAOptions(tensorrt=11).tensorrt == "11" and TensorRTOptions(tensorrt=10).tensorrt == "10"
    with pytest.raises(Exception, match="'9' is not a TensorRT generation edgeq builds for"):
        TensorRTOptions(tensorrt=9)
    for jetson in ("orin-nano", "thor"):
        with pytest.raises(Exception, match="has no DLA"):
            DLAOptions(tensorrt="11", jetson=jetson)
    with pytest.raises(Exception, match="restores DLA on the Jetson AGX Orin only"):
        DLAOptions(tensorrt="both", jetson="orin-nx")
    with pytest.raises(Exception, match="Thor's JetPack ships TensorRT 11.x only"):
        TensorRTOptions(tensorrt="10", jetson="thor")
    assert DLAOptions(jetson="agx-orin").tensorrt == "both" and DLAOptions(tensorrt="10", jetson="orin-nx")
    assert TensorRTOptions(jetson="orin-nano", tensorrt="both") and TensorRTOptions(jetson="thor", tensorrt="11")


def test_the_flag_table_knows_what_tensorrt_11_removed():
    eleven, ten = generations()["11"], generations()["10"]
    line = ["trtexec", "--onnx=m.onnx", "--int8", "--fp16", "--calib=m.cache", "--precisionConstraints=obey",
            "--layerPrecisions=a:fp16", "--saveEngine=m.engine"]
    assert removed_flags(line, eleven) == ["--int8", "--fp16", "--calib", "--precisionConstraints",
                                           "--layerPrecisions"]
    assert removed_flags(line, ten) == []
    assert removed_flags(["trtexec", "--onnx=m.onnx", "--madeUpFlag"], ten) == ["--madeUpFlag"]


@pytest.fixture(scope="module")
def scripts(tmp_path_factory):
    """Both generations' scripts as an export writes them, and a stand-in trtexec that prints TensorRT's banner
    for --version and records every other call's arguments."""
    root = tmp_path_factory.mktemp("generations")
    for gen in generations().values():
        folder = root / gen.folder
        folder.mkdir()
        build = DlaBuild(onnx="model.onnx", cache="model.cache" if gen.name == "10" else None,
                         outputs=("box_0", "cls_0"), fp16_layers=("/cv2.0/cv2.0.2/Conv",), generation=gen.name)
        write_shell(build, folder / "build_dla.sh")
        write_python(build, folder / "build_dla.py")
        write_gpu_shell("model-int8-qdq.onnx" if gen.name == "10" else "model-int8-qdq-fp16.onnx",
                        folder / "build_engine.sh", gen.name)
    fake = root / "trtexec"
    fake.write_text('#!/usr/bin/env bash\nif [ "$1" = --version ]; then echo "&&&& RUNNING TensorRT.trtexec '
                    '[TensorRT v$FAKE_CODE] # trtexec --version"; exit 0; fi\nprintf "%s\\n" "$@" > "$FAKE_ARGS"\n')
    fake.chmod(0o755)
    return root


def _run(scripts, folder, script, code, *args, model="NVIDIA Jetson AGX Orin Developer Kit"):
    calls = scripts / f"args-{folder}-{script}-{code}"
    env = dict(os.environ, TRTEXEC=str(scripts / "trtexec"), FAKE_CODE=str(code), FAKE_ARGS=str(calls),
               JETSON_MODEL=model)
    env.pop("TRT_VERSION", None)
    run = subprocess.run(["bash", str(scripts / folder / script), *args], capture_output=True, text=True, env=env,
                         check=False)
    return run, (calls.read_text().split("\n")[:-1] if calls.exists() else None)


@pytest.mark.parametrize("folder, script, code, refusal", [
    ("tensorrt10", "build_dla.sh", 110401, "run ../tensorrt11/build_dla.sh"),
    ("tensorrt10", "build_dla.sh", 100800, "10.7 was the last 10.x with DLA"),
    ("tensorrt11", "build_dla.sh", 100300, "run ../tensorrt10/build_dla.sh"),
    ("tensorrt11", "build_dla.sh", 110200, "11.0-11.3 dropped it"),
    ("tensorrt11", "build_dla.sh", 110400, "11.0-11.3 dropped it"),
    ("tensorrt10", "build_engine.sh", 110000, "run ../tensorrt11/build_engine.sh"),
    ("tensorrt11", "build_engine.sh", 100300, "run ../tensorrt10/build_engine.sh"),
])
def test_a_script_refuses_the_wrong_tensorrt_in_one_line(scripts, folder, script, code, refusal):
    run, calls = _run(scripts, folder, script, code)
    assert run.returncode == 2 and calls is None
    assert len(run.stderr.strip().splitlines()) == 1 and refusal in run.stderr


@pytest.mark.parametrize("model", ["NVIDIA Jetson Orin Nano Developer Kit", "NVIDIA Jetson AGX Thor Developer Kit"])
def test_dla_scripts_refuse_a_jetson_without_dla(scripts, model):
    for folder, code in (("tensorrt10", 100300), ("tensorrt11", 110401)):
        run, calls = _run(scripts, folder, "build_dla.sh", code, model=model)
        assert run.returncode == 2 and calls is None and "has no DLA" in run.stderr


@pytest.mark.parametrize("folder, script, code", [("tensorrt10", "build_dla.sh", 100300),
                                                  ("tensorrt11", "build_dla.sh", 110401),
                                                  ("tensorrt10", "build_engine.sh", 100300),
                                                  ("tensorrt11", "build_engine.sh", 110500)])
def test_a_script_on_its_own_tensorrt_calls_trtexec_with_accepted_flags_only(scripts, folder, script, code):
    gen = next(g for g in generations().values() if g.folder == folder)
    modes = ("standalone", "fallback") if script == "build_dla.sh" else ((),)
    for mode in modes:
        run, calls = _run(scripts, folder, script, code, *([mode] if mode else []))
        assert run.returncode == 0, run.stderr
        assert calls and calls[0].startswith("--onnx=") and removed_flags(["trtexec", *calls], gen) == []
        if gen.name == "10" and script == "build_dla.sh":
            assert "--calib=model.cache" in calls and "--layerPrecisions=/cv2.0/cv2.0.2/Conv:fp16" in calls


def test_python_build_script_refuses_the_other_generation(scripts, tmp_path):
    (tmp_path / "tensorrt.py").write_text('__version__ = "10.3.0.30"\n')  # what `import tensorrt` reports
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    run = subprocess.run([sys.executable, str(scripts / "tensorrt11" / "build_dla.py")], capture_output=True,
                         text=True, env=env, check=False)
    assert run.returncode == 1 and run.stderr.strip().count("\n") == 0
    assert "TensorRT 10.3.0.30 is not TensorRT 11.x" in run.stderr and "../tensorrt10/build_dla.py" in run.stderr
    source = (scripts / "tensorrt11" / "build_dla.py").read_text()
    assert not [api for api in generations()["11"].python_removed if api in source]
    assert "IInt8EntropyCalibrator2" in (scripts / "tensorrt10" / "build_dla.py").read_text()


@pytest.mark.parametrize("name, target, jetson, tensorrt", [("jetson-agx-orin-dla", "dla", "agx-orin", "both"),
                                                            ("jetson-orin-nx-dla", "dla", "orin-nx", "10"),
                                                            ("jetson-orin-nano", "tensorrt", "orin-nano", "both"),
                                                            ("jetson-thor", "tensorrt", "thor", "11")])
def test_recipes_per_jetson(name, target, jetson, tensorrt):
    from edgeq_tensorrt import TensorRTBackend

    from edgeq.recipe import load_recipe

    recipe = load_recipe(name)
    options = TensorRTBackend().options_model(target)(**recipe.options)
    assert recipe.target == target and (options.jetson, options.tensorrt) == (jetson, tensorrt)


def test_the_old_recipe_name_is_an_alias_saying_the_new_one(capsys):
    from edgeq.recipe import load_recipe

    recipe = load_recipe("jetson-orin-nano-dla")
    err = capsys.readouterr().err.strip().splitlines()
    assert recipe.target == "dla" and recipe.options["jetson"] == "agx-orin"
    assert len(err) == 1 and "'jetson-orin-nano-dla' is now 'jetson-agx-orin-dla'" in err[0]


@pytest.mark.parametrize("args, problem", [
    (("--recipe", "jetson-agx-orin-dla", "--set", "options.jetson=orin-nano", "--set", "options.tensorrt=11"),
     "Orin Nano has no DLA"),
    (("--target", "dla", "--set", "options.jetson=thor"), "Jetson Thor has no DLA"),
    (("--target", "tensorrt", "--set", "options.tensorrt=9"), "'9' is not a TensorRT generation"),
])
def test_cli_refuses_what_no_device_builds_in_one_line(tmp_path, cli, args, problem):
    out = tmp_path / "out"
    code, _, err = cli("export", *args, "--out", out, "--no-progress")
    errors = [line for line in err.splitlines() if line.startswith("edgeq: error:")]
    assert code == 2 and len(errors) == 1 and problem in errors[0] and "options." in errors[0]
    assert "Traceback" not in err and not out.exists()
