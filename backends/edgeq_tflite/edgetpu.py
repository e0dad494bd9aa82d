"""Coral's edgetpu_compiler: run it when it is on PATH, parse its log; else leave the exact command behind.

The compiler ships only from Coral's package feed for Linux x86-64/ARM (not PyPI, not Debian), so on most
build hosts it is absent: the backend then writes `compile_edgetpu.sh` beside the full-integer .tflite.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path

from edgeq.plugin import StageError

COMPILER = "edgetpu_compiler"

_FIELDS = {
    "compiler_version": (r"Edge TPU Compiler version (\S+)", str),
    "on_chip_param_memory": (r"On-chip memory used for caching model parameters: (\S+)", str),
    "on_chip_param_memory_left": (r"On-chip memory remaining for caching model parameters: (\S+)", str),
    "off_chip_param_memory": (r"Off-chip memory used for streaming uncached model parameters: (\S+)", str),
    "edgetpu_subgraphs": (r"Number of Edge TPU subgraphs: (\d+)", int),
    "total_ops": (r"Total number of operations: (\d+)", int),
    "ops_on_edgetpu": (r"Number of operations that will run on Edge TPU: (\d+)", int),
    "ops_on_cpu": (r"Number of operations that will run on CPU: (\d+)", int),
}


def compiler_path() -> str | None:
    return shutil.which(COMPILER)


def compile_command(tflite: Path, out_dir: Path) -> list[str]:
    """`-s`: print the per-op mapping summary (what the report parses)."""
    return [COMPILER, "-s", "-o", str(out_dir), str(tflite)]


def write_script(tflite: Path) -> Path:
    """compile_edgetpu.sh beside the model: relative paths, so it works wherever the folder is copied."""
    script = tflite.parent / "compile_edgetpu.sh"
    lines = script.read_text().splitlines() if script.exists() else [
        "#!/bin/sh",
        "# Compile the full-integer models here for the Coral Edge TPU. edgetpu_compiler comes from Coral's",
        "# package feed (Linux x86-64 / ARM64): https://coral.ai/docs/edgetpu/compiler/",
        "# Each command writes <name>_edgetpu.tflite and <name>_edgetpu.log into this folder.",
        "set -e",
        'cd "$(dirname "$0")"',
    ]
    command = shlex.join(compile_command(Path(tflite.name), Path(".")))
    if command not in lines:
        lines.append(command)
    script.write_text("\n".join(lines) + "\n")
    script.chmod(0o755)
    return script


def parse_log(text: str) -> dict:
    """Summary figures and the per-operator status table of the compiler's `-s` output."""
    found = {}
    for key, (pattern, kind) in _FIELDS.items():
        m = re.search(pattern, text)
        if m:
            found[key] = kind(m.group(1))
    ops = []
    table = text.split("Operator", 1)[1] if re.search(r"^Operator\s+Count\s+Status", text, re.MULTILINE) else ""
    for line in table.splitlines()[1:]:
        m = re.match(r"^([A-Z0-9_]+)\s+(\d+)\s+(.+?)\s*$", line)
        if m:
            ops.append({"op": m.group(1), "count": int(m.group(2)), "status": m.group(3)})
    if ops:
        found["op_status"] = ops
    return found


def compile_model(tflite: Path, log_dir: Path, keep_log: Path, timeout_s: int) -> tuple[Path, dict]:
    """Run the compiler; returns the `_edgetpu.tflite` and the parsed figures, or StageError with the log."""
    cmd = compile_command(tflite, tflite.parent)
    log = log_dir / f"{tflite.stem}-edgetpu_compiler.log"
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)
        text, code = proc.stdout + proc.stderr, proc.returncode
    except subprocess.TimeoutExpired:
        text, code = f"timed out after {timeout_s} s", None
    log.write_text(f"$ {shlex.join(cmd)}\n{text}")
    compiled = tflite.with_name(f"{tflite.stem}_edgetpu.tflite")
    if code != 0 or not compiled.exists():
        keep_log.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(log, keep_log)
        last = next((ln for ln in reversed(text.strip().splitlines()) if ln.strip()), "no output")
        raise StageError("edgetpu-compile", f"{tflite.name}: {last[:200]}", str(keep_log))
    return compiled, parse_log(text)
