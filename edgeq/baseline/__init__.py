"""The default path, side by side: Ultralytics' own INT8 export of the same checkpoint for a target, calibrated on
the same images, scored by the same evaluator (`--baseline ultralytics`). Which format and arguments stand for a
target is profile data (`TargetProfile.ultralytics`)."""
