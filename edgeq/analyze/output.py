"""What `edgeq analyze` writes: analysis.json (every figure), analysis.md (the ranked table a person reads) and
analysis.png (the most sensitive layers at a glance, by every metric)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

TOP_PLOTTED = 25


@dataclass
class AnalysisReport:
    target: str
    model: str
    imgsz: int
    scheme: dict[str, Any]
    calibration: dict[str, Any]
    method: str  # the range method the emulation used
    head_quantized: bool
    images: dict[str, Any]
    fp32_map50_95: float  # FP32 ONNX on the mAP images
    all_int8_map50_95: float  # every layer the target quantizes, emulated
    layers: list[dict[str, Any]]  # edgeq.analyze.sensitivity.LayerScore, ranked
    keep_float: list[str] = field(default_factory=list)
    float_layers: dict[str, str] = field(default_factory=dict)
    head_layers: list[str] = field(default_factory=list)  # decode-head layers kept in float by the head treatment
    timings_s: dict[str, float] = field(default_factory=dict)
    toolkit: dict[str, Any] = field(default_factory=dict)  # tool, metric, images of the layers' toolkit_cosine

    def write(self, folder: Path) -> None:
        (folder / "analysis.json").write_text(json.dumps(asdict(self), indent=2) + "\n")
        (folder / "analysis.md").write_text(self.markdown())
        self.plot(folder / "analysis.png")

    def table(self, limit: int | None = None) -> str:
        toolkit = " toolkit cosine |" if self.toolkit else ""
        lines = [("| rank | layer | op | MSE | SNR (dB) | cosine | rank by mse/snr/cos (together) | mAP50-95 alone | "
                  f"drop |{toolkit} already treated |"),
                 "|---:|---|---|---:|---:|---:|---|---:|---:|" + ("---:|" if self.toolkit else "") + "---|"]
        for s in self.layers[:limit]:
            r = s["ranks"]
            mapped = "" if s["map50_95"] is None else f"{s['map50_95']:.2f}"
            drop = "" if s["drop_map50_95"] is None else f"{s['drop_map50_95']:.2f}"
            vendor = "" if not self.toolkit else \
                f" {'' if s.get('toolkit_cosine') is None else format(s['toolkit_cosine'], '.5f')} |"
            lines.append(f"| {s['rank']} | `{s['name']}` | {s['op']} | {s['mse']:.3g} | {s['snr_db']:.1f} | "
                         f"{s['cosine']:.6f} | {r['mse']}/{r['snr']}/{r['cosine']} ({r['cheap']}) | {mapped} | {drop} |"
                         f"{vendor} {'; '.join(s['marks'])} |")
        return "\n".join(lines)

    def markdown(self) -> str:
        scheme, images = self.scheme, self.images
        intro = (f"Each layer quantized alone under {self.target}'s scheme ({scheme['weights']} symmetric INT8 "
                 f"weights, {scheme['activations']} activations, ranges by **{self.method}** from "
                 f"{images['ranges']} calibration images), the rest in float, emulated in ONNX Runtime. MSE, SNR "
                 f"and cosine compare the outputs with FP32 on {images['metrics']} calibration images (boxes in "
                 f"units of the input size, scores as they are); the top layers by those three (and every quantized "
                 f"decode-head layer) are also scored by mAP50-95 on {images['map']} evaluation images, and those "
                 f"come first, ordered by their mAP drop "
                 f"(the metric that decides; YOLOv6's partial PTQ). Rank 1 is the most sensitive.")
        summary = (f"FP32 ONNX on those images: {self.fp32_map50_95:.2f} mAP50-95; every layer this target "
                   f"quantizes, emulated: {self.all_int8_map50_95:.2f} (drop "
                   f"{self.fp32_map50_95 - self.all_int8_map50_95:.2f}). Decode head: "
                   f"{'quantized on this target' if self.head_quantized else 'in float (not ranked)'}.")
        parts = [f"# edgeq analyze: {Path(self.model).name} on {self.target}", "", intro, "", summary, ""]
        special = []
        if self.head_layers:
            special.append(f"the decode head's {len(self.head_layers)} layers stay in float (the detached head)")
        if self.float_layers:
            special.append(f"{len(self.float_layers)} layer(s) the target keeps out of INT8 already: "
                           + ", ".join(f"`{n}` ({why})" for n, why in self.float_layers.items()))
        if self.keep_float:
            special.append("kept float by --keep-float (not ranked): " + ", ".join(f"`{n}`" for n in self.keep_float))
        if special:
            parts += ["Already treated specially: " + "; ".join(special) + ".", ""]
        if self.toolkit:
            t = self.toolkit
            parts += [f"Toolkit cosine: {t['tool']}, {t['metric']}, on {t['images']} calibration image(s), the "
                      "worst of the ops the toolkit runs for the layer: the vendor's own view, where fused ops and "
                      "its requantization are what the chip runs; a layer low there and not in the emulation "
                      "is worth a --keep-float trial.", ""]
        timings = ", ".join(f"{k} {v:.1f} s" for k, v in self.timings_s.items())
        parts += [self.table(), "", ("Keep the top layers in float with `--keep-float NAME,NAME` or let "
                                     f"`edgeq export --max-drop X` search in this order. Timings: {timings}"), ""]
        return "\n".join(parts)

    def plot(self, path: Path) -> None:
        """The most sensitive layers, one row each: SNR, 1 - cosine and MSE (log scales, longer = more
        sensitive) and the mAP drop where measured; layers the target already treats specially in orange."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import numpy as np

        rows = self.layers[:TOP_PLOTTED]
        if not rows:
            return
        names = [f"{s['rank']}. {_short(s['name'])}" for s in rows]
        colours = ["#dd8a2b" if s["marks"] else "#2b6cb0" for s in rows]
        floor = max(s["snr_db"] for s in rows) + 1.0  # the least sensitive row plotted, plus 1 dB
        panels = [(f"SNR loss (dB below {floor:.0f} dB)", [floor - s["snr_db"] for s in rows], False),
                  ("1 - cosine (log)", [max(1.0 - s["cosine"], 1e-12) for s in rows], True),
                  ("MSE (log)", [max(s["mse"], 1e-16) for s in rows], True),
                  ("mAP50-95 drop, this layer alone (points)",
                   [s["drop_map50_95"] if s["drop_map50_95"] is not None else np.nan for s in rows], False)]
        fig, axes = plt.subplots(1, 4, figsize=(16, 0.32 * len(rows) + 1.6), sharey=True)
        for ax, (title, values, log) in zip(axes, panels):
            ax.barh(names, values, color=colours)
            if log:
                from matplotlib.ticker import LogLocator, NullFormatter

                ax.set_xscale("log")
                ax.xaxis.set_major_locator(LogLocator(numticks=4))
                ax.xaxis.set_minor_formatter(NullFormatter())
            ax.set_title(title, fontsize=9)
            ax.grid(axis="x", alpha=0.3)
        axes[0].invert_yaxis()
        axes[0].tick_params(axis="y", labelsize=7)
        fig.suptitle(f"{Path(self.model).name} on {self.target}: the {len(rows)} most sensitive layers "
                     f"(orange: already treated by the head or the rule tables)", fontsize=10)
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)


def _short(name: str, width: int = 42) -> str:
    return name if len(name) <= width else "..." + name[-(width - 3):]
