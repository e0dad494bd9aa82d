"""The per-op table of a produced .tflite: where each op runs on the target, and why.

An op runs on the accelerator unless one of the target's rules puts it on the CPU (`fallback`) or refuses it
(`error`); `warning` findings keep it on the accelerator with a note. Where the table's `partition` is `once`
(Edge TPU), the first op off the accelerator cuts the graph and every later op runs on the CPU too.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import yaml

from edgeq.plugin import Finding, RuleTable, Severity
from edgeq_tflite import predicates  # noqa: F401  (registers the checks the tables use)
from edgeq_tflite.graph import TFLiteGraph, short_name

RULES = Path(__file__).parent / "rules"


@dataclass(frozen=True)
class OpRow:
    index: int
    op: str
    output: str
    shape: str
    dtype: str
    runs_on: str  # accelerator name, "CPU", or "refused"
    reason: str


@dataclass(frozen=True)
class OpTable:
    target: str
    accelerator: str
    rows: list[OpRow]
    findings: list[Finding]  # per-op and model-level findings on the .tflite
    first_unmapped: OpRow | None

    @property
    def on_accelerator(self) -> int:
        return sum(r.runs_on == self.accelerator for r in self.rows)

    def summary(self) -> str:
        text = f"{self.on_accelerator}/{len(self.rows)} ops on {self.accelerator}"
        if self.first_unmapped is not None:
            r = self.first_unmapped
            text += f"; first op off it: #{r.index} {r.op} ({r.reason.split('; ')[0]})"
        return text

    def markdown(self, title: str) -> str:
        lines = [f"# {title}", "", f"Target: `{self.target}`. {self.summary()}.", "",
                 (f"Predicted from the rule table `rules/{self.target}.yaml` on the file's own op codes, options, "
                  "tensor types and quantization parameters; where the vendor compiler runs, its log is the "
                  "authority."), ""]
        model_level = [f for f in self.findings if f.where == "model"]
        for f in model_level:
            lines.append(f"- {f.one_line()}")
        if model_level:
            lines.append("")
        lines += ["| # | op | output | shape | dtype | runs on | reason |", "|---|---|---|---|---|---|---|"]
        for r in self.rows:
            lines.append(f"| {r.index} | {r.op} | `{r.output}` | {r.shape} | {r.dtype} | {r.runs_on} | {r.reason} |")
        return "\n".join(lines) + "\n"


def table_meta(rules: Path) -> dict:
    data = yaml.safe_load(rules.read_text())
    return {"accelerator": data.get("accelerator", rules.stem), "partition": data.get("partition", "per-op")}


def build_op_table(target: str, graph: TFLiteGraph, rules: Path | None = None) -> OpTable:
    """`rules`: the target's table for .tflite files (default: rules/<target>.yaml)."""
    rules = rules or RULES / f"{target}.yaml"
    table = RuleTable.load(rules)
    meta = table_meta(rules)
    accel = meta["accelerator"]
    model_rules = RuleTable(table.target, tuple(r for r in table.rules if "MODEL" in r.ops))
    findings = table.evaluate(graph.layers) + model_rules.evaluate([graph.model_layer()])
    by_layer: dict[str, list[Finding]] = defaultdict(list)
    for f in findings:
        by_layer[f.where].append(f)
    rows, first = [], None
    for layer in graph.layers:
        own = by_layer.get(layer.name, [])
        errors = [f for f in own if f.severity is Severity.ERROR]
        falls = [f for f in own if f.severity is Severity.FALLBACK]
        warns = [f for f in own if f.severity is Severity.WARNING]
        if meta["partition"] == "none":
            runs_on, reason = accel, "; ".join(f.message for f in errors + warns) or "builtin integer kernel"
            if errors:
                runs_on = "refused"
        elif errors:
            runs_on, reason = "refused", "; ".join(f.message for f in errors)
        elif falls:
            runs_on, reason = "CPU", "; ".join(f.message for f in falls)
        elif first is not None and meta["partition"] == "once":
            runs_on = "CPU"
            reason = f"after the first unmapped op (#{first.index} {first.op}): the compiler partitions once"
        else:
            runs_on, reason = accel, "; ".join(f.message for f in warns) or "supported"
        out = layer.outputs[0] if layer.outputs else None
        row = OpRow(layer.index, layer.op, short_name(layer.name), str(list(out.shape)) if out and out.shape else "?",
                    out.dtype if out else "?", runs_on, reason.replace("|", "/"))
        if first is None and runs_on != accel:
            first = row
        rows.append(row)
    return OpTable(target=target, accelerator=accel, rows=rows, findings=findings, first_unmapped=first)
