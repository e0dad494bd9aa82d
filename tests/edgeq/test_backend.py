"""The plugin contract as a third party meets it: a backend installed from a temporary entry point, exported
through the real CLI in a fresh process, with nothing in edgeq changed for it."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from edgeq.backend import Artifact, TargetProfile, make_job
from edgeq.fallback import FallbackPolicy
from edgeq.rules import Finding, Severity

TOY_PACKAGE = '''
"""A third-party target: ONNX Runtime with FP16 weights, to show the contract end to end."""
from pathlib import Path

from edgeq.backend import Artifact, Backend, BackendOptions, BuildResult, TargetProfile
from edgeq.head import HeadLayout
from edgeq.rules import Finding, Severity


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

        from edgeq.runners.onnxruntime import OnnxRuntimeRunner

        out = job.staging / job.target / "model-fp16.onnx"
        out.parent.mkdir(parents=True)
        model = convert_float_to_float16(onnx.load(str(job.full_onnx)), keep_io_types=job.options.keep_io_float)
        onnx.save(model, str(out))
        artifact = Artifact(name="toy-fp16", target=job.target, variant="fp16", path=out, precision="fp16",
                            layout=HeadLayout.PIXEL, status=job.profile.figures, note="toy plugin",
                            open_runner=lambda: OnnxRuntimeRunner(out))
        return BuildResult([artifact], [Finding("toy.built", Severity.WARNING, "model-fp16.onnx", "built", "-")])
'''


@pytest.fixture
def toy_plugin(tmp_path):
    """A package and its dist-info (entry point in the `edgeq.backends` group) on a temporary sys.path entry."""
    site = tmp_path / "site"
    (site / "toy_edgeq_backend").mkdir(parents=True)
    (site / "toy_edgeq_backend" / "__init__.py").write_text(textwrap.dedent(TOY_PACKAGE))
    dist = site / "toy_edgeq_backend-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-edgeq-backend\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[edgeq.backends]\ntoy = toy_edgeq_backend:ToyBackend\n")
    return site


def _edgeq(site, *args):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]))
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
