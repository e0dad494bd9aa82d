"""analysis.md: the ranked table, with the target toolkit's own per-layer column only where the toolkit gave one."""

from edgeq.analyze.output import AnalysisReport


def _report(**extra) -> AnalysisReport:
    layer = {"name": "/model.0/conv/Conv", "op": "Conv", "mse": 1e-3, "snr_db": 30.0, "cosine": 0.999, "rank": 1,
             "ranks": {"mse": 1, "snr": 1, "cosine": 1, "cheap": 1}, "map50_95": None, "drop_map50_95": None,
             "marks": [], "toolkit_cosine": 0.19}
    return AnalysisReport(target="rk3588", model="m.pt", imgsz=320,
                          scheme={"weights": "per-channel", "activations": "asymmetric"}, calibration={},
                          method="minmax", head_quantized=False, images={"ranges": 4, "metrics": 4, "map": 8},
                          fp32_map50_95=90.0, all_int8_map50_95=80.0, layers=[layer], **extra)


def test_the_toolkit_column_appears_with_the_toolkits_figures():
    text = _report(toolkit={"tool": "rknn-toolkit2 2.3.2 accuracy_analysis (simulator)", "metric": "cosine",
                            "images": 2}).markdown()
    header, rule, row = [line for line in text.splitlines() if line.startswith("|")]
    assert "toolkit cosine" in header and header.count("|") == rule.count("|") == row.count("|")
    assert "| 0.19000 |" in row and "rknn-toolkit2 2.3.2 accuracy_analysis" in text


def test_without_a_toolkit_figure_the_table_is_as_before():
    header, rule, row = [line for line in _report().markdown().splitlines() if line.startswith("|")]
    assert "toolkit" not in header and header.count("|") == rule.count("|") == row.count("|") == 11
