"""Output folders: one run at a time (the lock), the occupied check repeated at the final move, and --out kept
clear of every input (issue 20, cases 3, 4, 5 and 10)."""

import shutil
import subprocess
import sys
import time

import pytest
from cli_testlib import one_line_error
from ort_testlib import toy_plugins

import edgeq.backend as backend_module
from edgeq.errors import EdgeqError
from edgeq.staging import exclusive, lock_path, protect_inputs, staged_output

HOLD_LOCK = """
import sys, time
from pathlib import Path
from edgeq.staging import staged_output
out = Path(sys.argv[1])
with staged_output(out, print) as staging:
    (staging / "half.txt").write_text("mine")
    print("holding", flush=True)
    time.sleep(60)
"""


@pytest.fixture
def holder(tmp_path):
    """Another process in the middle of a run into tmp_path/out (it holds the lock and has a staging folder)."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(tmp_path / "out")], stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout.readline().strip() == "holding"
    yield proc
    proc.kill()
    proc.wait()


@pytest.fixture
def toy_targets(monkeypatch):
    monkeypatch.setattr(backend_module, "discover", toy_plugins)


def _export(cli, out, *extra, model, data):
    return cli("export", "--target", "ort-int8", "--out", out, "--no-progress", "--model", model, "--imgsz", 320,
               "--data", data, "--calib-images", 4, "--val-images", 4, "--set", "evaluation.latency_runs=0", *extra)


def _one_line(code, err, *fragments):
    one_line_error(subprocess.CompletedProcess([], code, "", err), *fragments)


def test_a_second_run_into_the_same_output_is_refused_at_once(cli, tmp_path, holder, toy_targets, demo_pt,
                                                              small_data):
    """Case 3: before, both runs passed the 'is it empty' check and the later one replaced the earlier's result."""
    started = time.perf_counter()
    code, _, err = _export(cli, tmp_path / "out", model=demo_pt, data=small_data)
    _one_line(code, err, f"another edgeq run (pid {holder.pid}) is writing to", "choose another --out")
    assert time.perf_counter() - started < 20  # refused before the model was even exported
    staging = tmp_path / f".out.edgeq-partial-{holder.pid}"
    assert (staging / "artifacts" / "half.txt").read_text() == "mine"  # the live run's work is untouched
    assert not (tmp_path / "out").exists()


def test_the_lock_is_released_and_removed_when_the_run_ends(tmp_path):
    out = tmp_path / "out"
    with staged_output(out, print) as staging:
        assert lock_path(out).exists()
        (staging / "report.json").write_text("{}")
    assert not lock_path(out).exists() and (out / "report.json").exists()
    with exclusive(out):  # free again
        pass


def test_a_folder_filled_during_the_run_is_not_replaced(tmp_path):
    """The occupied check is repeated at the final move: a folder that got files meanwhile (not from edgeq, which
    the lock keeps out) is left as it is, and the run's results are kept beside it."""
    out = tmp_path / "out"
    with pytest.raises(EdgeqError, match="was filled by something else while this run worked") as refused:
        with staged_output(out, print) as staging:
            (staging / "report.json").write_text("{}")
            out.mkdir()
            (out / "theirs.txt").write_text("keep")
    assert (out / "theirs.txt").read_text() == "keep" and not (out / "report.json").exists()
    kept = next(tmp_path.glob("out.unplaced-*"))
    assert (kept / "report.json").exists() and str(kept) in str(refused.value)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no staging, no lock left


def test_out_holding_the_model_and_the_data_is_refused_even_with_force(cli, tmp_path, toy_targets, demo_pt):
    """Case 4: --force used to delete the inputs with the old contents."""
    from edgeq.synthetic import generate_dataset

    work = tmp_path / "project"
    data = generate_dataset(work / "data", train=4, val=4, imgsz=320, seed=0)
    model = shutil.copy(demo_pt, work / "best.pt")
    code, _, err = _export(cli, work, "--force", model=model, data=data)
    _one_line(code, err, f"--out '{work}' holds the model '{model}'", "--force would delete it")
    assert (work / "best.pt").is_file() and data.is_file()
    assert len(list((work / "data" / "images" / "val").iterdir())) == 4


def test_out_inside_the_val_folder_is_refused(cli, tmp_path, toy_targets, demo_pt):
    """Case 5: report.png and throughput.png there were scored as background images by the next run."""
    from edgeq.synthetic import generate_dataset

    data = generate_dataset(tmp_path / "data", train=4, val=4, imgsz=320, seed=0)
    val = tmp_path / "data" / "images" / "val"
    code, _, err = _export(cli, val / "export", model=demo_pt, data=data)
    _one_line(code, err, "lies inside the 'val' split", "whose files are read as images")
    assert sorted(p.suffix for p in val.iterdir()) == [".jpg"] * 4  # no lock file, no staging left there


def test_out_holding_the_recipe_is_refused(tmp_path):
    recipe = tmp_path / "mine" / "recipe.yaml"
    recipe.parent.mkdir()
    recipe.write_text("target: openvino\n")
    with pytest.raises(EdgeqError, match="holds the recipe"):
        with staged_output(tmp_path / "mine", print, force=True) as staging:
            protect_inputs(staging, held=[("recipe", recipe)])
    assert recipe.read_text() == "target: openvino\n"


def test_out_inside_the_dataset_root_but_outside_its_splits_is_fine(tmp_path):
    """A project folder holding data.yaml (`path: .`) with edgeq-out/ inside it: the default --out works there."""
    from edgeq.data import load_dataset
    from edgeq.intake import protect_dataset
    from edgeq.synthetic import generate_dataset

    dataset = load_dataset(generate_dataset(tmp_path / "project", train=2, val=2, imgsz=320, seed=0))
    with staged_output(tmp_path / "project" / "edgeq-out" / "openvino", print) as staging:
        protect_dataset(staging, dataset)
        (staging / "report.json").write_text("{}")
    assert (tmp_path / "project" / "edgeq-out" / "openvino" / "report.json").exists()
