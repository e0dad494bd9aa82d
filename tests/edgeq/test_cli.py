import importlib.util
import subprocess

import pytest


def test_targets_lists_every_family(cli):
    code, out, _ = cli("targets")
    assert code == 0
    for target in ("openvino", "tflite", "edgetpu", "nxp", "ethos-u", "tensorrt", "dla"):
        assert f"| {target} |" in out


@pytest.mark.skipif(importlib.util.find_spec("openvino") is not None, reason="openvino is installed in this env")
def test_backend_without_its_dependency_names_the_extra(cli, tmp_path):
    code, _, err = cli("export", "--target", "openvino", "--out", tmp_path / "o")
    assert code == 2 and "pip install 'edgeq[openvino]'" in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_recipes_lists_and_resolves(cli):
    code, out, _ = cli("recipes")
    assert code == 0 and "| intel-cpu-openvino | openvino |" in out
    code, out, _ = cli("recipes", "intel-cpu-openvino")
    assert code == 0 and "target: openvino" in out and "extends" not in out


def test_help_teaches(cli, capsys):
    with pytest.raises(SystemExit) as exc:
        cli("export", "--help")
    assert exc.value.code == 0
    text = capsys.readouterr().out
    assert "examples:" in text and "--max-drop" in text and "--force" in text



def test_batch_on_a_batch_1_target_is_one_line_exit_2_before_any_work(cli, tmp_path):
    code, _, err = cli("export", "--target", "edgetpu", "--batch", "4", "--out", tmp_path / "o")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "target edgetpu builds batch 1 only: the Edge TPU compiler" in err and "leave --batch out" in err
    assert not (tmp_path / "o").exists() and not list(tmp_path.iterdir())


# --- one error boundary for every command (issue 20, case 9) ------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory):
    """A 1x1 convolution with a static 32x32 input, saved plainly, with external data, and with external data
    that points outside its folder."""
    import onnx
    from ort_testlib import tiny_conv_onnx

    folder = tmp_path_factory.mktemp("onnx")
    (folder / "model").mkdir()
    model = onnx.load(str(tiny_conv_onnx(folder / "model" / "plain.onnx")))
    onnx.save(model, str(folder / "model" / "external.onnx"), save_as_external_data=True, location="w.bin",
              size_threshold=0)
    escaping = onnx.load(str(folder / "model" / "external.onnx"), load_external_data=False)
    for entry in escaping.graph.initializer[0].external_data:
        if entry.key == "location":
            entry.value = "../outside.bin"
    onnx.save(escaping, str(folder / "model" / "escaping.onnx"))
    (folder / "outside.bin").write_bytes((folder / "model" / "w.bin").read_bytes())
    (folder / "model" / "garbage.onnx").write_bytes(b"this is not a protobuf")
    return folder / "model"


def _one_line(code, err, *fragments, exit_code=2):
    from cli_testlib import one_line_error

    one_line_error(subprocess.CompletedProcess([], code, "", err), *fragments, code=exit_code)


@pytest.mark.parametrize("args, words", [
    (["--val-images", "0"], "--val-images 0: evaluation needs at least one image"),
    (["--val-images", "-1"], "--val-images -1"),
    (["--latency-runs", "-1"], "--latency-runs -1 is negative"),
    (["--imgsz", "50"], "input size 50 is not a positive multiple of 32"),
    (["--imgsz", "64"], "'plain.onnx' takes 32x32 input, not --imgsz 64"),
    (["--layout", "detached", "--head-json", "HEAD"], "is not a head description (not JSON)"),
    (["--head-json", "MISSING"], "is not a file"),
])
def test_eval_arguments_that_would_run_nonsense_are_refused(cli, tmp_path, tiny_onnx, small_data, args, words):
    (tmp_path / "head.json").write_text("{nc: 6")
    args = [str(tmp_path / "head.json") if a == "HEAD" else str(tmp_path / "none.json") if a == "MISSING" else a
            for a in args]
    code, _, err = cli("eval", tiny_onnx / "plain.onnx", "--data", small_data, "--no-progress", *args)
    _one_line(code, err, words)


@pytest.mark.parametrize("name, words", [
    ("garbage.onnx", "'{}' cannot be loaded or run (InvalidProtobuf"),
    ("escaping.onnx", "External data path escapes model directory"),
])
def test_eval_of_a_file_its_runtime_refuses_is_one_line(cli, tiny_onnx, small_data, name, words):
    code, _, err = cli("eval", tiny_onnx / name, "--data", small_data, "--no-progress")
    _one_line(code, err, words.format(tiny_onnx / name), "re-export it")


def test_max_drop_nan_is_refused_before_any_work(cli, tmp_path):
    code, _, err = cli("export", "--target", "openvino", "--max-drop", "nan", "--out", tmp_path / "o")
    _one_line(code, err, "recipe key 'max_drop'", "neither points")
    assert not (tmp_path / "o").exists()


def test_out_under_a_file_and_a_cache_that_is_a_file(cli, tmp_path, monkeypatch):
    import os

    monkeypatch.setenv("EDGEQ_CACHE", os.environ.get("EDGEQ_CACHE", ""))  # --cache-dir sets it: restored after
    (tmp_path / "file").write_text("x")
    code, _, err = cli("export", "--target", "openvino", "--out", tmp_path / "file" / "out")
    _one_line(code, err, f"would be inside '{tmp_path / 'file'}', which is a file")
    code, _, err = cli("--cache-dir", tmp_path / "file", "targets")
    _one_line(code, err, f"the cache folder '{tmp_path / 'file'}' is a file")
    monkeypatch.setenv("EDGEQ_CACHE", str(tmp_path / "file"))
    code, _, err = cli("targets")
    _one_line(code, err, "is a file", "--cache-dir")


def test_a_bug_is_an_internal_error_with_its_traceback_kept(cli, monkeypatch, tmp_path):
    """Not bad input: one line that says so and where the traceback is, exit 1 (a plugin's bug here)."""
    import edgeq.backend as backend_module
    from edgeq.backend import Backend, TargetProfile

    class Buggy(Backend):
        family, extra, requires = "buggy", "buggy", ()
        profiles = {"buggy": TargetProfile(description="a plugin with a bug", accelerator="CPU", figures="emulated",
                                           latency_meaningful=False, fallback_default=True)}

        def options_model(self, target):
            raise NotImplementedError

        def check(self, job):
            raise NotImplementedError

        def build(self, job):
            raise NotImplementedError

        def missing(self, target=None):
            return {}["no such key"]

    monkeypatch.setattr(backend_module, "discover", lambda: {"buggy": Buggy()})
    monkeypatch.setenv("EDGEQ_CACHE", str(tmp_path / "cache"))
    code, _, err = cli("targets")
    assert code == 1 and err.startswith("edgeq: internal error: KeyError: 'no such key' (a bug in edgeq")
    saved = next((tmp_path / "cache" / "errors").glob("edgeq-internal-error-*.txt"))
    assert str(saved) in err and "Traceback" not in err and ", in missing" in saved.read_text()


@pytest.fixture
def mounts(tmp_path):
    from cli_testlib import mount_namespaces_work

    if not mount_namespaces_work(tmp_path):
        pytest.skip("no private mount namespace here (unshare -m and mount need root)")
    return tmp_path


def test_read_only_and_full_file_systems_are_one_line(mounts, demo_pt, small_data):
    """--out on a read-only file system, --out on a full disk, a read-only HOME for the default cache."""
    from cli_testlib import edgeq_process, one_line_error

    ro, full = mounts / "ro", mounts / "full"
    ro.mkdir()
    full.mkdir()
    job = ["export", "--target", "ort-int8", "--model", demo_pt, "--data", small_data, "--calib-images", 4,
           "--val-images", 4, "--no-progress"]
    result = edgeq_process(*job, "--out", ro / "out", mount=f"mount -t tmpfs -o ro tmpfs {ro}")
    one_line_error(result, f"the operating system refused '{ro / '.out.edgeq-lock'}': Read-only file system")
    result = edgeq_process(*job, "--out", full / "out", mount=f"mount -t tmpfs -o size=256k tmpfs {full}")
    one_line_error(result, "No space left on device", "free space on that disk")
    home = {"HOME": str(ro), "EDGEQ_CACHE": "", "YOLO_CONFIG_DIR": "", "XDG_CACHE_HOME": ""}
    result = edgeq_process("eval", demo_pt, "--val-images", 4, "--no-progress", env=home,
                           mount=f"mount -t tmpfs -o ro tmpfs {ro}")
    one_line_error(result, f"'{ro / '.cache'}", "Read-only file system")


def test_a_real_process_prints_no_traceback_for_bad_inputs(tmp_path, tiny_onnx, small_data):
    import sys

    (tmp_path / "bomb.yaml").write_text("a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 10)}]\n" for i in range(8)) + "names: *i\n")
    for args in (["eval", tiny_onnx / "garbage.onnx", "--data", small_data], ["eval", tiny_onnx / "plain.onnx",
                 "--data", tmp_path / "bomb.yaml"], ["eval", tiny_onnx / "plain.onnx", "--val-images", "-1"]):
        result = subprocess.run([sys.executable, "-m", "edgeq.cli", *map(str, args), "--no-progress"],
                                capture_output=True, text=True, timeout=300, check=False)
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
        assert result.stderr.strip().splitlines()[-1].startswith("edgeq: error:")
