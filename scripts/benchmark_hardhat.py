"""Real-photo benchmark: every target on YOLOv8n detectors trained on the hard-hat photographs (figures, not a test).

The demo's synthetic shapes saturate near 98 mAP50-95, where quantization damage hides; these models sit near
the accuracy of real deployments, so a lost point shows. Each target gets one `edgeq export` (calibration on
the train split, evaluation on the val split, Roboflow labels as exported: polygons and all), and the script
prints one table: FP32 and every INT8 artifact's mAP50-95, drop, status and the export's wall time.

The detectors are trained by `scripts/train_models.py` (jobs hardhat-yolov8n-silu / -relu6, GPU machine) and
kept in benchmarks/models/, outside the wheel. This is `scripts/benchmark_targets.py` with those models and
that data as defaults; the Edge TPU and NXP figures come from LiteRT's reference INT8 kernels (bit-exact,
about 4 s per 640 px image on 2 cores), so the published table scores those two on 100 val images.

    python scripts/benchmark_hardhat.py --reference-val-images 100 [--targets openvino tflite ...] [--out DIR]
"""

from __future__ import annotations

import sys
from pathlib import Path

from benchmark_targets import parser, run

REPO = Path(__file__).resolve().parents[1]
MODELS = REPO / "benchmarks" / "models"

if __name__ == "__main__":
    args = parser(__doc__, models=[str(MODELS / f"hardhat-yolov8n-{a}-640.pt") for a in ("silu", "relu6")],
                  data=str(REPO.parent / "shared" / "datasets" / "hardhat" / "data.yaml")).parse_args()
    sys.exit(run(args))
