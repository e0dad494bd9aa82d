"""Everything edgeq reads from the user before it trusts it: YAML (`safe_yaml`), model YAMLs Ultralytics would
evaluate (`model_yaml`), what Ultralytics itself reads and fetches (`ultralytics_io`), and the process-wide guard
that turns any attempt to reach the network into an error (`network`).

Checkpoints are vetted in `edgeq.model.read_checkpoint` (weights-only against Ultralytics' allow-list) and images
in `edgeq.data.images.read_image`; output folders are kept apart from inputs in `edgeq.staging`.
"""
