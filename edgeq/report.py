"""report.json (machine-readable), report.md (the table a person reads) and report.png (the same, drawn)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from edgeq.analyze.search import SearchResult


@dataclass
class ArtifactEntry:
    name: str
    target: str
    variant: str
    path: str  # relative to the output folder
    precision: str
    map50_95: float | None
    map50: float | None
    drop_map50_95: float | None  # percentage points vs the FP32 reference (positive = worse)
    size_mb: float | None
    latency_ms: float | None
    status: str  # measured | emulated | not-built
    note: str
    runtime: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    layout: str = ""  # what the outputs hold (pixel, normalized, detached, selected): the head treatment
    role: str = "deployable"  # edgeq.backend.Role: deployable, qat, comparison, reference, emulation-only
    # edgeq.backend.Precision.describe(): weights, activations, head, per-layer exceptions (`precision` is its label)
    precision_detail: dict[str, Any] = field(default_factory=dict)
    # the drop's 95% interval [low, high] (paired bootstrap over the evaluation images, edgeq.evaluation.uncertainty)
    drop_interval: list[float] | None = None
    # what mAP hides (edgeq.evaluation.diagnostics.describe): per-class AP, P/R/F1 at thresholds, score shift, sizes
    diagnostics: dict[str, Any] = field(default_factory=dict)


@dataclass
class Report:
    edgeq_version: str
    recipe: dict[str, Any]
    tools: dict[str, str]
    model: dict[str, Any]
    data: dict[str, Any]
    reference: dict[str, Any]  # FP32 PyTorch figures (+ the FP32 ONNX agreement)
    artifacts: list[ArtifactEntry]
    findings: list[dict[str, str]]
    timings_s: dict[str, float]
    # per (artifact, batch): median_ms, q1_ms, q3_ms, images_per_s, runtime, note (edgeq.evaluation.timing)
    throughput: list[dict[str, Any]] = field(default_factory=list)
    calibration: dict[str, Any] = field(default_factory=dict)  # edgeq.analyze.calibration.CalibrationChoice
    keep_float: list[str] = field(default_factory=list)  # layers the user kept out of INT8 (--keep-float)
    search: SearchResult | None = None  # when --max-drop started the mixed-precision search
    baseline: dict[str, Any] = field(default_factory=dict)  # --baseline: edgeq.baseline.ultralytics.BaselineOutcome
    # how the drops' intervals were made, and each pair of artifacts with the interval of their difference
    uncertainty: dict[str, Any] = field(default_factory=dict)

    def write(self, folder: Path) -> None:
        (folder / "report.json").write_text(json.dumps(asdict(self), indent=2, default=str) + "\n")
        (folder / "report.md").write_text(self.markdown())
        self.plot(folder / "report.png")
        if any(t["median_ms"] for t in self.throughput):
            self.plot_throughput(folder / "throughput.png")
        if self.search and len(self.search.steps) > 1:
            self.plot_search(folder / "search.png")

    def brief_rows(self) -> list[dict[str, str]]:
        """Name, precision, status, mAP50-95 and drop per artifact, as text: what `adapt`/`qat` summarise."""
        return [{"name": e.name, "precision": e.precision, "status": e.status,
                 "map": "" if e.map50_95 is None else f"{e.map50_95:.2f}",
                 "drop": "" if e.drop_map50_95 is None else f"{e.drop_map50_95:.2f}"} for e in self.artifacts]

    def table(self) -> str:
        ref = self.reference
        lines = ["| model | precision | mAP50-95 | mAP50 | drop (points, 95% interval) | latency | size | status | note |",
                 "|---|---|---:|---:|---:|---:|---:|---|---|",
                 f"| reference ({ref['runtime']}) | fp32 | {_num(ref['map50_95'])} | {_num(ref['map50'])} | | "
                 f"{_ms(ref.get('latency_ms'))} | | measured | source model |"]
        for a in self.artifacts:
            drop = drop_text(a)
            lines.append(f"| {a.name} | {a.precision} | {_num(a.map50_95)} | {_num(a.map50)} | {drop} | "
                         f"{_ms(a.latency_ms)} | {_num(a.size_mb)} MB | {a.status} | {a.note} |")
        return "\n".join(lines)

    def markdown(self) -> str:
        target = self.recipe.get("target")
        parts = [f"# edgeq export: {Path(self.model['source']).name} -> {target}", "",
                 f"{self.data['val_images']} evaluation images from `{self.data['source']}` (split "
                 f"`{self.data['val_split']}`), {self.data['calib_images']} calibration images (split "
                 f"`{self.data['calib_split']}`{self._provenance_words()}), input {self.model['imgsz']}x{self.model['imgsz']}"
                 f"{'' if self.model.get('batch', 1) == 1 else ', static batch ' + str(self.model['batch'])}. "
                 "mAP50-95 and mAP50 in percent (COCO protocol, faster-coco-eval); drop in points against the "
                 "FP32 reference; latency is the median on this machine's CPU where the target runs here.", "",
                 *self._head_line(),
                 self.table(), "",
                 *self._uncertainty_lines(),
                 "*measured*: run by the target's own runtime here. *emulated*: the target's integer arithmetic "
                 "reproduced by a reference runtime (accuracy only, no latency). *not-built*: the toolchain is "
                 "absent here; the files to build it on the device are in this folder.", ""]
        parts += self._baseline_lines()
        parts += self._hidden_section()
        parts += self._calibration_lines()
        parts += self._search_section()
        parts += self._throughput_section()
        if self.findings:
            parts += ["## Target rule findings", "", "| severity | where | finding | fix |", "|---|---|---|---|"]
            parts += [f"| {f['severity']} | {f['where']} | {f['message']} | {f['fix']}"
                      f"{': `' + f['command'] + '`' if f.get('command') else ''} |" for f in self.findings]
            parts.append("")
        parts += ["## Tools", "", ", ".join(f"{k} {v}" for k, v in self.tools.items()), "",
                  "## Timings", "", ", ".join(f"{k} {v:.1f} s" for k, v in self.timings_s.items()), ""]
        return "\n".join(parts)

    def _uncertainty_lines(self) -> list[str]:
        u = self.uncertainty
        if not u:
            return []
        from edgeq.evaluation.uncertainty import noise_words

        lines = [f"Intervals: {u['confidence']:.0%}, {u['method']}, {u['resamples']} resamples (seed {u['seed']}) of "
                 f"the {u['images']} images; a drop whose interval contains 0 is not told apart from FP32."]
        if u.get("warning"):
            lines.append(f"**Warning**: {u['warning']}.")
        if words := noise_words(u.get("comparisons", [])):
            lines.append(words)
        return [" ".join(lines), ""]

    def _provenance_words(self) -> str:
        """Where report.json lists the calibration images, and whether any of them was also scored."""
        evaluation = self.data.get("evaluation_set")
        if not evaluation:
            return ""
        overlap = self.data.get("overlap_images", 0)
        both = (f"**{overlap} of them also evaluation images** (`--allow-overlap`): those figures are flattered"
                if overlap else "none of them an evaluation image")
        return (f"; each listed with its content hash in report.json, {both}; evaluation set SHA-256 "
                f"`{evaluation['sha256'][:16]}`")

    def _hidden_section(self) -> list[str]:
        """What mAP hides: per-class AP and recall at the deployment threshold, precision/recall/F1 at that
        threshold and at FP32's best-F1 threshold, the score shift of the objects both find, AP by object size."""
        ref = self.reference.get("diagnostics")
        rows = [a for a in self.artifacts if a.diagnostics and a.role != "reference"]
        if not ref or not rows:
            return []
        names = self.model.get("names") or [str(k) for k in range(len(ref["class_ap"]))]
        deploy, best = ref["at_deploy_conf"]["conf"], ref["at_fp32_best_f1"]["conf"]
        lines = ["## What mAP hides", "",
                 f"Per class: AP50-95 (drop against FP32), precision and recall at the deployment threshold conf {deploy:g} "
                 "(`evaluation.deploy_conf`, IoU 0.5). A class can collapse behind a small overall drop, and a "
                 "squeezed confidence moves recall at a fixed threshold while mAP, which only ranks, stays put.", "",
                 "| class | FP32 | " + " | ".join(_subset_name(a) for a in rows) + " |",
                 "|---|---:|" + "---:|" * len(rows)]
        for k, name in enumerate(names):
            fp32_ap = ref["class_ap"][k]
            if fp32_ap is None:
                continue
            cells = [f"{fp32_ap:.2f}, {_pr(ref, k)}"]
            for a in rows:
                ap, same_images = a.diagnostics["class_ap"][k], a.diagnostics.get("fp32_class_ap", ref["class_ap"])[k]
                cells.append("n/a" if ap is None or same_images is None else
                             f"{ap:.2f} (drop {same_images - ap:.2f}), {_pr(a.diagnostics, k)}")
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines.append("")
        lines += self._worst_class_lines(names, ref)
        lines += [f"Detections kept at a fixed threshold (all classes, IoU 0.5): precision / recall / F1 in percent at "
                  f"conf {deploy:g} and at {best:.3f}, FP32's best-F1 threshold; the median score of the objects "
                  "FP32 and the artifact both find, and its median change.", "",
                  f"| model | P@{deploy:g} | R@{deploy:g} | F1@{deploy:g} | P@{best:.3f} | R@{best:.3f} | "
                  f"F1@{best:.3f} | median score (change) | AP small / medium / large |",
                  "|---|---:|---:|---:|---:|---:|---:|---|---|"]
        for name, d in [("reference (fp32)", ref), *((_subset_name(a), a.diagnostics) for a in rows)]:
            at, bf, shift = d["at_deploy_conf"], d["at_fp32_best_f1"], d["confidence_shift"]
            score = "" if shift["median"] is None else f"{shift['median']:.3f} ({shift['median_change']:+.3f})"
            sizes = " / ".join(_num(d["size_ap"].get(s)) for s in ("small", "medium", "large")) \
                if d.get("size_ap") else "n/a"
            lines.append(f"| {name} | {at['precision']:.1f} | {at['recall']:.1f} | {at['f1']:.1f} | "
                         f"{bf['precision']:.1f} | {bf['recall']:.1f} | {bf['f1']:.1f} | {score} | {sizes} |")
        return [*lines, "", "`report.png` shows the matched objects' scores, FP32 against the shipped artifact.", ""]

    def _worst_class_lines(self, names: list[str], ref: dict) -> list[str]:
        """The shipped artifact's worst class, called out against its overall drop."""
        from edgeq.pipeline import shipped_entry

        shipped = shipped_entry(self.artifacts)
        if shipped is None or not shipped.diagnostics:
            return []
        d = shipped.diagnostics
        fp32 = d.get("fp32_class_ap", ref["class_ap"])  # on the same images (a --fast subset's own)
        drops = [(fp32[k] - d["class_ap"][k], k) for k in range(len(names))
                 if fp32[k] is not None and d["class_ap"][k] is not None]
        if not drops:
            return []
        drop, k = max(drops)
        return [f"Worst class of {_subset_name(shipped)}: **{names[k]}**, AP50-95 {fp32[k]:.2f} -> "
                f"{d['class_ap'][k]:.2f} (drop {drop:.2f}, against {shipped.drop_map50_95:.2f} overall); at conf "
                f"{ref['at_deploy_conf']['conf']:g}: {_pr(ref, k)} -> {_pr(d, k)}.", ""]

    def default_path_gain(self) -> tuple[ArtifactEntry, ArtifactEntry] | None:
        """(edgeq's shipped entry, Ultralytics' entry) when both have figures: the comparison --baseline asks for."""
        from edgeq.pipeline import shipped_entry

        ours = shipped_entry(self.artifacts)
        theirs = next((e for e in self.artifacts if e.role == "baseline" and e.drop_map50_95 is not None), None)
        return (ours, theirs) if ours and theirs else None

    def _baseline_lines(self) -> list[str]:
        b = self.baseline
        if not b:
            return []
        if b["status"] != "built":
            return [f"Default path ({b['source']}): not built here: {b['reason']}"
                    + (f". The line that would make it: `{b['command']}`" if b["command"] else "") + ".", ""]
        pair = self.default_path_gain()
        if pair is None:
            return []
        ours, theirs = pair
        gain = theirs.drop_map50_95 - ours.drop_map50_95
        noise = gain_interval_text(self.uncertainty.get("comparisons", []), ours.name, theirs.name)
        return [f"Default path: {b['source']}'s own INT8 export of the same checkpoint (`{b['command']}`, its "
                f"data.yaml listing this run's calibration images), scored on the same images: drop "
                f"{theirs.drop_map50_95:.2f} against edgeq's {ours.drop_map50_95:.2f} ({ours.name}): edgeq "
                f"{'gains' if gain >= 0 else 'loses'} **{abs(gain):.2f}** points{noise}. Its export log: `{b['log']}`.", ""]

    def _calibration_lines(self) -> list[str]:
        c = self.calibration
        if not c:
            return []
        used = f"auto chose **{c['used']}**" if c["requested"] == "auto" else f"**{c['used']}**"
        lines = [f"Calibration method: {used} ({c['how']})."
                 + (f" The choice: {c['noise']}." if c.get("noise") else ""), ""]
        if c.get("scores"):
            lines += ["| method | emulated output SNR (dB) | cosine | MSE |", "|---|---:|---:|---:|"]
            lines += [f"| {s['method']} | {s['snr_db']:.2f} | {s['cosine']:.5f} | {s['mse']:.3g} |" for s in c["scores"]]
            lines.append("")
        if self.keep_float:
            lines += [f"Kept out of INT8 by --keep-float: {', '.join(f'`{n}`' for n in self.keep_float)}.", ""]
        return lines

    def _search_section(self) -> list[str]:
        s = self.search
        if not s:
            return []
        lines = ["## Mixed-precision search", "",
                 f"Budget: drop <= {s.budget:.3g} points (--max-drop {s.requested or s.budget}). "
                 f"Higher precision here: {s.higher_precision or 'none'}. "
                 f"Layers kept in sensitivity order (edgeq analyze's ranking on this target's scheme). "
                 f"Result: {s.stopped}" + (f"; **chosen: `{s.chosen}`**." if s.chosen else "."), "",
                 "| step | layers kept | artifact | mAP50-95 | drop | latency | within budget |",
                 "|---:|---:|---|---:|---:|---:|---|"]
        for step in s.steps:
            lines.append(f"| {step.step} | {step.kept_label()} | {step.path} | {step.map50_95:.2f} | "
                         f"{_interval_cell(step.drop_map50_95, step.drop_interval)} | {_ms(step.latency_ms)} | "
                         f"{'yes' if step.within_budget else 'no'} |")
        if s.fp32_latency_ms:
            lines += ["", f"FP32 latency, timed in the same rounds as the last step: {s.fp32_latency_ms:.1f} ms."]
        last = s.steps[-1]
        if last.whole_model:
            lines += ["", f"Step {last.step} keeps the whole model in the higher precision: no per-layer step exists "
                      "on this target."]
        elif last.kept:
            lines += ["", f"Layers kept at step {last.step}: " + ", ".join(f"`{n}`" for n in last.kept)]
        if s.costs:
            lines += ["", "What keeping each of the most sensitive layers in float would cost on this full-integer "
                      "target:", "", "| layer | ops off the accelerator | why |", "|---|---:|---|"]
            lines += [f"| `{c.layer}` | {c.ops_off_accelerator} | {c.why} |" for c in s.costs]
        if s.noise:
            lines += ["", f"Noise: {s.noise}."]
        if s.remedy:
            lines += ["", f"Training-side remedy: {s.remedy}"]
        lines += ["", f"Search wall time {s.seconds:.0f} s." if s.seconds else ""]
        return [*lines, ""]

    def plot_search(self, path: Path) -> None:
        """mAP50-95 of every search step against its latency (or, where latency is not measured here, against the
        number of layers kept), with the budget line: where accuracy comes back, and what it costs."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        s = self.search
        steps = s.steps
        timed = all(step.latency_ms is not None for step in steps)
        xs = [step.latency_ms if timed else (len(step.kept) if not step.whole_model else 1) for step in steps]
        ys = [step.map50_95 for step in steps]
        fig, ax = plt.subplots(figsize=(7, 4.2))
        # points, not a line: with latency on x, consecutive steps need not move right (timing noise)
        ax.scatter(xs, ys, color="#2b6cb0", zorder=3)
        for step, x, y in zip(steps, xs, ys):
            ax.annotate(f"step {step.step}: {step.kept_label()} kept", (x, y), textcoords="offset points",
                        xytext=(4, 4), fontsize=8)
            if step.artifact == s.chosen:
                ax.scatter([x], [y], s=140, facecolors="none", edgecolors="#2f855a", linewidths=2, label="chosen")
        ref = self.reference["map50_95"]
        ax.axhline(ref, color="black", linestyle="--", linewidth=1, label=f"FP32 {ref:.2f}")
        if timed and s.fp32_latency_ms:
            ax.axvline(s.fp32_latency_ms, color="grey", linestyle="--", linewidth=1,
                       label=f"FP32 latency {s.fp32_latency_ms:.1f} ms")
        ax.axhline(ref - s.budget, color="#c53030", linestyle=":", linewidth=1, label=f"budget (-{s.budget})")
        ax.set_xlabel("latency on this machine (ms, batch 1)" if timed else "layers kept in higher precision")
        ax.set_ylabel("mAP50-95 (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        ax.set_title(f"{Path(self.model['source']).name} -> {self.recipe.get('target')}: mixed-precision search",
                     fontsize=10)
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)

    def _throughput_section(self) -> list[str]:
        if not self.throughput:
            return []
        lines = ["## Throughput against batch size", "",
                 "Artifacts whose runtime here is the target's own, timed interleaved (round-robin, same warm-up; "
                 "median and interquartile range of one call); batch 1 is the latency column above. Static "
                 "batch: each call runs the whole batch. `throughput.png` plots it.", "",
                 "| artifact | batch | ms per call (median) | IQR (ms) | images/s | runtime |",
                 "|---|---:|---:|---:|---:|---|"]
        for t in self.throughput:
            if t["median_ms"] is None:
                lines.append(f"| {t['artifact']} | {t['batch']} | n/a | | | {t['note']} |")
            else:
                lines.append(f"| {t['artifact']} | {t['batch']} | {t['median_ms']:.1f} | {t['q1_ms']:.1f}-"
                             f"{t['q3_ms']:.1f} | {t['images_per_s']:.1f} | {t['runtime']} |")
        return [*lines, ""]

    def plot_throughput(self, path: Path) -> None:
        """Images per second against batch size, one line per artifact: where batching pays, and for whom."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 4.2))
        for name in dict.fromkeys(t["artifact"] for t in self.throughput):
            points = [t for t in self.throughput if t["artifact"] == name and t["median_ms"]]
            if not points:
                continue
            batches = [t["batch"] for t in points]
            rates = [t["images_per_s"] for t in points]
            # interquartile range of the call time, as a range of images/s
            low = [r - 1000.0 * t["batch"] / t["q3_ms"] for r, t in zip(rates, points)]
            high = [1000.0 * t["batch"] / t["q1_ms"] - r for r, t in zip(rates, points)]
            ax.errorbar(batches, rates, yerr=[low, high], marker="o", capsize=3, label=name)
        ax.set_xlabel("batch size (static)")
        ax.set_ylabel("images / s on this machine")
        ax.set_xticks(sorted({t["batch"] for t in self.throughput}))
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        ax.set_title(f"{Path(self.model['source']).name} -> {self.recipe.get('target')}: throughput, timed interleaved",
                     fontsize=10)
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)

    def _head_line(self) -> list[str]:
        head = self.model.get("head")
        if not head:
            return []
        nms = "NMS ran on the host" if head["nms"] else "no NMS ran (NMS-free head)"
        return [(f"Head: {head['class']}, {head['branch']} branch, reg_max {head['reg_max']}; detections chosen by "
                 f"{head['selection']} for every artifact ({nms})."), ""]

    def plot(self, path: Path) -> None:
        """Left: mAP50-95 per artifact, zoomed to where they differ. Right: the drop in points, the figure that
        decides a deployment."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        rows = [a for a in self.artifacts if a.map50_95 is not None]
        if not rows:
            return
        colours = [{"measured": "#2b6cb0", "emulated": "#dd8a2b"}.get(a.status, "grey") for a in rows]
        names = [f"{a.name} ({a.status})" for a in rows]
        ref = self.reference["map50_95"]
        from edgeq.pipeline import shipped_entry

        shipped = shipped_entry(self.artifacts)
        scores = self.reference.get("diagnostics", {}).get("matched_scores")
        histogram = bool(scores and shipped is not None and shipped.diagnostics.get("matched_scores"))
        fig = plt.figure(figsize=(16 if histogram else 11, max(3.2, 0.45 * len(rows) + 1.8)))
        grid = fig.add_gridspec(1, 3 if histogram else 2, width_ratios=[3, 2, 2.4] if histogram else [3, 2])
        left = fig.add_subplot(grid[0, 0])
        right = fig.add_subplot(grid[0, 1], sharey=left)
        right.tick_params(labelleft=False)
        values = [a.map50_95 for a in rows]
        low = max(0.0, min([*values, ref]) - max(2.0, 0.15 * (max([*values, ref]) - min([*values, ref]))))
        left.barh(names, values, color=colours)
        left.axvline(ref, color="black", linestyle="--", linewidth=1)
        left.set_xlim(low, max([*values, ref]) + 0.1 * (max([*values, ref]) - low) + 0.5)
        left.set_xlabel(f"mAP50-95 (%); dashed: FP32 reference {ref:.2f}")
        for y, value in enumerate(values):
            left.text(value, y, f" {value:.2f}", va="center", fontsize=8)
        drops = [a.drop_map50_95 for a in rows]
        right.barh(names, drops, color=colours, **_error_bars(rows))
        right.axvline(0, color="black", linewidth=1)
        right.set_xlabel("drop vs FP32 (points, lower is better)")
        for y, value in enumerate(drops):
            right.text(max(value, 0), y, f" {value:.2f}", va="center", fontsize=8)
        lows = [a.drop_interval[0] if a.drop_interval else a.drop_map50_95 for a in rows]
        highs = [a.drop_interval[1] if a.drop_interval else a.drop_map50_95 for a in rows]
        right.set_xlim(min(0, *lows) - 0.2, max(0.5, *highs) * 1.3)
        left.invert_yaxis()
        if histogram:
            ax = fig.add_subplot(grid[0, 2])
            bins = [i / 20 for i in range(21)]
            ax.hist(scores, bins=bins, alpha=0.55, color="black", label="FP32 reference")
            ax.hist(shipped.diagnostics["matched_scores"], bins=bins, alpha=0.55, color="#2b6cb0",
                    label=shipped.name)
            ax.axvline(self.reference["diagnostics"]["at_deploy_conf"]["conf"], color="#c53030", linestyle=":",
                       label="deployment threshold")
            ax.set_xlabel("score of each object found (IoU 0.5)")
            ax.set_ylabel("objects")
            ax.legend(fontsize=8)
        fig.suptitle(f"{Path(self.model['source']).name} -> {self.recipe.get('target')}, "
                     f"{self.data['val_images']} images")
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)


def gain_interval_text(comparisons: list[dict], ours: str, theirs: str) -> str:
    """` (95% interval a to b[: within noise ...])` for edgeq's gain over the default path (ours - theirs in mAP,
    which is their drop minus ours), or "" when the pair was not compared."""
    from edgeq.evaluation.uncertainty import oriented

    pair = oriented(comparisons, ours, theirs)
    if pair is None:
        return ""
    low, high = pair["interval"]
    return f" (95% interval {low:.2f} to {high:.2f}" + (
        ": within noise, these images cannot tell the two apart)" if pair["within_noise"] else ")")


def drop_text(entry: ArtifactEntry) -> str:
    """The drop with its interval, as every table prints it: `0.68 (0.31 to 1.02)`."""
    if entry.drop_map50_95 is None:
        return ""
    return _interval_cell(entry.drop_map50_95, entry.drop_interval)


def _interval_cell(drop: float, interval: list[float] | None) -> str:
    return f"{drop:.2f}" if interval is None else f"{drop:.2f} ({interval[0]:.2f} to {interval[1]:.2f})"


def _subset_name(entry: ArtifactEntry) -> str:
    """The entry's name, with the images it was scored on where --fast scored it on a subset."""
    images = entry.extra.get("evaluation_images")
    return entry.name if images is None else f"{entry.name} (first {images} images)"


def _pr(diagnostics: dict, k: int) -> str:
    """Class k's precision and recall at the deployment threshold: `P 91% R 88%`."""
    at = diagnostics["at_deploy_conf"]
    return f"P {at['class_precision'][k]:.0f}% R {at['class_recall'][k]:.0f}%"


def _error_bars(rows: list[ArtifactEntry]) -> dict:
    """barh's xerr for the drops' 95% intervals (none when any row has no interval)."""
    if any(e.drop_interval is None for e in rows):
        return {}
    low = [max(0.0, e.drop_map50_95 - e.drop_interval[0]) for e in rows]
    high = [max(0.0, e.drop_interval[1] - e.drop_map50_95) for e in rows]
    return {"xerr": [low, high], "error_kw": {"ecolor": "black", "capsize": 3, "linewidth": 1}}


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _ms(value: float | None) -> str:
    return "" if value is None else f"{value:.1f} ms"
