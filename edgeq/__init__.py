"""edgeq: edge INT8 export compiler for Ultralytics YOLO detectors."""
