"""The matrix report of a multi-target run: `report.md` (one row per artifact of every target), `report.json`
(the same with each target's outcome and timings) and `report.png` (accuracy drop per target and head treatment,
latency where it was measured). Each target's own report, artifacts and deploy kit are in `<target>/`."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from edgeq.report import ArtifactEntry, _error_bars, _ms, _num, drop_text, gain_interval_text

_COLOURS = {"FP32 model": "#718096", "head FP32 on the host": "#2b6cb0", "head FP32 in the graph": "#2c9c8f",
            "head INT8, normalized boxes": "#dd8a2b", "head INT8, pixel boxes": "#c53030",
            "selection in the graph": "#6b46c1"}


def head_treatment(entry: ArtifactEntry) -> str:
    """How the artifact treats the decode head, from its precision and output layout (the picture's colours)."""
    detail = entry.precision_detail
    if not (detail["weights"].startswith("int") or detail["activations"].startswith("int")):
        return "FP32 model"
    if entry.layout == "detached":
        return "head FP32 on the host"
    if not detail["head"].startswith("int"):
        return "head FP32 in the graph"
    return {"normalized": "head INT8, normalized boxes", "selected": "selection in the graph"}.get(
        entry.layout, "head INT8, pixel boxes")


@dataclass
class TargetOutcome:
    target: str
    status: Literal["built", "skipped", "failed"]
    reason: str = ""  # skipped / failed: why
    install: str = ""  # skipped: the line that installs its extra
    seconds: float = 0.0
    findings: int = 0  # rule findings (check and build)
    timings: dict[str, float] = field(default_factory=dict)
    artifacts: list[ArtifactEntry] = field(default_factory=list)
    baseline: dict[str, Any] = field(default_factory=dict)  # --baseline: the target report's record of it
    comparisons: list[dict] = field(default_factory=list)  # the target report's pairs of artifacts (uncertainty)

    def primary(self) -> ArtifactEntry | None:
        """The artifact the target ships (the one --max-drop gates), as a single export picks it."""
        from edgeq.pipeline import shipped_entry

        return shipped_entry(self.artifacts)


@dataclass
class MatrixReport:
    targets_requested: str
    model: str
    imgsz: int
    data: str
    val_images: int
    calib_images: int
    reference: dict[str, Any]
    onnx_fp32: ArtifactEntry
    outcomes: list[TargetOutcome]
    shared_timings: dict[str, float]
    seconds: float
    fast_images: int | None = None
    max_drop: float | None = None
    fallback_allowed: bool = True
    # how the intervals were made, and each pair of targets' deployable artifacts with their difference's interval
    uncertainty: dict[str, Any] = field(default_factory=dict)

    # --- what the CLI gates on ---------------------------------------------------------------------------------

    def over_budget(self) -> list[ArtifactEntry]:
        """The targets' deployable INT8 artifacts that lose more than --max-drop."""
        if self.max_drop is None:
            return []
        return [p for o in self.outcomes if (p := o.primary()) is not None and p.drop_map50_95 > self.max_drop]

    def failed(self) -> list[TargetOutcome]:
        return [o for o in self.outcomes if o.status == "failed"]

    # --- writing ----------------------------------------------------------------------------------------------------

    def write(self, folder: Path) -> None:
        (folder / "report.json").write_text(json.dumps(asdict(self), indent=2, default=str) + "\n")
        (folder / "report.md").write_text(self.markdown())
        self.plot(folder / "report.png")

    def table(self) -> str:
        ref = self.reference
        lines = ["| target | artifact | precision | head | mAP50-95 | mAP50 | drop (95% interval) | latency | size | status | "
                 "findings |", "|---|---|---|---|---:|---:|---:|---:|---:|---|---:|",
                 f"| reference | pytorch-fp32 ({ref['runtime']}) | fp32 | | {ref['map50_95']:.2f} | "
                 f"{ref['map50']:.2f} | | | | measured | |",
                 f"| all | {self.onnx_fp32.name} | fp32 | | {_num(self.onnx_fp32.map50_95)} | "
                 f"{_num(self.onnx_fp32.map50)} | {drop_text(self.onnx_fp32)} | | "
                 f"{_num(self.onnx_fp32.size_mb)} MB | measured | |"]
        for o in self.outcomes:
            if o.status != "built":
                what = f"{o.status}: {o.reason}" + (f" ({o.install})" if o.install else "")
                lines.append(f"| {o.target} | | | | | | | | | {what} | |")
                continue
            primary = o.primary()
            for e in o.artifacts:
                mark = " **deployable**" if e is primary else ""
                budget = "" if self.max_drop is None or e is not primary or e.drop_map50_95 is None else \
                    (" (within --max-drop)" if e.drop_map50_95 <= self.max_drop else " (**over --max-drop**)")
                subset = e.extra.get("evaluation_images")  # --fast: scored on fewer images, said beside the figure
                on = f" (on {subset})" if subset else ""
                lines.append(f"| {o.target} | {e.name}{mark} | {e.precision} | {head_treatment(e)} | "
                             f"{_num(e.map50_95)}{on} | {_num(e.map50)}{on} | {drop_text(e)}{budget} | "
                             f"{_ms(e.latency_ms)} | {_num(e.size_mb)} MB | {e.status} | {o.findings} |")
        return "\n".join(lines)

    def markdown(self) -> str:
        parts = [f"# edgeq export: {Path(self.model).name} -> {self.targets_requested}", "",
                 f"{self.val_images} evaluation images from `{self.data}`, {self.calib_images} calibration images, "
                 f"input {self.imgsz}x{self.imgsz}; one intake, one FP32 ONNX and one FP32 reference for every "
                 "target (same evaluator, same images). mAP in percent, drop in points against the FP32 reference; "
                 "latency is the median on this machine where the target's own runtime runs here. "
                 "*measured*: the target's runtime ran it; *emulated*: its integer arithmetic reproduced by a "
                 "reference runtime; *not-built*: the device builds it (see `<target>/DEPLOY.md`).", ""]
        if self.fast_images:
            parts += [f"**--fast**: artifacts scored with LiteRT's reference kernels (Edge TPU, NXP emulation) used "
                      f"the first {self.fast_images} evaluation images, their drop against FP32 on those same images; "
                      "the others used all of them.", ""]
        if self.fallback_allowed:
            parts += ["Fallback to the host was allowed for every target so each one has a figure; the findings "
                      "column counts the target's rule findings (each target's report lists them). A single-target "
                      "export applies the target's own default.", ""]
        parts += [self.table(), "", *self._noise_lines(), "![accuracy and latency per target](report.png)", "",
                  "## Per target", "", "| target | status | time | stages | folder |", "|---|---|---:|---|---|"]
        for o in self.outcomes:
            stages = ", ".join(f"{k} {v:.0f} s" for k, v in o.timings.items())
            folder = f"`{o.target}/` (report.md, DEPLOY.md)" if o.status == "built" else ""
            parts.append(f"| {o.target} | {o.status} | {o.seconds:.0f} s | {stages} | {folder} |")
        parts += ["", *self._default_path_section()]
        shared = ", ".join(f"{k} {v:.0f} s" for k, v in self.shared_timings.items())
        parts += ["", f"Shared work (once): {shared}. Whole run: {self.seconds:.0f} s.", ""]
        return "\n".join(parts)

    def _noise_lines(self) -> list[str]:
        """Which targets' deployable drops these images tell apart, in words."""
        u = self.uncertainty
        if not u:
            return []
        from edgeq.evaluation.uncertainty import noise_words

        lines = [f"Drops carry their {u['confidence']:.0%} interval ({u['method']}, {u['resamples']} resamples, "
                 f"seed {u['seed']}). Between targets (deployable artifacts, same images):"]
        if u.get("warning"):
            lines.append(f"**Warning**: {u['warning']}.")
        lines.append(noise_words(u.get("comparisons", [])) or "fewer than two targets to compare.")
        return [" ".join(lines), ""]

    def default_path_rows(self) -> list[dict[str, Any]]:
        """--baseline: per target, edgeq's deployable artifact against Ultralytics' own export of the same checkpoint
        (same images), or why Ultralytics' export is not here."""
        rows = []
        for o in self.outcomes:
            if o.status != "built" or not o.baseline:
                continue
            ours = o.primary()
            theirs = next((e for e in o.artifacts if e.role == "baseline" and e.drop_map50_95 is not None), None)
            rows.append({"target": o.target, "command": o.baseline["command"], "ours": ours, "theirs": theirs,
                         "reason": o.baseline["reason"],
                         "interval": gain_interval_text(o.comparisons, ours.name, theirs.name) if ours and theirs
                         else "",
                         "gain": theirs.drop_map50_95 - ours.drop_map50_95 if ours and theirs else None})
        return rows

    def _default_path_section(self) -> list[str]:
        rows = self.default_path_rows()
        if not rows:
            return []
        source = next(o.baseline["source"] for o in self.outcomes if o.baseline)
        lines = ["## Against the default path", "",
                 f"{source}'s own INT8 export of the same checkpoint for each target (`--baseline ultralytics`), "
                 "calibrated on this run's calibration images and scored by the same evaluator on the same images. "
                 "Gain: Ultralytics' drop minus edgeq's (points; positive: edgeq keeps more accuracy).", "",
                 "| target | edgeq (deployable) | drop | Ultralytics | drop | gain | `yolo export` line |",
                 "|---|---|---:|---|---:|---:|---|"]
        for r in rows:
            ours, theirs = r["ours"], r["theirs"]
            mine = f"{ours.name} | {_num(ours.drop_map50_95)}" if ours else "no INT8 figure |"
            if theirs is None:
                lines.append(f"| {r['target']} | {mine} | not built here: {r['reason']} | | | `{r['command']}` |")
                continue
            gain = f"**{r['gain']:+.2f}**{r['interval']}" if r["gain"] is not None else ""
            lines.append(f"| {r['target']} | {mine} | {theirs.name} ({theirs.status}) | "
                         f"{_num(theirs.drop_map50_95)} | {gain} | `{r['command']}` |")
        return [*lines, ""]

    def plot(self, path: Path) -> None:
        """Left: the drop of every artifact, grouped by target, coloured by head treatment. Right: latency where
        the target's runtime ran here (other targets have no latency on this machine)."""
        import matplotlib
        import numpy as np

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.patches import Patch

        rows = [(o.target, e) for o in self.outcomes for e in o.artifacts if e.drop_map50_95 is not None]
        if not rows:
            return
        timed = [(t, e) for t, e in rows if e.latency_ms is not None]
        labels = [f"{t}: {e.name} ({e.status})" for t, e in rows]
        fig, axes = plt.subplots(1, 2 if timed else 1, figsize=(13 if timed else 8, 0.42 * len(rows) + 2),
                                 squeeze=False, gridspec_kw={"width_ratios": [3, 2]} if timed else None)
        left = axes[0][0]
        drops = [e.drop_map50_95 for _, e in rows]
        # zoom to where the deployable artifacts differ: a naive head losing everything would flatten the rest
        limit = max(1.0, 6 * float(np.median(np.abs(drops))) + 0.5, self.max_drop or 0.0)
        clipped = [replace(e, drop_map50_95=min(e.drop_map50_95, limit)) for _, e in rows]
        bars = left.barh(labels, [e.drop_map50_95 for e in clipped],
                         color=[_COLOURS[head_treatment(e)] for _, e in rows], **_error_bars(clipped))
        for bar, (_, e) in zip(bars, rows, strict=True):
            if e.role == "baseline":  # Ultralytics' own export: the same colours for its head, hatched
                bar.set_hatch("//")
                bar.set_edgecolor("white")
        left.axvline(0, color="black", linewidth=1)
        if self.max_drop is not None:
            left.axvline(self.max_drop, color="#c53030", linestyle=":", label=f"--max-drop {self.max_drop}")
        for y, value in enumerate(drops):
            left.text(min(max(value, 0), limit), y, f" {value:.2f}" + (" (off scale)" if value > limit else ""),
                      va="center", fontsize=8)
        left.set_xlim(min(0, *drops) - 0.1, limit * 1.3)
        left.set_xlabel(f"mAP50-95 drop vs FP32 {self.reference['map50_95']:.2f} (points, lower is better)")
        left.invert_yaxis()
        used = dict.fromkeys(head_treatment(e) for _, e in rows)
        handles = [Patch(color=_COLOURS[k], label=k) for k in used]
        if any(e.role == "baseline" for _, e in rows):
            handles.append(Patch(facecolor="#a0aec0", hatch="//", edgecolor="white", label="Ultralytics' own export"))
        left.legend(handles=handles, fontsize=8, loc="upper center",
                    bbox_to_anchor=(0.5, -0.1), ncol=2)
        if timed:
            right = axes[0][1]
            right.barh([f"{t}: {e.name}" for t, e in timed], [e.latency_ms for _, e in timed], color="#2f855a")
            right.set_xlabel("latency here (ms, batch 1, median)")
            right.invert_yaxis()
            for y, (_, e) in enumerate(timed):
                right.text(e.latency_ms, y, f" {e.latency_ms:.1f}", va="center", fontsize=8)
        fig.suptitle(f"{Path(self.model).name} on {len([o for o in self.outcomes if o.status == 'built'])} targets, "
                     f"{self.val_images} images")
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)

