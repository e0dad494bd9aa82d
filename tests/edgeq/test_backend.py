"""The plugin contract as a third party meets it: backends installed from temporary entry points (one of them with
a vendor toolchain in an interpreter of its own, reached through the worker protocol), exported through the real
CLI in a fresh process, with nothing in edgeq changed for them."""

import json
import subprocess
import sys

import pytest
from plugin_testlib import TOOLCHAIN_PACKAGE, TOY_PACKAGE, VENDOR_WORKER, make_site, run_edgeq

from edgeq.backend import Artifact, BuildResult, PluginError, Precision, Role, TargetProfile, make_job
from edgeq.fallback import FallbackPolicy
from edgeq.rules import Finding, Severity


@pytest.fixture
def toy_plugin(tmp_path):
    """A package and its dist-info (entry point in the `edgeq.backends` group) on a temporary sys.path entry."""
    return make_site(tmp_path, ("toy-edgeq-backend", {"toy": "ToyBackend"}, {"__init__.py": TOY_PACKAGE}))


@pytest.fixture
def vendor_plugin(tmp_path):
    """A family declaring a toolchain environment; its worker script is standard library only."""
    return make_site(tmp_path, ("vendor-edgeq-backend", {"vendor": "VendorBackend"},
                                {"__init__.py": TOOLCHAIN_PACKAGE, "vendor_worker.py": VENDOR_WORKER,
                                 "toolchain-requirements.txt": "# nothing beyond the standard library\n"}))


def test_third_party_backend_exports_through_its_entry_point(toy_plugin, tmp_path, demo_pt, small_data):
    listed = run_edgeq(toy_plugin, "targets")
    assert listed.returncode == 0 and "| toy-fp16 | toy | CPU | emulated | no |" in listed.stdout
    out = tmp_path / "out"
    run = run_edgeq(toy_plugin, "export", "--target", "toy-fp16", "--model", demo_pt, "--data", small_data,
                 "--calib-images", 4, "--val-images", 16, "--out", out, "--no-progress")
    assert run.returncode == 0, run.stderr
    report = json.loads((out / "report.json").read_text())
    toy = next(a for a in report["artifacts"] if a["name"] == "toy-fp16")
    assert toy["status"] == "emulated" and abs(toy["drop_map50_95"]) < 1.0 and toy["size_mb"] > 0
    assert {f["rule"] for f in report["findings"]} == {"toy.note", "toy.built"}
    assert "onnxruntime" in report["tools"]


def test_vendor_toolchain_runs_in_its_own_interpreter_through_the_worker_protocol(vendor_plugin, tmp_path, demo_pt,
                                                                                    small_data):
    cache = tmp_path / "cache"
    env = {"EDGEQ_CACHE": str(cache)}
    job = ["--target", "toy-npu", "--model", demo_pt, "--data", small_data, "--calib-images", 2, "--val-images", 8,
           "--no-progress"]
    listed = run_edgeq(vendor_plugin, "targets", env=env)
    assert "| toy-npu | vendor |" in listed.stdout and "no: edgeq toolchains install toybox" in listed.stdout
    refused = run_edgeq(vendor_plugin, "export", *job, "--out", tmp_path / "refused", env=env)
    assert refused.returncode == 2 and "edgeq toolchains install toybox" in refused.stderr
    assert "Traceback" not in refused.stderr and not (tmp_path / "refused").exists()

    installed = run_edgeq(vendor_plugin, "toolchains", "install", "toybox", env=env)
    assert installed.returncode == 0, installed.stderr
    assert "| toybox | vendor |" in run_edgeq(vendor_plugin, "toolchains", env=env).stdout
    run = run_edgeq(vendor_plugin, "export", *job, "--out", tmp_path / "out", env=env)
    assert run.returncode == 0, run.stderr
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    toy = next(a for a in report["artifacts"] if a["name"] == "toy-npu")
    assert toy["extra"]["prefix"] == str(cache / "toolchains" / "toybox")  # not edgeq's own interpreter
    assert abs(toy["drop_map50_95"]) < 0.01 and (tmp_path / "out" / "logs" / "toy-npu.log").is_file()

    crashed = run_edgeq(vendor_plugin, "export", *job, "--set", "options.crash=true", "--out", tmp_path / "crash",
                     env=env)
    assert crashed.returncode == 2 and len(crashed.stderr.strip().splitlines()[-1]) > 0
    assert "stage 'vendor-compile' failed: RuntimeError: the vendor compiler segfaulted" in crashed.stderr
    log = tmp_path / "crash" / "logs" / "toy-npu.log"
    assert f"(log: {log})" in crashed.stderr and "Traceback" in log.read_text()
    assert "Traceback" not in crashed.stderr

    hung = run_edgeq(vendor_plugin, "export", *job, "--set", "options.sleep_s=60", "--set", "options.timeout_s=1",
                  "--out", tmp_path / "hung", env=env)
    assert hung.returncode == 2 and "timed out after 1 s" in hung.stderr


def test_a_users_own_interpreter_is_taken_from_the_environment(vendor_plugin, tmp_path, demo_pt, small_data):
    own = tmp_path / "own-env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(own)], check=True)
    env = {"EDGEQ_CACHE": str(tmp_path / "cache"), "EDGEQ_TOYBOX_PYTHON": str(own / "bin" / "python")}
    run = run_edgeq(vendor_plugin, "export", "--target", "toy-npu", "--model", demo_pt, "--data", small_data,
                 "--calib-images", 2, "--val-images", 4, "--no-progress", "--out", tmp_path / "out", env=env)
    assert run.returncode == 0, run.stderr
    toy = next(a for a in json.loads((tmp_path / "out" / "report.json").read_text())["artifacts"]
               if a["name"] == "toy-npu")
    assert toy["extra"]["prefix"] == str(own)
    missing = run_edgeq(vendor_plugin, "targets", env={**env, "EDGEQ_TOYBOX_PYTHON": str(tmp_path / "nope")})
    assert "EDGEQ_TOYBOX_PYTHON=" in missing.stdout and "not an executable interpreter" in missing.stdout


def test_a_target_claimed_by_two_distributions_names_both(tmp_path):
    site = make_site(tmp_path, ("toy-edgeq-backend", {"toy": "ToyBackend"}, {"__init__.py": TOY_PACKAGE}),
                 ("toy-edgeq-fork", {"toyfork": "ToyBackend"}, {"__init__.py": TOY_PACKAGE}))
    run = run_edgeq(site, "export", "--target", "toy-fp16", "--out", tmp_path / "out")
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert "toy-edgeq-backend" in run.stderr and "toy-edgeq-fork" in run.stderr
    assert "claimed twice" in run_edgeq(site, "targets").stdout


def test_a_target_needing_a_dotted_module_of_an_absent_package_is_listed_not_ready(tmp_path):
    """`find_spec("pkg.sub")` raises when `pkg` is absent: one target's optional package (as ethosu.vela for the
    ethos-u target) must make that target "not ready", not take `edgeq targets` or the export down."""
    package = TOY_PACKAGE.replace('requires = "toy", "toy", ("onnxruntime",)',
                                  'requires = "toy", "toy", ("onnxruntime", "edgeq_absent_vendor.compiler")')
    site = make_site(tmp_path, ("toy-edgeq-backend", {"toy": "ToyBackend"}, {"__init__.py": package}))
    listed = run_edgeq(site, "targets")
    assert listed.returncode == 0, listed.stdout + listed.stderr
    assert "no: pip install 'edgeq[toy]' (missing: edgeq_absent_vendor.compiler)" in listed.stdout
    run = run_edgeq(site, "export", "--target", "toy-fp16", "--out", tmp_path / "out")
    assert run.returncode != 0 and "Traceback" not in run.stderr and "edgeq[toy]" in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1, run.stderr


def test_unknown_option_of_a_plugin_is_named(toy_plugin, tmp_path):
    run = run_edgeq(toy_plugin, "export", "--target", "toy-fp16", "--set", "options.keep_io_flaot=false",
                 "--out", tmp_path / "o")
    assert run.returncode == 2 and "options.keep_io_flaot" in run.stderr and "Traceback" not in run.stderr


def _profile(fallback_default: bool) -> TargetProfile:
    return TargetProfile(description="d", accelerator="NPU", figures="emulated", latency_meaningful=False,
                         fallback_default=fallback_default, fallback_to="the host CPU")


FALLBACK = Finding("npu.op", Severity.FALLBACK, "layer7", "op runs on the CPU", "swap the op")
ERROR = Finding("npu.shape", Severity.ERROR, "layer9", "dynamic shape", "export static shapes")
WARNING = Finding("npu.slow", Severity.WARNING, "layer3", "slow", "fine")


@pytest.mark.parametrize("policy, findings, fragments", [
    (FallbackPolicy("npu", False, "the host CPU"), [WARNING, FALLBACK],
     ["npu: layer7: op runs on the CPU", "swap the op or pass --allow-fallback to let those layers run on the host CPU"]),
    (FallbackPolicy("npu", False, "the GPU", flag="--no-gpu-fallback"), [FALLBACK, FALLBACK],
     ["(and 1 more, listed above)", "drop --no-gpu-fallback to let those layers run on the GPU"]),
    (FallbackPolicy("npu", True, "the host CPU"), [FALLBACK, ERROR], ["layer9: dynamic shape", "export static shapes"]),
])
def test_one_policy_decides_and_words_every_refusal(policy, findings, fragments):
    from edgeq.errors import EdgeqError

    with pytest.raises(EdgeqError) as err:
        policy.enforce(findings)
    assert all(f in err.value.one_line() for f in fragments) and "\n" not in err.value.one_line()


def test_allowed_fallback_and_warnings_pass():
    FallbackPolicy("npu", True, "the host CPU").enforce([WARNING, FALLBACK])
    FallbackPolicy("npu", False, "the host CPU").enforce([WARNING])


def test_job_is_read_only_and_takes_the_profile_default(tmp_path):
    from dataclasses import FrozenInstanceError

    from edgeq.backend import Backend

    class Plugin(Backend):
        family, extra, requires = "p", "p", ()
        profiles = {"strict": _profile(False), "lenient": _profile(True)}

        def options_model(self, target):
            from edgeq.backend import BackendOptions

            return BackendOptions

        def check(self, job):
            return []

        def build(self, job):
            raise NotImplementedError

    fields = {"head": None, "body_onnx": tmp_path, "full_onnx": tmp_path, "calibration": (), "staging": tmp_path,
              "activations": {}}
    strict, lenient = (make_job(Plugin(), t, **fields) for t in ("strict", "lenient"))
    assert not strict.fallback.allowed and lenient.fallback.allowed
    assert make_job(Plugin(), "strict", allow_fallback=True, fallback_flag="--allow-cpu-fallback",
                    **fields).fallback.allowed
    with pytest.raises(FrozenInstanceError):
        strict.options = None


def test_artifact_size_is_the_sum_of_its_files(tmp_path):
    from edgeq.head import HeadLayout

    xml, weights = tmp_path / "model.xml", tmp_path / "model.bin"
    xml.write_bytes(b"x" * 1000)
    weights.write_bytes(b"x" * 2_000_000)
    common = {"name": "a", "target": "t", "variant": "v", "path": xml, "precision": "int8",
              "layout": HeadLayout.PIXEL, "status": "measured"}
    assert Artifact(**common, files=(xml, weights)).size_mb() == 2.001
    assert Artifact(**common).size_mb() == 0.001
    assert Artifact(**{**common, "path": tmp_path / "absent.engine"}).size_mb() is None


def test_precision_is_structured_and_printed_one_way():
    assert Precision.int8(head="fp32").label() == "int8+fp32-head"
    assert Precision.int8(head="fp32", keep=["a", "b"]).label() == "int8+fp32-head, 2 fp32 layers"
    assert Precision.int8(head="fp16", keep=["a"], kept_as="fp16").label() == "int8+fp16-head, 1 fp16 layer"
    assert Precision("int8", "int16").label() == "w8a16" and Precision.parse("w8a16") == Precision("int8", "int16")
    assert Precision.parse("int8+fp32-head") == Precision.int8(head="fp32") and not Precision.parse("fp32").quantized
    with pytest.raises(ValueError):
        Precision.parse("int8+fp32")


def test_a_build_names_exactly_one_deployable_artifact(tmp_path):
    from edgeq.head import HeadLayout

    common = {"target": "t", "variant": "v", "path": tmp_path / "m", "precision": "int8", "layout": HeadLayout.PIXEL,
              "status": "emulated"}
    one = BuildResult([Artifact(name="ref", role=Role.REFERENCE, **common), Artifact(name="dep", **common),
                       Artifact(name="other", role=Role.COMPARISON, **common)])
    assert one.shipped().name == "dep"
    assert BuildResult([*one.artifacts, Artifact(name="qat", role=Role.QAT, **common)]).shipped().name == "qat"
    for broken in ([], [Artifact(name="a", **common), Artifact(name="b", **common)]):
        with pytest.raises(PluginError) as err:
            BuildResult(broken).shipped()
        assert "exactly one deployable" in err.value.one_line()
