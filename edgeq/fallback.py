"""The fallback policy, in one place: which findings stop an export, and how the refusal is worded.

Backends only report findings (rule rows with a severity); this module alone decides. An `error` always stops
the export. A `fallback` (layers that run off the accelerator: Edge TPU ops on the host CPU, DLA layers on the
Jetson's GPU) stops it unless fallback is allowed, by the user's flag or else by the target's profile default.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from edgeq.errors import EdgeqError
from edgeq.rules import Finding, Severity

ALLOW_FLAG = "--allow-fallback"
REFUSE_FLAG = "--no-fallback"


@dataclass(frozen=True)
class FallbackPolicy:
    """Whether layers may leave the accelerator for this export, and why (the flag as the user typed it)."""

    target: str
    allowed: bool
    fallback_to: str  # where such layers run: "the host CPU", "the GPU"
    flag: str | None = None  # the option the user passed (an alias is echoed as typed); None: the default

    def blocking(self, findings: Iterable[Finding]) -> list[Finding]:
        return [f for f in findings if f.severity is Severity.ERROR or
                (f.severity is Severity.FALLBACK and not self.allowed)]

    def enforce(self, findings: Iterable[Finding], where: str = "") -> None:
        """Raise the one-line refusal for the first blocking finding; return quietly when nothing blocks."""
        blocking = self.blocking(findings)
        if not blocking:
            return
        first = blocking[0]
        more = f" (and {len(blocking) - 1} more, listed above)" if len(blocking) > 1 else ""
        hint = ""
        if first.severity is Severity.FALLBACK:
            hint = (f" or drop {self.flag} to let those layers run on {self.fallback_to}" if self.flag else
                    f" or pass {ALLOW_FLAG} to let those layers run on {self.fallback_to}")
        prefix = f"{self.target}: {where + ': ' if where else ''}{first.where}"
        raise EdgeqError(f"{prefix}: {first.message}{more}", first.fix + hint)
