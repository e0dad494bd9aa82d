"""`edgeq eval` scores artifacts made elsewhere: an ONNX from Ultralytics' own `yolo export`."""

import shutil

import pytest


@pytest.fixture(scope="module")
def yolo_exported_onnx(demo_pt, tmp_path_factory):
    from edgeq.env import offline_ultralytics

    offline_ultralytics()
    from ultralytics import YOLO

    folder = tmp_path_factory.mktemp("yolo-export")
    weights = shutil.copy(demo_pt, folder / demo_pt.name)
    return YOLO(str(weights)).export(format="onnx", imgsz=320, simplify=False, verbose=False)


def _map(stdout: str) -> float:
    row = [line for line in stdout.splitlines() if line.startswith("| ") and not line.startswith("| artifact")][-1]
    return float(row.split("|")[4])


def test_eval_yolo_export_onnx_agrees_with_pytorch(cli, demo_pt, small_data, yolo_exported_onnx):
    code, out_onnx, err = cli("eval", yolo_exported_onnx, "--data", small_data, "--no-progress")
    assert code == 0, err
    code, out_pt, err = cli("eval", demo_pt, "--data", small_data, "--imgsz", 320, "--no-progress")
    assert code == 0, err
    assert _map(out_pt) > 50 and abs(_map(out_onnx) - _map(out_pt)) <= 0.3


def test_eval_refuses_class_count_mismatch(cli, tmp_path, small_data, yolo_exported_onnx):
    other = tmp_path / "data.yaml"
    other.write_text(small_data.read_text().replace("names:", "names_unused:").replace("nc:", "nc_unused:")
                     + "\nnames: [a, b]\n")
    code, _, err = cli("eval", yolo_exported_onnx, "--data", other, "--no-progress")
    assert code == 2 and "predicts 6 classes but the dataset has 2" in err


def test_eval_yolo26_export_with_selection_inside_agrees_with_pytorch(cli, small_data, tmp_path):
    """`yolo export nms=False` writes YOLO26's NMS-free branch with its top-k inside: (1, 300, 6) detections
    already selected, recognised by shape. (Ultralytics 8.4's default, nms=None, exports the one-to-many
    branch for external NMS instead.)"""
    from pathlib import Path

    from edgeq.env import offline_ultralytics

    offline_ultralytics()
    from ultralytics import YOLO

    source = Path(__file__).parents[2] / "benchmarks" / "models" / "demo-yolo26n-320.pt"
    weights = shutil.copy(source, tmp_path / source.name)
    exported = YOLO(str(weights)).export(format="onnx", imgsz=320, simplify=False, verbose=False, nms=False)
    code, out_onnx, err = cli("eval", exported, "--data", small_data, "--no-progress")
    assert code == 0, err
    code, out_pt, err = cli("eval", weights, "--data", small_data, "--no-progress")
    assert code == 0, err
    assert _map(out_pt) > 50 and abs(_map(out_onnx) - _map(out_pt)) <= 0.3


def test_eval_yolo_export_onnx_int8(cli, demo_pt, small_data, tmp_path):
    """Ultralytics' ONNX INT8 (ONNX Runtime static quantization of its weighted ops, calibrated on the data's val
    split): scored as it is, close to the FP32 model (its decode head stays float)."""
    from edgeq.env import offline_ultralytics

    offline_ultralytics()
    from ultralytics import YOLO

    weights = shutil.copy(demo_pt, tmp_path / demo_pt.name)
    exported = YOLO(str(weights)).export(format="onnx", int8=True, imgsz=320, data=str(small_data), fraction=0.5,
                                         verbose=False)
    code, out, err = cli("eval", exported, "--data", small_data, "--no-progress")
    assert code == 0, err
    code, out_pt, err = cli("eval", demo_pt, "--data", small_data, "--imgsz", 320, "--no-progress")
    assert _map(out) > 50 and abs(_map(out) - _map(out_pt)) <= 3.0
