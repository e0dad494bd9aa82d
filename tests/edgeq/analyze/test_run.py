"""`edgeq analyze` end to end: the planted layer ranks first by every metric, the files a person reads, the
cache, and the output-folder rules export follows too."""

import json
import os
from pathlib import Path

from planted_models import OUTLIER_LAYER


def _analyze(cli, tmp_path, target, model, data, *extra):
    return cli("analyze", "--target", target, "--model", model, "--imgsz", 320, "--data", data, "--calib-images", 24,
               "--val-images", 24, "--out", tmp_path / "an", "--no-progress", "--set", "analysis.metric_images=8",
               "--map-layers", 3, *extra)


def test_planted_layer_ranks_first_by_every_metric(cli, tmp_path, ort_targets, outlier_pt, small_data):
    code, out, err = _analyze(cli, tmp_path, "ort-mixed", outlier_pt, small_data)
    assert code == 0, err
    report = json.loads((tmp_path / "an" / "analysis.json").read_text())
    top = report["layers"][0]
    assert top["name"] == OUTLIER_LAYER and top["rank"] == 1
    assert top["ranks"]["mse"] == top["ranks"]["snr"] == top["ranks"]["cosine"] == top["ranks"]["map"] == 1
    assert top["drop_map50_95"] > 10.0  # alone it ruins the model
    others = [s for s in report["layers"][1:] if s["drop_map50_95"] is not None]
    assert len(others) == 2 and all(s["drop_map50_95"] < 3.0 for s in others)
    assert all(s["map50_95"] is None for s in report["layers"][3:])  # only the top layers are scored by mAP
    assert report["fp32_map50_95"] - report["all_int8_map50_95"] > 10.0
    md = (tmp_path / "an" / "analysis.md").read_text()
    assert f"| 1 | `{OUTLIER_LAYER}` | Conv |" in md and f"`{OUTLIER_LAYER}`" in out
    assert (tmp_path / "an" / "analysis.png").stat().st_size > 5000
    assert sorted(p.name for p in (tmp_path / "an").iterdir()) == ["analysis.json", "analysis.md", "analysis.png"]

    cache = Path(os.environ["EDGEQ_CACHE"]) / "analyze"
    assert any(cache.glob("hist-*.npz")) and any(cache.glob("sweep-*.json")) and any(cache.glob("map-*.json"))
    code, _, err = _analyze(cli, tmp_path, "ort-mixed", outlier_pt, small_data)
    assert code == 2 and "already holds" in err  # never overwritten unasked
    code, _, err = _analyze(cli, tmp_path, "ort-mixed", outlier_pt, small_data, "--force", "--keep-float",
                            OUTLIER_LAYER)
    assert code == 0, err
    again = json.loads((tmp_path / "an" / "analysis.json").read_text())
    assert OUTLIER_LAYER not in [s["name"] for s in again["layers"]] and again["keep_float"] == [OUTLIER_LAYER]
    assert again["fp32_map50_95"] - again["all_int8_map50_95"] < 3.0  # the rest quantizes fine


def test_auto_calibration_tries_every_offered_method_and_keeps_the_best(cli, tmp_path, ort_targets, demo_pt,
                                                                       small_data):
    code, _, err = _analyze(cli, tmp_path, "ort-mixed", demo_pt, small_data, "--set", "calibration.method=auto",
                            "--map-layers", 0)
    assert code == 0, err
    calibration = json.loads((tmp_path / "an" / "analysis.json").read_text())["calibration"]
    scores = {s["method"]: s["snr_db"] for s in calibration["scores"]}
    assert set(scores) == {"minmax", "percentile-99.999"} and calibration["requested"] == "auto"
    assert calibration["used"] == max(scores, key=scores.get) and "native: ONNX Runtime" in calibration["how"]


def test_head_quantized_openvino_scheme_ranks_the_decode_head_first(cli, tmp_path, demo_pt, small_data):
    """The known answer (seed 003, and the 2.9-point loss of OpenVINO's head-quantized variant): with the decode
    head quantized, its layers are the most sensitive. Needs only ONNX Runtime: OpenVINO's scheme is data."""
    code, _, err = _analyze(cli, tmp_path, "openvino", demo_pt, small_data, "--set", "options.detach_head=false",
                            "--set", "analysis.map_layers=4")
    assert code == 0, err
    layers = json.loads((tmp_path / "an" / "analysis.json").read_text())["layers"]
    assert layers[0]["name"].startswith("edgeq_head/") and layers[0]["drop_map50_95"] > 1.0
    assert all(s["name"].startswith("edgeq_head/") for s in layers[:3])
    assert all("decode head" in " ".join(s["marks"]) for s in layers if s["name"].startswith("edgeq_head/"))
