"""The exact training command a rule finding's remedy stands for, for the user's own model, data and target.

Rule tables name remedies as data (`remedy: {command: adapt, activation: relu6}`); this turns one into the line
the user can paste, so a finding that says "fine-tune" also says how.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Mapping
from typing import Any


def remedy_command(remedy: Mapping[str, Any], model: str | None, data: str | None, target: str) -> str:
    parts = ["edgeq", str(remedy["command"])]
    if remedy.get("activation"):
        parts += ["--activation", str(remedy["activation"])]
    if model:
        parts += ["--model", model]
    if data:
        parts += ["--data", data]
    parts += ["--target", target]
    return " ".join(shlex.quote(p) for p in parts)


def remedy_commands(findings: Iterable, model: str | None, data: str | None, target: str) -> list[str]:
    """One command per distinct remedy among `findings` (each finding's rule may name one)."""
    commands = [remedy_command(f.remedy, model, data, target) for f in findings if getattr(f, "remedy", None)]
    return list(dict.fromkeys(commands))
