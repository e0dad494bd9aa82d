"""The one loader for every YAML a user hands edgeq (data.yaml, recipes, `--set` values, model YAMLs), and,
through `edgeq.untrusted.ultralytics_io`, every YAML Ultralytics reads on edgeq's behalf.

PyYAML's safe loader runs no code, but it still lets a small file exhaust the machine: aliases share one object
that every consumer walks again (`names: *a9` of a "billion laughs" file is a billion strings to Ultralytics'
class-name check), deep nesting ends in RecursionError, and a huge integer literal raises ValueError. So, before
anything is built, the event stream is checked: the file's size, the nesting depth (aliases counted where they
expand), no tags at all (`!!python/...`, `!custom`; plain YAML is all edgeq needs), and a node budget that counts
each alias as the whole subtree it stands for. The result is then rebuilt as a plain tree, so no consumer sees a
shared (aliased) object: its size is the budget's, not the alias graph's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from edgeq.errors import EdgeqError
from edgeq.untrusted.text import read_text

MAX_BYTES = 1 << 20  # the largest recipe or data.yaml seen is a few kB; a class list of 10,000 names is ~200 kB
MAX_DEPTH = 64  # Ultralytics' deepest config nests 4 levels
MAX_NODES = 200_000  # scalars and collections after alias expansion


def load_text(text: str, source: str, fix: str = "fix the YAML") -> Any:
    """Parse `text` (named `source` in errors) under the limits above; the result is a tree of plain dicts,
    lists and scalars."""
    if len(text) > MAX_BYTES:
        raise EdgeqError(f"{source} is {len(text):,} characters, over edgeq's {MAX_BYTES:,} for a YAML file",
                         "pass the file edgeq asks for (a data.yaml, a recipe, a model YAML), not a data dump")
    try:
        _vet_events(text, source, fix)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise EdgeqError(f"{source} is not valid YAML ({_first_line(exc)})", fix) from None
    except ValueError as exc:  # a literal the constructor cannot hold (a 5,000-digit integer, a bad date)
        raise EdgeqError(f"{source} holds a value YAML cannot represent here ({_first_line(exc)})", fix) from None
    return _plain_tree(data)


def load_file(path: Path, what: str, fix: str = "fix the YAML") -> Any:
    """`load_text` of a file, with every way reading it can fail (a folder, unreadable, too big, not UTF-8)
    named as `<what> '<path>' ...`."""
    return load_text(read_text(path, what, fix), f"{what} '{path}'", fix)


def load_mapping(path: Path, what: str, fix: str = "fix the YAML") -> dict[str, Any]:
    """`load_file` for files that hold `key: value` lines (an empty file is an empty mapping)."""
    data = load_file(path, what, fix)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise EdgeqError(f"{what} '{path}' does not hold a mapping of keys (it holds a {type(data).__name__})",
                         "write it as 'key: value' lines")
    return data


def _vet_events(text: str, source: str, fix: str) -> None:
    """Walk the parser's events (PyYAML's parser is a state machine, so a deep file cannot exhaust the stack
    here) and refuse what would be unsafe to compose."""
    done: dict[str, tuple[int, int]] = {}  # anchor -> (nodes, height) of the finished node it names
    open_nodes: list[list] = []  # per open collection: [anchor, nodes in its subtree, its height]
    total = 0

    def place(nodes: int, height: int, mark) -> None:
        """A finished node of `nodes` values and `height` levels, under the innermost open collection."""
        if len(open_nodes) + height > MAX_DEPTH:
            raise EdgeqError(f"{source} nests deeper than {MAX_DEPTH} levels (line {mark.line + 1})", fix)
        if open_nodes:
            parent = open_nodes[-1]
            parent[1] += nodes
            parent[2] = max(parent[2], height + 1)

    def count(nodes: int, mark) -> None:
        nonlocal total
        total += nodes
        if total > MAX_NODES:
            raise EdgeqError(f"{source} expands to over {MAX_NODES:,} values (line {mark.line + 1}: aliases "
                             "repeat what their anchors hold)", "write the values out, without alias chains")

    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        tag = getattr(event, "tag", None)
        if tag is not None:
            raise EdgeqError(f"{source} uses the YAML tag '{tag}' (line {event.start_mark.line + 1}); edgeq reads "
                             "plain YAML only", "remove the tag")
        if isinstance(event, yaml.ScalarEvent):
            count(1, event.start_mark)
            place(1, 0, event.start_mark)
            if event.anchor:
                done[event.anchor] = (1, 0)
        elif isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
            count(1, event.start_mark)
            if len(open_nodes) + 1 > MAX_DEPTH:
                raise EdgeqError(f"{source} nests deeper than {MAX_DEPTH} levels "
                                 f"(line {event.start_mark.line + 1})", fix)
            open_nodes.append([event.anchor, 1, 1])
        elif isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
            anchor, nodes, height = open_nodes.pop()
            place(nodes, height, event.start_mark)
            if anchor:
                done[anchor] = (nodes, height)
        elif isinstance(event, yaml.AliasEvent):
            if event.anchor not in done:  # unknown, or an alias inside its own anchor (an infinite tree)
                raise EdgeqError(f"{source} uses the alias '*{event.anchor}' inside or before its anchor "
                                 f"(line {event.start_mark.line + 1})", fix)
            nodes, height = done[event.anchor]
            count(nodes, event.start_mark)
            place(nodes, height, event.start_mark)


def _plain_tree(value: Any) -> Any:
    """The loaded value with every alias replaced by its own copy (bounded by the vetted budget and depth)."""
    if isinstance(value, dict):
        return {_plain_tree(k): _plain_tree(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain_tree(v) for v in value]
    return value


def _first_line(exc: Exception) -> str:
    """PyYAML's problem and where it is, without its echo of the text; other errors' first sentence."""
    mark = getattr(exc, "problem_mark", None)
    if getattr(exc, "problem", None) and mark is not None:
        context = f"{exc.context}, " if getattr(exc, "context", None) else ""
        return f"{context}{exc.problem} at line {mark.line + 1}, column {mark.column + 1}"
    return " ".join(str(exc).split()).split(";")[0][:160]
