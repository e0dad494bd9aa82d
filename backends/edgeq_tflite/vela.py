"""Arm's Vela compiler for Ethos-U NPUs (U55, U65 as in NXP's i.MX93, U85): run it on the full-integer .tflite,
parse its report.

Vela (`ethos-u-vela`, numpy and flatbuffers only) is part of `edgeq[tflite]` and runs here, so every `ethos-u`
export compiles: `<name>_vela.tflite` (the NPU part as one `ethos-u` custom op, what the device runs) lands next
to the input. It runs as `python -m ethosu.vela` in a child process (its log kept, a timeout, a crash in its C++
core cannot take edgeq down). What it prints is the authority on placement: which ops it left on the CPU, with
its reason; its summary CSV gives the *estimated* inference time (its performance model at the system config's
clock, not a measurement), SRAM and off-chip memory and MACs.
"""

from __future__ import annotations

import csv
import difflib
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

from edgeq.plugin import EdgeqError, StageError

INSTALL = "pip install 'edgeq[tflite]' (it brings ethos-u-vela 5.2.0: numpy and flatbuffers only)"
_WARNING = re.compile(r"^Warning \(supported operators\) operator: (\S+), ofm: '(.*)'$")
_PLACED = re.compile(r"^\s+(CPU|NPU): (\S+) = (.*?) \(outputs \[([\d, ]*)\]\)\s*$", re.MULTILINE)
_SRAM_EXCEEDED = re.compile(r"^Warning: SRAM target for arena memory area exceeded.*$", re.MULTILINE)


@dataclass(frozen=True)
class VelaSettings:
    """The device as Vela sees it: accelerator (MACs), system config (clock, buses) and memory mode (where
    weights, the arena and the cache live), from `config` (default: Vela's own Arm/vela.ini)."""

    accelerator_config: str
    system_config: str
    memory_mode: str
    config: Path | None = None
    optimise: str = "Performance"
    sram_kib: float | None = None  # the device's SRAM for the NPU; None: trust the memory mode

    def config_file(self) -> Path:
        if self.config is not None:
            return Path(self.config)
        import ethosu

        return Path(next(iter(ethosu.__path__))) / "config_files" / "Arm" / "vela.ini"

    def arguments(self) -> list[str]:
        return ["--accelerator-config", self.accelerator_config, "--config", str(self.config_file()),
                "--system-config", self.system_config, "--memory-mode", self.memory_mode,
                "--optimise", self.optimise]


@dataclass
class VelaReport:
    """What Vela said about one file. Times and memory are Vela's estimates (its performance model)."""

    accelerator_config: str
    system_config: str
    memory_mode: str
    clock_mhz: float | None = None
    inference_ms: float | None = None
    inferences_per_s: float | None = None
    npu_cycles: int | None = None
    sram_kib: float | None = None
    off_chip_kib: float | None = None
    off_chip: str = ""  # DRAM or off-chip flash, whichever the system config's second port is
    macs: int | None = None
    npu_ops: int = 0
    cpu_ops: list[dict] = field(default_factory=list)  # {op, name, reason}
    sram_exceeded: str = ""  # Vela's warning when the arena did not fit its SRAM target

    def to_dict(self) -> dict:
        return {"figure": "estimated (Vela's performance model, not a measurement)", **asdict(self)}

    def summary(self) -> str:
        placed = f"{self.npu_ops}/{self.npu_ops + len(self.cpu_ops)} ops on the NPU"
        if self.cpu_ops:
            placed += f", {len(self.cpu_ops)} on the CPU ({', '.join(sorted({c['op'] for c in self.cpu_ops}))})"
        return (f"Vela {self.accelerator_config} {self.system_config} @ {self.clock_mhz:.0f} MHz, "
                f"{self.memory_mode}: {placed}; estimated {self.inference_ms:.2f} ms "
                f"({self.inferences_per_s:.1f} inferences/s), SRAM {self.sram_kib:.0f} KiB, "
                f"{self.off_chip or 'off-chip'} {self.off_chip_kib:.0f} KiB, {self.macs / 1e9:.2f} GMACs")


def available() -> bool:
    from edgeq.plugin import importable

    return importable("ethosu.vela")


def accelerator_configs() -> list[str]:
    from ethosu.vela.architecture_features import Accelerator

    return [a.value for a in Accelerator]


def config_sections(config: Path) -> dict[str, list[str]]:
    """System_Config and Memory_Mode names a Vela .ini defines."""
    from configparser import ConfigParser

    parser = ConfigParser()
    parser.read(config)
    found: dict[str, list[str]] = {"System_Config": [], "Memory_Mode": []}
    for section in parser.sections():
        kind, _, name = section.partition(".")
        if kind in found:
            found[kind].append(name)
    return found


def check_settings(settings: VelaSettings) -> None:
    """One line for a name Vela does not know, with the close matches; nothing is converted before this passes."""
    if not available():
        raise EdgeqError("target 'ethos-u' needs Arm's Vela compiler (module ethosu.vela), which is not installed",
                         INSTALL)
    _known("options.accelerator_config", settings.accelerator_config, accelerator_configs(), "Vela 5.2")
    config = settings.config_file()
    if not config.is_file():
        raise EdgeqError(f"options.vela_config '{config}' is not a file",
                         "name a Vela .ini (or leave it out for Vela's own Arm/vela.ini)")
    sections = config_sections(config)
    _known("options.system_config", settings.system_config, sections["System_Config"], config.name)
    _known("options.memory_mode", settings.memory_mode, sections["Memory_Mode"], config.name)


def _known(key: str, value: str, choices: list[str], where: str) -> None:
    if value in choices:
        return
    close = difflib.get_close_matches(value, choices, n=3, cutoff=0.5)
    hint = f"did you mean {' or '.join(close)}?" if close else f"use one of {', '.join(choices)}"
    raise EdgeqError(f"{key} '{value}' is not one {where} knows", f"{hint} (all: {', '.join(choices)})")


def command(tflite: Path, settings: VelaSettings, out_dir: Path) -> list[str]:
    return [sys.executable, "-m", "ethosu.vela", str(tflite), *settings.arguments(), "--show-cpu-operations",
            "--output-dir", str(out_dir)]


def parse(text: str, summary_csv: Path | None, settings: VelaSettings) -> VelaReport:
    """Vela's stdout (placement, reasons) and its summary CSV (estimates)."""
    report = VelaReport(settings.accelerator_config, settings.system_config, settings.memory_mode)
    # ofm name -> "OP: reason"; a warning's reason runs to the next blank line or the next warning of any kind
    # (Vela may print its own "Warning: Consider accessing the configuration ..." right under a reason)
    reasons, current = {}, None
    for line in text.splitlines():
        if m := _WARNING.match(line):
            current = m.group(2)
            reasons[current] = f"{m.group(1)}:"
        elif current is not None and line.strip() and not line.startswith("Warning"):
            reasons[current] += " " + line.strip().removeprefix("Reason: ")
        else:
            current = None
    for m in _PLACED.finditer(text):
        if m.group(1) == "NPU":
            report.npu_ops += 1
        else:
            name = m.group(3)
            reason = reasons.get(name, "")
            report.cpu_ops.append({"op": reason.split(":")[0] or m.group(2), "name": name,
                                   "reason": reason.partition(": ")[2] or "placed on the CPU by Vela"})
    if exceeded := _SRAM_EXCEEDED.search(text):
        report.sram_exceeded = exceeded.group(0)
    if summary_csv is not None and summary_csv.is_file():
        with summary_csv.open() as f:
            row = next(csv.DictReader(f))
        number = {k: float(v) for k, v in row.items() if _is_number(v)}
        report.clock_mhz = number["core_clock"] / 1e6
        report.inference_ms = number["inference_time"] * 1e3
        report.inferences_per_s = number["inferences_per_second"]
        report.npu_cycles = int(number.get("cycles_npu", 0))
        report.sram_kib = number["sram_memory_used"]
        off = {"DRAM": number.get("dram_memory_used", 0.0),
               "off-chip flash": number.get("off_chip_flash_memory_used", 0.0)}
        report.off_chip = max(off, key=off.get)
        report.off_chip_kib = off[report.off_chip]
        report.macs = int(number["nn_macs"])
    return report


def _is_number(value: str) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


def compile_model(tflite: Path, settings: VelaSettings, work: Path, keep_log: Path,
                  timeout_s: int) -> tuple[Path, Path, VelaReport]:
    """Run Vela; returns `<name>_vela.tflite` and its log next to `tflite`, and the parsed report. A failure, or an
    arena that does not fit the device's SRAM, is one StageError line with the log kept."""
    from edgeq_tflite.backend import full_integer_problems
    from edgeq_tflite.graph import read_tflite

    graph = read_tflite(tflite)
    kind = "int16" if graph.inputs and graph.inputs[0].dtype == "int16" else "int8"  # 16x8 or INT8
    if problems := full_integer_problems(graph, kind):
        raise EdgeqError(f"'{tflite.name}' is not a full-integer TFLite ({problems[0]}): Vela would leave every "
                         "float op on the CPU", "give Vela the full-integer file edgeq's ethos-u export converts "
                         "(int8 weights and activations or 16x8, integer I/O)")
    out_dir = work / "vela"
    out_dir.mkdir(parents=True, exist_ok=True)
    cmd = command(tflite, settings, out_dir)
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)
        text, code = proc.stdout + proc.stderr, proc.returncode
    except subprocess.TimeoutExpired:
        text, code = f"timed out after {timeout_s} s", None
    log_text = f"$ {shlex.join(cmd)}\n{text}"
    compiled = out_dir / f"{tflite.stem}_vela.tflite"
    if code != 0 or not compiled.exists():
        _keep(keep_log, log_text)
        last = next((ln for ln in reversed(text.strip().splitlines()) if ln.strip()), "no output")
        raise StageError("vela", f"{tflite.name}: {last[:240]}", str(keep_log))
    csvs = sorted(out_dir.glob(f"{tflite.stem}_summary_*.csv"))
    report = parse(text, csvs[0] if csvs else None, settings)
    too_big = report.sram_exceeded or (
        settings.sram_kib is not None and report.sram_kib is not None and report.sram_kib > settings.sram_kib
        and f"Vela used {report.sram_kib:.0f} KiB of SRAM, the device has {settings.sram_kib:g} KiB")
    if too_big:
        _keep(keep_log, log_text)
        raise EdgeqError(f"{tflite.name} does not fit memory mode {settings.memory_mode} on "
                         f"{settings.accelerator_config}: {too_big} (log: {keep_log})",
                         "pick a memory mode that puts the arena off-chip (Dedicated_Sram / Shared_Sram), a smaller "
                         "--imgsz, or --set options.optimise=Size")
    final = tflite.with_name(compiled.name)
    shutil.move(str(compiled), final)
    log_file = tflite.with_name(f"{compiled.stem}.log")
    log_file.write_text(log_text)
    return final, log_file, report


def _keep(keep_log: Path, text: str) -> None:
    keep_log.parent.mkdir(parents=True, exist_ok=True)
    keep_log.write_text(text)
