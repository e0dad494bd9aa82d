"""`--jobs N`: the targets of a run in spawned worker processes give the same reports as one after another, with
their log lines prefixed by the target; each worker sizes its thread pools to its share of the CPUs."""

import json

import pytest
from plugin_testlib import TOY_PACKAGE, make_site, run_edgeq

from edgeq.env import cpus
from edgeq.matrix.workers import default_jobs


def _figures(out):
    matrix = json.loads((out / "report.json").read_text())
    return {(o["target"], a["name"]): (a["map50_95"], a["map50"], a["drop_map50_95"])
            for o in matrix["outcomes"] for a in o["artifacts"]}


def test_targets_in_two_workers_report_what_one_after_another_reports(tmp_path, demo_pt, small_data):
    # a third-party plugin next to a built-in family: a spawned worker finds both through their entry points
    site = make_site(tmp_path, ("toy-edgeq-backend", {"toy": "ToyBackend"}, {"__init__.py": TOY_PACKAGE}))
    runs = {}
    for jobs in (1, 2):
        out = tmp_path / f"out-{jobs}"
        runs[jobs] = run_edgeq(site, "export", "--target", "onnxruntime,toy-fp16", "--jobs", jobs, "--model", demo_pt,
                               "--data", small_data, "--calib-images", 8, "--val-images", 16, "--no-progress",
                               "--set", "evaluation.latency_runs=0", "--out", out,
                               env={"EDGEQ_CACHE": str(tmp_path / "cache"), "EDGEQ_JOBS": ""})
        assert runs[jobs].returncode == 0, runs[jobs].stderr
    serial, parallel = _figures(tmp_path / "out-1"), _figures(tmp_path / "out-2")
    assert serial == parallel and ("toy-fp16", "toy-fp16") in parallel and len(parallel) >= 3
    err = runs[2].stderr
    assert "2 targets in 2 worker processes (--jobs 2)" in err
    assert "edgeq: [onnxruntime] " in err and "edgeq: [toy-fp16] " in err  # whose line is whose
    assert "worker processes" not in runs[1].stderr and "edgeq: [onnxruntime] " not in runs[1].stderr
    for target in ("onnxruntime", "toy-fp16"):  # every target's own report and folder, as in a serial run
        report = json.loads((tmp_path / "out-2" / target / "report.json").read_text())
        assert report["recipe"]["target"] == target
    matrix = json.loads((tmp_path / "out-2" / "report.json").read_text())
    assert [o["target"] for o in matrix["outcomes"]] == ["onnxruntime", "toy-fp16"]  # in the order asked


def test_a_failing_target_in_a_worker_is_listed_and_the_others_written(tmp_path, demo_pt, small_data):
    site = make_site(tmp_path, ("toy-edgeq-backend", {"toy": "ToyBackend"}, {"__init__.py": TOY_PACKAGE.replace(
        "        import onnx\n", "        raise EdgeqError('the toy converter crashed', 'file a bug')\n", 1).replace(
        "from edgeq.plugin import Artifact,", "from edgeq.plugin import EdgeqError, Artifact,", 1)}))
    out = tmp_path / "out"
    run = run_edgeq(site, "export", "--target", "onnxruntime,toy-fp16", "--jobs", 2, "--model", demo_pt,
                    "--data", small_data, "--calib-images", 8, "--val-images", 8, "--no-progress",
                    "--set", "evaluation.latency_runs=0", "--out", out, env={"EDGEQ_JOBS": ""})
    assert run.returncode == 4 and "Traceback" not in run.stderr, run.stderr
    outcomes = {o["target"]: o for o in json.loads((out / "report.json").read_text())["outcomes"]}
    assert outcomes["toy-fp16"]["status"] == "failed" and "the toy converter crashed" in outcomes["toy-fp16"]["reason"]
    assert outcomes["onnxruntime"]["status"] == "built" and not (out / "toy-fp16").exists()


def test_default_jobs_follow_the_setting_the_cpus_and_the_targets(monkeypatch):
    monkeypatch.setenv("EDGEQ_JOBS", "3")
    assert default_jobs(5) == 3 and default_jobs(2) == 2
    monkeypatch.delenv("EDGEQ_JOBS")
    monkeypatch.setenv("EDGEQ_CPUS", "2")
    assert cpus() == 2 and 1 <= default_jobs(8) <= 2 and default_jobs(1) == 1
    monkeypatch.setenv("EDGEQ_CPUS", "not-a-number")  # ignored: the affinity mask decides
    assert cpus() >= 1


def test_jobs_below_one_is_refused_by_name(tmp_path, capsys):
    from edgeq.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["export", "--target", "all", "--jobs", "0", "--out", str(tmp_path / "o")])
    assert exit_.value.code == 2 and "argument --jobs/-j: 0 is below 1" in capsys.readouterr().err.splitlines()[-1]
