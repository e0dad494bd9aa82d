"""How Ultralytics' exporter makes a target's INT8 file, as profile data (no Ultralytics import here)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


class UltralyticsExport(BaseModel):
    """One target's `yolo export` for the baseline row. `quantize=8`, the checkpoint, `imgsz`, `data` and
    `split` are always passed; `args` adds the format's own (e.g. a DLA device)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: str  # yolo export format=
    args: dict[str, Any] = {}
    artifact: str  # glob, relative to the checkpoint's folder, of the file that is scored and shipped
    precision: str  # what the file holds, as a Precision label ("int8+fp32-head", "int8")
    needs_modules: tuple[str, ...] = ()  # what the format imports: absent means skipped, with the install line
    needs_binaries: tuple[str, ...] = ()  # programs it runs (Ultralytics would apt-get them): absent means skipped
    install: str = ""  # the line that installs what it needs
    note: str = ""  # what Ultralytics' export does differently, in a few words

    def key(self) -> tuple:
        """Targets whose Ultralytics export is the same file (TFLite INT8 for the CPU and for NXP) share one."""
        return self.format, tuple(sorted((k, str(v)) for k, v in self.args.items()))
