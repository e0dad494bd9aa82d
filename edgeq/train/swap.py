"""Activation swap: every activation a target refuses becomes the one it runs well, in place.

Seeds 000 and 003: ReLU fuses with Conv in TensorRT; ReLU6 runs on the Edge TPU and NXP's NPU and keeps INT8
ranges tight (0..6). Ultralytics builds Conv blocks with one shared `Conv.default_act` and names the activation
in the model YAML's `activation:` key, so both are set: the modules for this training run, the YAML so the
checkpoint rebuilds the same way.
"""

from __future__ import annotations

from edgeq.errors import EdgeqError

SWAPS = {"relu6": "nn.ReLU6()", "relu": "nn.ReLU()"}  # --activation -> the YAML spelling Ultralytics evals
REPLACED = ("SiLU", "LeakyReLU", "Hardswish", "Mish", "GELU", "ReLU", "ReLU6")  # everything but Sigmoid gates


def check_activation(name: str) -> None:
    if name not in SWAPS:
        raise EdgeqError(f"--activation {name} is not offered", f"use one of: {', '.join(SWAPS)}")


def new_activation(name: str):
    from torch import nn

    return {"relu6": nn.ReLU6, "relu": nn.ReLU}[name]()


def swap_activations(model, name: str) -> int:
    """Replace every activation module of `model` (a DetectionModel) by `name`'s; returns how many were replaced.
    The model YAML's `activation:` is set too, so Ultralytics rebuilds the swapped architecture."""
    check_activation(name)
    target = type(new_activation(name)).__name__
    replaced = 0
    for parent in model.modules():
        for child_name, child in list(parent.named_children()):
            if type(child).__name__ in REPLACED and type(child).__name__ != target:
                setattr(parent, child_name, new_activation(name))
                replaced += 1
    if isinstance(getattr(model, "yaml", None), dict):
        model.yaml["activation"] = SWAPS[name]
    return replaced


def activation_counts(model) -> dict[str, int]:
    from collections import Counter

    return dict(Counter(type(m).__name__ for _, m in model.named_modules(remove_duplicate=False)
                        if type(m).__name__ in (*REPLACED, "Sigmoid")))  # Conv.default_act is one shared instance
