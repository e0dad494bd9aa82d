"""`edgeq eval` on a LiteRT file Ultralytics 8.4 made (fixtures/README.md says how): NCHW float input and boxes
normalized to 0..1, both told apart from the file, scored like any artifact."""

from pathlib import Path

from tflite_testlib import need_stack

FIXTURE = Path(__file__).parent / "fixtures" / "demo-yolov8n-silu-320_ultralytics-litert-int8.tflite"


def _row(stdout: str) -> list[str]:
    return [c.strip() for c in stdout.strip().splitlines()[-1].split("|")]


def test_ultralytics_litert_int8_scores_cleanly(cli, small_data):
    need_stack()
    code, out, err = cli("eval", FIXTURE, "--data", small_data, "--val-images", 24, "--no-progress")
    assert code == 0 and "Traceback" not in err, err
    row = _row(out)
    assert row[3] == "24" and float(row[4]) > 60  # normalized boxes found without --layout
    code, out, err = cli("eval", FIXTURE, "--data", small_data, "--val-images", 24, "--layout", "pixel",
                         "--no-progress")
    assert code == 0 and float(_row(out)[4]) < 1.0  # read as pixels, the same file scores nothing
