"""Runtime-agnostic evaluation: host decode, NMS and COCO mAP in numpy, the same for every artifact."""
