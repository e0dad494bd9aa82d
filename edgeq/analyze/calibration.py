"""`calibration.method`: which activation-range method a target's quantizer uses for one export.

A named method must be one the target offers (its scheme says how: natively, or through ranges edgeq supplies);
`default` is the quantizer's own choice; `auto` quantizes the whole model with each offered method in edgeq's
emulation of the target's scheme and keeps the one with the highest output SNR on the calibration batch.
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
    scores: list[dict] = field(default_factory=list)  # auto: every method's emulated output error

    def describe(self) -> str:
        picked = f"auto -> {self.used}" if self.requested == "auto" else self.used
        return f"{picked} ({self.how})"


def choose_method(job: Job, plan: QuantPlan | None, requested: str, analysis_factory, log) -> CalibrationChoice:
    """Resolve `requested` for this job; `analysis_factory()` builds the LayerAnalysis only when `auto` needs it."""
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
        scores = analysis_factory().method_scores(offered, plan.head_quantized, job.keep_float)
        best = max(scores, key=lambda s: s.snr_db)
        for s in scores:
            log(f"calibration {s.method}: emulated output SNR {s.snr_db:.1f} dB, cosine {s.cosine:.5f}")
        return CalibrationChoice(requested, best.method, scheme.methods[best.method], [asdict(s) for s in scores])
    if requested not in offered:
        why = f" ({scheme.not_offered})" if scheme.not_offered else ""
        raise EdgeqError(f"target {job.target} does not offer calibration method '{requested}'{why}",
                         f"set calibration.method to one of: default, auto, {', '.join(offered)}")
    return CalibrationChoice(requested, requested, scheme.methods[requested])
