"""`calibration.method`: which activation-range method a target's quantizer uses for one export.

A named method must be one the target offers (its scheme says how: natively, or through ranges edgeq supplies);
`default` is the quantizer's own choice; `auto`, in an export, builds the deployable artifact once with the default
and once per offered method and keeps the one whose outputs are closest to FP32 (SNR) on the anchors FP32 is
confident about; in `edgeq analyze`, where nothing is built, it emulates each method on the whole model instead.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from edgeq.backend import Job, QuantPlan
from edgeq.errors import EdgeqError


@dataclass
class CalibrationChoice:
    requested: str
    used: str  # a method name, or "default"
    how: str  # how the target's quantizer gets it, for the report
    scores: list[dict] = field(default_factory=list)  # auto: every method's output error
    scored_by: str = ""  # auto: "real builds" (export) or "emulation" (analyze)
    noise: str = ""  # auto in an export: whether the winner's lead over the runner-up is more than the images' noise

    def describe(self) -> str:
        picked = f"auto -> {self.used}" if self.requested == "auto" else self.used
        return f"{picked} ({self.how})"


def choose_method(job: Job, plan: QuantPlan | None, requested: str, analysis_factory, log,
                  try_methods=None) -> CalibrationChoice:
    """Resolve `requested` for this job. For `auto`, `try_methods(methods)` (an export: one real build per method,
    scored on the anchors FP32 is confident about) gives the scores; without it (analyze) the LayerAnalysis from
    `analysis_factory()` emulates each method on the whole model."""
    if plan is None:
        if requested != "default":
            raise EdgeqError(f"target {job.target} offers no choice of calibration method",
                             "leave calibration.method at default")
        return CalibrationChoice(requested, "default", "the quantizer's default")
    scheme = plan.scheme
    offered = scheme.offered()
    if requested == "default":
        return CalibrationChoice(requested, "default", scheme.default_method)
    if requested == "auto":
        if len(offered) == 1:
            return CalibrationChoice(requested, offered[0], scheme.methods[offered[0]])
        # real builds can try the quantizer's own default too; the emulation has no faithful copy of it
        scored_by = "real builds, confident anchors" if try_methods else "emulation, all anchors"
        scores = try_methods(("default", *offered)) if try_methods else \
            analysis_factory().method_scores(offered, plan.head_quantized, job.keep_float)
        best = max(scores, key=lambda s: s.snr_db)
        for s in scores:
            log(f"calibration {s.method}: output SNR {s.snr_db:.1f} dB, cosine {s.cosine:.5f} ({scored_by})")
        how = scheme.default_method if best.method == "default" else scheme.methods[best.method]
        return CalibrationChoice(requested, best.method, how, [asdict(s) for s in scores], scored_by)
    if requested not in offered:
        why = f" ({scheme.not_offered})" if scheme.not_offered else ""
        raise EdgeqError(f"target {job.target} does not offer calibration method '{requested}'{why}",
                         f"set calibration.method to one of: default, auto, {', '.join(offered)}")
    return CalibrationChoice(requested, requested, scheme.methods[requested])
