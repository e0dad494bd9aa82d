"""Third-party backends as a user installs them: a package and its dist-info with an `edgeq.backends` entry point
on a temporary sys.path entry, and `edgeq` run in a fresh process that finds them (tests of the plugin contract
and of --jobs workers, which import plugins afresh)."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

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


def make_site(tmp_path, *packages: tuple[str, str, dict[str, str]]) -> Path:
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


def run_edgeq(site, *args, env=None):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]), **(env or {}))
    return subprocess.run([sys.executable, "-m", "edgeq.cli", *map(str, args)], capture_output=True, text=True,
                          env=env, check=False, timeout=600)
