"""What the deploy-kit tests of every family share: the detections edgeq's own runner and decoder give on an
image (what a kit's infer.py must print), and the parsing of infer.py's lines."""

import json
from pathlib import Path


def evaluator_detections(runner, kit: Path, image: Path, conf: float = 0.25) -> list[tuple]:
    """(class name, score, x1, y1, x2, y2) per detection, from edgeq's runner for the artifact and its decoder."""
    from edgeq.data import preprocess, read_image
    from edgeq.evaluation.decode import select_detections
    from edgeq.head import HeadLayout, HeadSpec

    head = HeadSpec.from_json(kit / "head.json")
    deploy = json.loads((kit / "deploy.json").read_text())
    path = Path(runner.path).resolve()
    layout = next(a["layout"] for a in deploy["artifacts"] if (kit / a["file"]).resolve() == path)
    batch, box = preprocess(read_image(image), head.imgsz)
    with runner:
        dets = select_detections(runner.infer(batch), HeadLayout(layout), head, conf, 0.7)
    dets[:, :4] = box.to_original(dets[:, :4])
    return [(head.names[int(c)], s, x1, y1, x2, y2) for x1, y1, x2, y2, s, c in dets.tolist()]


def parse_detections(stdout: str) -> list[tuple]:
    rows = []
    for line in stdout.strip().splitlines():
        name, *numbers = line.split()
        rows.append((name, *map(float, numbers)))
    return rows
