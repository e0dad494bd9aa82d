"""The plugin contract as a third party meets it: backends installed from temporary entry points (one of them with
a vendor toolchain in an interpreter of its own, reached through the worker protocol), exported through the real
CLI in a fresh process, with nothing in edgeq changed for them."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from edgeq.backend import Artifact, BuildResult, PluginError, Precision, Role, TargetProfile, make_job
from edgeq.fallback import FallbackPolicy
from edgeq.rules import Finding, Severity

TOY_PACKAGE = '''
"""A third-party target: ONNX Runtime with FP16 weights, to show the contract end to end."""
from pathlib import Path

from edgeq.plugin import Artifact, Backend, BackendOptions, BuildResult, Finding, HeadLayout, Severity, TargetProfile


class ToyOptions(BackendOptions):
    keep_io_float: bool = True


class ToyBackend(Backend):
    family, extra, requires = "toy", "toy", ("onnxruntime",)
    tools = ("onnxruntime",)
    profiles = {"toy-fp16": TargetProfile(description="FP16 weights in ONNX Runtime (a plugin test)",
                                          accelerator="CPU", figures="emulated", latency_meaningful=False,
                                          fallback_default=False, fallback_to="FP32")}

    def options_model(self, target):
        return ToyOptions

    def check(self, job):
        return [Finding("toy.note", Severity.WARNING, "model", "toy target", "none needed")]

    def build(self, job):
        import onnx
        from onnxruntime.transformers.float16 import convert_float_to_float16

        from edgeq.plugin import OnnxRuntimeRunner

        out = job.staging / job.target / "model-fp16.onnx"
        out.parent.mkdir(parents=True)
        model = convert_float_to_float16(onnx.load(str(job.full_onnx)), keep_io_types=job.options.keep_io_float)
        onnx.save(model, str(out))
        artifact = Artifact(name="toy-fp16", target=job.target, variant="fp16", path=out, precision="fp16",
                            layout=HeadLayout.PIXEL, status=job.profile.figures, note="toy plugin",
                            open_runner=lambda: OnnxRuntimeRunner(out))
        return BuildResult([artifact], [Finding("toy.built", Severity.WARNING, "model-fp16.onnx", "built", "-")])
'''


TOOLCHAIN_PACKAGE = '''
"""A third-party target whose vendor "compiler" runs in an interpreter of its own (standard library only there),
reached through edgeq's worker protocol."""
from pathlib import Path

from edgeq.plugin import (Artifact, Backend, BackendOptions, BuildResult, HeadLayout, OnnxRuntimeRunner, Precision,
                          TargetProfile, ToolchainSpec, WorkerCall, run_worker)

HERE = Path(__file__).parent


class VendorOptions(BackendOptions):
    crash: bool = False  # the vendor compiler crashes
    sleep_s: float = 0.0  # ... or hangs this long
    timeout_s: float = 600.0


class VendorBackend(Backend):
    family, extra, requires = "vendor", "vendor", ()
    toolchain = ToolchainSpec(name="toybox", description="a toy vendor compiler (a plugin test)",
                              requirements=HERE / "toolchain-requirements.txt")
    profiles = {"toy-npu": TargetProfile(description="a vendor toolchain in its own interpreter (a plugin test)",
                                         accelerator="toy NPU", figures="emulated", latency_meaningful=False,
                                         fallback_default=True)}

    def options_model(self, target):
        return VendorOptions

    def check(self, job):
        return []

    def build(self, job):
        out = job.staging / job.target / "model.onnx"
        result = run_worker(self.toolchain.python_path(), WorkerCall(
            script=HERE / "vendor_worker.py", workdir=job.staging / ".vendor-work", log=job.log_dir / "toy-npu.log",
            stage="vendor-compile", timeout_s=job.options.timeout_s,
            job={"onnx": str(job.full_onnx), "out": str(out), "crash": job.options.crash,
                 "sleep_s": job.options.sleep_s}))
        return BuildResult([Artifact(name="toy-npu", target=job.target, variant="fp32", path=out,
                                     precision=Precision.parse("fp32"), layout=HeadLayout.PIXEL,
                                     status="emulated", note="compiled by the vendor toolchain",
                                     open_runner=lambda: OnnxRuntimeRunner(out), extra=result)])
'''

VENDOR_WORKER = '''
"""The vendor's side: runs in the toolchain's interpreter, where edgeq is not installed."""
import shutil
import sys
import time
from pathlib import Path

from edgeq_worker import log


def run(job):
    log(f"toy compiler running in {sys.prefix}")
    if job["crash"]:
        raise RuntimeError("the vendor compiler segfaulted")
    time.sleep(job["sleep_s"])
    Path(job["out"]).parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(job["onnx"], job["out"])
    return {"python": sys.executable, "prefix": sys.prefix}
'''


def _site(tmp_path, *packages: tuple[str, str, dict[str, str]]) -> Path:
    """A temporary sys.path entry holding each (distribution, entry points, package files) with its dist-info."""
    site = tmp_path / "site"
    for dist_name, entry_points, files in packages:
        module = dist_name.replace("-", "_")
        (site / module).mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            (site / module / name).write_text(textwrap.dedent(text))
        dist = site / f"{module}-0.1.dist-info"
        dist.mkdir(parents=True)
        (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist_name}\nVersion: 0.1\n")
        (dist / "entry_points.txt").write_text("[edgeq.backends]\n" + "".join(
            f"{name} = {module}:{cls}\n" for name, cls in entry_points.items()))
    return site


@pytest.fixture
def toy_plugin(tmp_path):
    """A package and its dist-info (entry point in the `edgeq.backends` group) on a temporary sys.path entry."""
    return _site(tmp_path, ("toy-edgeq-backend", {"toy": "ToyBackend"}, {"__init__.py": TOY_PACKAGE}))


@pytest.fixture
def vendor_plugin(tmp_path):
    """A family declaring a toolchain environment; its worker script is standard library only."""
    return _site(tmp_path, ("vendor-edgeq-backend", {"vendor": "VendorBackend"},
                            {"__init__.py": TOOLCHAIN_PACKAGE, "vendor_worker.py": VENDOR_WORKER,
                             "toolchain-requirements.txt": "# nothing beyond the standard library\n"}))


def _edgeq(site, *args, env=None):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]), **(env or {}))
    return subprocess.run([sys.executable, "-m", "edgeq.cli", *map(str, args)], capture_output=True, text=True,
                          env=env, check=False, timeout=600)


def test_third_party_backend_exports_through_its_entry_point(toy_plugin, tmp_path, demo_pt, small_data):
    listed = _edgeq(toy_plugin, "targets")
    assert listed.returncode == 0 and "| toy-fp16 | toy | CPU | emulated | no |" in listed.stdout
    out = tmp_path / "out"
    run = _edgeq(toy_plugin, "export", "--target", "toy-fp16", "--model", demo_pt, "--data", small_data,
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
    listed = _edgeq(vendor_plugin, "targets", env=env)
    assert "| toy-npu | vendor |" in listed.stdout and "no: edgeq toolchains install toybox" in listed.stdout
    refused = _edgeq(vendor_plugin, "export", *job, "--out", tmp_path / "refused", env=env)
    assert refused.returncode == 2 and "edgeq toolchains install toybox" in refused.stderr
    assert "Traceback" not in refused.stderr and not (tmp_path / "refused").exists()

    installed = _edgeq(vendor_plugin, "toolchains", "install", "toybox", env=env)
    assert installed.returncode == 0, installed.stderr
    assert "| toybox | vendor |" in _edgeq(vendor_plugin, "toolchains", env=env).stdout
    run = _edgeq(vendor_plugin, "export", *job, "--out", tmp_path / "out", env=env)
    assert run.returncode == 0, run.stderr
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    toy = next(a for a in report["artifacts"] if a["name"] == "toy-npu")
    assert toy["extra"]["prefix"] == str(cache / "toolchains" / "toybox")  # not edgeq's own interpreter
    assert abs(toy["drop_map50_95"]) < 0.01 and (tmp_path / "out" / "logs" / "toy-npu.log").is_file()

    crashed = _edgeq(vendor_plugin, "export", *job, "--set", "options.crash=true", "--out", tmp_path / "crash",
                     env=env)
    assert crashed.returncode == 2 and len(crashed.stderr.strip().splitlines()[-1]) > 0
    assert "stage 'vendor-compile' failed: RuntimeError: the vendor compiler segfaulted" in crashed.stderr
    log = tmp_path / "crash" / "logs" / "toy-npu.log"
    assert f"(log: {log})" in crashed.stderr and "Traceback" in log.read_text()
    assert "Traceback" not in crashed.stderr

    hung = _edgeq(vendor_plugin, "export", *job, "--set", "options.sleep_s=60", "--set", "options.timeout_s=1",
                  "--out", tmp_path / "hung", env=env)
    assert hung.returncode == 2 and "timed out after 1 s" in hung.stderr


def test_a_users_own_interpreter_is_taken_from_the_environment(vendor_plugin, tmp_path, demo_pt, small_data):
    own = tmp_path / "own-env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(own)], check=True)
    env = {"EDGEQ_CACHE": str(tmp_path / "cache"), "EDGEQ_TOYBOX_PYTHON": str(own / "bin" / "python")}
    run = _edgeq(vendor_plugin, "export", "--target", "toy-npu", "--model", demo_pt, "--data", small_data,
                 "--calib-images", 2, "--val-images", 4, "--no-progress", "--out", tmp_path / "out", env=env)
    assert run.returncode == 0, run.stderr
    toy = next(a for a in json.loads((tmp_path / "out" / "report.json").read_text())["artifacts"]
               if a["name"] == "toy-npu")
    assert toy["extra"]["prefix"] == str(own)
    missing = _edgeq(vendor_plugin, "targets", env={**env, "EDGEQ_TOYBOX_PYTHON": str(tmp_path / "nope")})
    assert "EDGEQ_TOYBOX_PYTHON=" in missing.stdout and "not an executable interpreter" in missing.stdout


def test_a_target_claimed_by_two_distributions_names_both(tmp_path):
    site = _site(tmp_path, ("toy-edgeq-backend", {"toy": "ToyBackend"}, {"__init__.py": TOY_PACKAGE}),
                 ("toy-edgeq-fork", {"toyfork": "ToyBackend"}, {"__init__.py": TOY_PACKAGE}))
    run = _edgeq(site, "export", "--target", "toy-fp16", "--out", tmp_path / "out")
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert "toy-edgeq-backend" in run.stderr and "toy-edgeq-fork" in run.stderr
    assert "claimed twice" in _edgeq(site, "targets").stdout


def test_a_target_needing_a_dotted_module_of_an_absent_package_is_listed_not_ready(tmp_path):
    """`find_spec("pkg.sub")` raises when `pkg` is absent: one target's optional package (as ethosu.vela for the
    ethos-u target) must make that target "not ready", not take `edgeq targets` or the export down."""
    package = TOY_PACKAGE.replace('requires = "toy", "toy", ("onnxruntime",)',
                                  'requires = "toy", "toy", ("onnxruntime", "edgeq_absent_vendor.compiler")')
    site = _site(tmp_path, ("toy-edgeq-backend", {"toy": "ToyBackend"}, {"__init__.py": package}))
    listed = _edgeq(site, "targets")
    assert listed.returncode == 0, listed.stdout + listed.stderr
    assert "no: pip install 'edgeq[toy]' (missing: edgeq_absent_vendor.compiler)" in listed.stdout
    run = _edgeq(site, "export", "--target", "toy-fp16", "--out", tmp_path / "out")
    assert run.returncode != 0 and "Traceback" not in run.stderr and "edgeq[toy]" in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1, run.stderr


def test_unknown_option_of_a_plugin_is_named(toy_plugin, tmp_path):
    run = _edgeq(toy_plugin, "export", "--target", "toy-fp16", "--set", "options.keep_io_flaot=false",
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
