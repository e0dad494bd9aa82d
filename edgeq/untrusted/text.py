"""A user's text file (label lines, image lists, class lists, YAML) read in one place, so every way reading it
can fail is one line naming the file: a folder where a file should be, no permission, far too big, not UTF-8."""

from __future__ import annotations

from pathlib import Path

from edgeq.errors import EdgeqError

MAX_BYTES = 1 << 20


def read_text(path: Path, what: str, fix: str, limit: int = MAX_BYTES) -> str:
    """A user's text file as str: refused in one line when it is a folder, unreadable, over `limit` bytes or
    not UTF-8 (a BOM is allowed)."""
    path = Path(path)
    if path.is_dir():
        raise EdgeqError(f"{what} '{path}' is a folder, not a file", fix)
    try:
        with path.open("rb") as f:
            raw = f.read(limit + 1)
    except OSError as exc:
        raise EdgeqError(f"cannot read {what} '{path}' ({exc.strerror or type(exc).__name__})", fix) from None
    if len(raw) > limit:
        raise EdgeqError(f"{what} '{path}' is over {limit:,} bytes, too big for what it should hold", fix)
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise EdgeqError(f"{what} '{path}' is not UTF-8 text (byte {exc.start} is 0x{raw[exc.start]:02x})",
                         "save it as UTF-8") from None
