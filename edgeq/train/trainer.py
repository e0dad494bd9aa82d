"""edgeq's Ultralytics trainer: Ultralytics' DetectionTrainer with two differences, both because edgeq scores
results itself (same evaluator, same images as every export report):

- no final validation of best.pt through Ultralytics' AutoBackend (it would load the file again and warm up
  torchvision's NMS); per-epoch validation, which picks best.pt, is Ultralytics' own;
- every activation the job swaps is swapped in the model the trainer builds (Ultralytics rebuilds the model
  from the checkpoint's YAML, which names one default activation; modules with their own keep theirs).

Import only inside `edgeq.train.ultralytics_env.training_environment`.
"""

from __future__ import annotations

from ultralytics.models.yolo.detect import DetectionTrainer
from ultralytics.utils.torch_utils import strip_optimizer

from edgeq.train.swap import swap_activations


def trainer_class(activation: str | None) -> type[DetectionTrainer]:
    class EdgeqDetectionTrainer(DetectionTrainer):
        def get_model(self, cfg=None, weights=None, verbose=True):
            model = super().get_model(cfg, weights, verbose)
            if activation:
                swap_activations(model, activation)
            return model

        def final_eval(self):
            """Strip the optimizer (and the distillation wrapper) from last.pt and best.pt, as Ultralytics does;
            edgeq evaluates the checkpoint itself (see the module docstring)."""
            ckpt = strip_optimizer(self.last) if self.last.exists() else {}
            if self.best.exists():
                strip_optimizer(self.best, updates={"train_results": ckpt.get("train_results")})

    return EdgeqDetectionTrainer
