"""A per-class collapse behind a small overall drop, planted in an otherwise untouched FP32 graph: the report's
per-class table names the class, and recall at the deployment threshold shows what a deployment loses."""

import json
import shutil

import pytest
from ort_testlib import OrtInt8Backend
from planted_models import COLLAPSED_CLASS, plant_class_collapse

import edgeq.backend as backend_module
from edgeq.backend import Artifact, BuildResult, TargetProfile
from edgeq.head import HeadLayout
from edgeq.runners.onnxruntime import OnnxRuntimeRunner


class PlantedCollapseBackend(OrtInt8Backend):
    """Ships the FP32 graph with one class's logits lowered (planted_models.plant_class_collapse)."""

    profiles = {"planted-collapse": TargetProfile(description="FP32 with one class's scores squeezed",
                                                  accelerator="CPU", figures="emulated", latency_meaningful=False,
                                                  fallback_default=True)}

    def build(self, job):
        out = job.staging / job.target / "collapsed.onnx"
        out.parent.mkdir(parents=True, exist_ok=True)
        plant_class_collapse(job.full_onnx, out)
        return BuildResult([Artifact(name="collapsed", target=job.target, variant="fp32-planted", path=out,
                                     precision="fp32", layout=HeadLayout.PIXEL, status="emulated",
                                     note="one class's logits lowered", open_runner=lambda: OnnxRuntimeRunner(out))])


@pytest.fixture(scope="module")
def collapsed_report(tmp_path_factory, demo_pt, small_data):
    from edgeq.cli import main

    out = tmp_path_factory.mktemp("collapse") / "out"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(backend_module, "discover", lambda: {"planted-collapse": PlantedCollapseBackend()})
        code = main(["export", "--target", "planted-collapse", "--model", str(demo_pt), "--imgsz", "320",
                     "--data", str(small_data), "--calib-images", "4", "--val-images", "40", "--out", str(out),
                     "--no-progress", "--set", "evaluation.latency_runs=0"])
    assert code == 0
    yield json.loads((out / "report.json").read_text()), (out / "report.md").read_text()
    shutil.rmtree(out, ignore_errors=True)


def test_the_collapsed_class_is_the_worst_though_the_overall_drop_is_small(collapsed_report):
    report, md = collapsed_report
    entry = next(a for a in report["artifacts"] if a["name"] == "collapsed")
    fp32, planted = report["reference"]["diagnostics"], entry["diagnostics"]
    drops = [f - p for f, p in zip(fp32["class_ap"], planted["class_ap"])]
    assert max(range(len(drops)), key=drops.__getitem__) == COLLAPSED_CLASS
    assert entry["drop_map50_95"] < 1.0 and drops[COLLAPSED_CLASS] > 3 * entry["drop_map50_95"]
    assert all(abs(d) < 0.5 for k, d in enumerate(drops) if k != COLLAPSED_CLASS)
    name = report["model"]["names"][COLLAPSED_CLASS]
    assert f"Worst class of collapsed: **{name}**" in md
    row = next(line for line in md.splitlines() if line.startswith(f"| {name} |"))
    assert row.endswith("R 0% |")  # the class's recall at conf 0.25, in the artifact's column


def test_recall_at_the_deployment_threshold_falls_by_the_collapsed_class(collapsed_report):
    report, md = collapsed_report
    entries = {a["name"]: a["diagnostics"] for a in report["artifacts"]}
    fp32, planted = entries["onnx-fp32"], entries["collapsed"]  # the graph it was planted in, on the same images
    for at in ("at_deploy_conf", "at_fp32_best_f1"):
        recall = planted[at]["class_recall"]
        assert recall[COLLAPSED_CLASS] == 0.0 and fp32[at]["class_recall"][COLLAPSED_CLASS] > 90
        # the others as before, give or take one object: an anchor the class no longer wins goes to its runner-up
        assert all(abs(r - f) < 3 for k, (r, f) in enumerate(zip(recall, fp32[at]["class_recall"]))
                   if k != COLLAPSED_CLASS)
        assert planted[at]["recall"] < fp32[at]["recall"] - 10  # a sixth of the objects are that class's
    assert planted["at_deploy_conf"]["conf"] == 0.25
    row = next(line for line in md.splitlines() if line.startswith("| collapsed |") and "/" in line)
    assert f"| {planted['at_deploy_conf']['recall']:.1f} |" in row
