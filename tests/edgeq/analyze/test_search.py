"""The mixed-precision search behind --max-drop, end to end with a real quantizer (ONNX Runtime's), and its
refusals."""

import json

from analyze_testlib import export_args, scheme
from planted_models import OUTLIER_LAYER

from edgeq.analyze.search import StepResult, float_layer_costs, run_search, schedule


def _report(tmp_path):
    return json.loads((tmp_path / "out" / "report.json").read_text())


def test_search_keeps_the_ruinous_layer_in_float_and_comes_back_under_budget(cli, tmp_path, ort_targets,
                                                                             outlier_pt, small_data):
    code, out, err = cli(*export_args(tmp_path, "ort-mixed", outlier_pt, small_data, "--max-drop", "3%"))
    assert code == 0, err
    search = _report(tmp_path)["search"]
    start, *steps = search["steps"]
    assert start["drop_map50_95"] > 10.0  # the planted outlier ruins the default INT8 artifact
    assert search["requested"] == "3%" and search["budget"] == round(0.03 * start["drop_map50_95"], 3)
    assert search["ranked"][0] == OUTLIER_LAYER
    chosen = steps[-1]
    assert chosen["within_budget"] and chosen["drop_map50_95"] <= search["budget"] and OUTLIER_LAYER in chosen["kept"]
    assert search["chosen"] == chosen["artifact"] and (tmp_path / "out" / chosen["path"]).is_file()
    assert (tmp_path / "out" / "search.png").stat().st_size > 1000
    md = (tmp_path / "out" / "report.md").read_text()
    assert "## Mixed-precision search" in md and f"chosen: `{chosen['artifact']}`" in md
    assert "mixed-precision search:" in out


def test_budget_no_step_reaches_exits_3_with_the_steps_written(cli, tmp_path, ort_targets, outlier_pt, small_data):
    # a zero budget: keeping the outlier layer (and the forced one) leaves the ordinary INT8 loss of ~0.1 point
    code, _, err = cli(*export_args(tmp_path, "ort-mixed", outlier_pt, small_data, "--max-drop", "0", "--set",
                                    "search.max_layers=1", "--keep-float", "/model.0/conv/Conv"))
    search = _report(tmp_path)["search"]
    assert code == 3 and "no search step is within --max-drop 0.0" in err and search["chosen"] is None
    assert [s["kept"] for s in search["steps"]] == [["/model.0/conv/Conv"], ["/model.0/conv/Conv", OUTLIER_LAYER]]
    assert "layer limit reached" in search["stopped"]
    assert "## Mixed-precision search" in (tmp_path / "out" / "report.md").read_text()


def test_full_integer_target_reports_costs_and_the_training_remedy(cli, tmp_path, ort_targets, outlier_pt,
                                                                   small_data):
    code, _, err = cli(*export_args(tmp_path, "ort-fullint", outlier_pt, small_data, "--max-drop", "1.0"))
    assert code == 3 and "mixed precision cannot help here" in err and "quantization-aware training" in err
    search = _report(tmp_path)["search"]
    assert len(search["steps"]) == 1 and search["costs"][0]["layer"] == OUTLIER_LAYER
    assert search["costs"][0]["ops_off_accelerator"] > 1  # the graph is cut there: everything after it leaves


def test_unknown_keep_float_name_lists_close_matches(cli, tmp_path, ort_targets, demo_pt, small_data):
    code, _, err = cli(*export_args(tmp_path, "ort-mixed", demo_pt, small_data, "--keep-float",
                                    "/cv2.0/cv2.0.1/conv/Conv2"))
    line = err.strip().splitlines()[-1]
    assert code == 2 and "no layer named '/cv2.0/cv2.0.1/conv/Conv2'" in line and "'/cv2.0/cv2.0.1/conv/Conv'" in line
    assert not (tmp_path / "out").exists()


def test_keep_float_on_a_full_integer_target_is_refused(cli, tmp_path, ort_targets, demo_pt, small_data):
    code, _, err = cli(*export_args(tmp_path, "ort-fullint", demo_pt, small_data, "--keep-float",
                                    "/model.0/conv/Conv"))
    assert code == 2 and "cannot keep layers out of INT8 (the test chip runs integer ops only)" in err


def test_negative_max_drop_and_a_method_not_offered(cli, tmp_path, ort_targets, demo_pt, small_data):
    code, _, err = cli(*export_args(tmp_path, "ort-mixed", demo_pt, small_data, "--max-drop", "-0.5"))
    assert code == 2 and "--max-drop -0.5 is negative" in err
    code, _, err = cli(*export_args(tmp_path, "ort-mixed", demo_pt, small_data, "--set", "calibration.method=entropy"))
    line = err.strip().splitlines()[-1]
    assert code == 2 and "does not offer calibration method 'entropy' (the test quantizer has min-max and" in line
    assert "default, auto, minmax, percentile-99.999" in line
    code, _, err = cli(*export_args(tmp_path, "ort-mixed", demo_pt, small_data, "--set", "calibration.method=kl"))
    assert code == 2 and "calibration.method" in err


# --- the loop itself -------------------------------------------------------------------------------------------


def test_schedule_doubles_up_to_the_limit():
    assert schedule(1) == [1] and schedule(16) == [1, 2, 4, 8, 16] and schedule(6) == [1, 2, 4, 6]


def test_search_stops_when_the_latency_gain_is_gone():

    built = []

    def build(step, kept):
        built.append(list(kept))
        return StepResult(step, kept, f"a{step}", f"p{step}", map50_95=50.0, drop_map50_95=5.0, latency_ms=12.0)

    start = StepResult(0, [], "a0", "p0", map50_95=45.0, drop_map50_95=10.0, latency_ms=5.0)
    result = run_search(start, ["l1", "l2", "l3"], ["forced"], 1.0, 16, scheme(), build, lambda: 10.0, lambda m: None)
    assert built == [["forced", "l1"]] and result.chosen is None and "latency gain gone" in result.stopped


def test_a_step_timed_within_the_noise_of_fp32_does_not_end_the_search():
    """A step 5% over FP32's median is inside the timing noise (LATENCY_NOISE): the search goes on to the next."""

    def build(step, kept):
        drop = 0.5 if len(kept) == 2 else 5.0
        return StepResult(step, kept, f"a{step}", f"p{step}", map50_95=50.0, drop_map50_95=drop, latency_ms=10.5)

    start = StepResult(0, [], "a0", "p0", map50_95=45.0, drop_map50_95=10.0, latency_ms=5.0)
    result = run_search(start, ["l1", "l2", "l3"], [], 1.0, 16, scheme(), build, lambda: 10.0, lambda m: None)
    assert result.chosen == "a2" and result.stopped == "within budget with 2 layer(s) kept"


def test_a_whole_model_higher_precision_is_one_step_with_no_ranking():
    from edgeq.analyze.scheme import WHOLE_MODEL, HigherPrecision

    whole = scheme(higher_precision=HigherPrecision(precision="int16", how="16x8 for the whole file", scope="model",
                                                    scope_why="no per-op choice"), training_remedy="swap to ReLU6")
    start = StepResult(0, [], "int8", "p0", map50_95=45.0, drop_map50_95=3.0)
    for drop, chosen in ((0.4, "16x8"), (2.0, None)):
        built = []

        def build(step, kept, drop=drop):
            built.append(list(kept))
            return StepResult(step, kept, "16x8", "p1", map50_95=48.0 - drop, drop_map50_95=drop)

        result = run_search(start, [], [], 1.0, 16, whole, build, lambda: None, lambda m: None)
        assert built == [[WHOLE_MODEL]] and result.chosen == chosen and result.steps[-1].kept_label() == "all"
        if chosen:
            assert "within budget with the whole model in int16" in result.stopped and not result.remedy
        else:
            assert "still over budget" in result.stopped and "no per-op choice" in result.stopped
            assert result.remedy == "swap to ReLU6"


def test_float_layer_costs_count_what_follows_a_cut(demo_onnx):
    import onnx


    model = onnx.load(str(demo_onnx.full))
    first, last = "/model.0/conv/Conv", "/cv2.0/cv2.0.2/Conv"
    costs = {c.layer: c.ops_off_accelerator for c in
             float_layer_costs(model, [first, last], scheme(higher_precision=None, float_layer_cost="cut",
                                                            no_higher_precision_why="integer only"))}
    assert costs[first] > 0.9 * len(model.graph.node) and costs[last] < 40


def test_auto_calibration_in_an_export_builds_each_method_and_keeps_the_best(cli, tmp_path, ort_targets, demo_pt,
                                                                             small_data):
    code, _, err = cli(*export_args(tmp_path, "ort-mixed", demo_pt, small_data, "--set", "calibration.method=auto"))
    assert code == 0, err
    report = _report(tmp_path)
    calibration = report["calibration"]
    scores = {s["method"]: s["snr_db"] for s in calibration["scores"]}
    assert set(scores) == {"default", "minmax", "percentile-99.999"}
    assert calibration["scored_by"].startswith("real builds")
    assert calibration["used"] == max(scores, key=scores.get)
    assert calibration["used"] in report["artifacts"][1]["note"]  # the winner is what was built
    assert not list((tmp_path / "out").rglob(".calibration-trial*"))  # the trial builds are gone
