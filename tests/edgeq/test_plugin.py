"""The stable surface: families import only `edgeq.plugin`, and core names no target."""

import ast
import re
from pathlib import Path

import pytest

import edgeq.plugin

ROOT = Path(__file__).parents[2]
SHIPPED_FAMILIES = sorted((ROOT / "backends").glob("edgeq_*"))
# worker scripts run in a toolchain's interpreter and import the protocol's child module, not edgeq
PROTOCOL_MODULE = "edgeq_worker"


def _imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.append(node.module)
        elif isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
    return found


@pytest.mark.parametrize("family", SHIPPED_FAMILIES, ids=lambda p: p.name)
def test_families_import_only_the_plugin_surface_of_core(family):
    offending = {f"{path.relative_to(ROOT)}: {module}" for path in family.rglob("*.py")
                 for module in _imports(path) if module.split(".")[0] == "edgeq" and module != "edgeq.plugin"}
    assert not offending


def test_the_surface_exports_what_it_lists():
    assert all(hasattr(edgeq.plugin, name) for name in edgeq.plugin.__all__)
    documented = set(re.findall(r"\b[A-Za-z_]+\b", edgeq.plugin.__doc__))
    assert set(edgeq.plugin.__all__) <= documented


def _code_strings(path: Path) -> list[tuple[int, str]]:
    """String constants that are not documentation: no docstrings, no argparse help/epilog/description texts."""
    tree = ast.parse(path.read_text())
    skip: set[int] = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) and \
                isinstance(body[0].value, ast.Constant):
            skip.add(id(body[0].value))
        if isinstance(node, ast.keyword) and node.arg in ("help", "epilog", "description"):
            skip |= {id(n) for n in ast.walk(node.value)}
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id.endswith(("_EPILOG", "_HELP"))
                                                for t in node.targets):
            skip |= {id(n) for n in ast.walk(node.value)}
    return [(n.lineno, n.value) for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in skip]


def _core_dependencies() -> set[str]:
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return {re.split(r"[<>=!~\[ ]", requirement)[0].lower() for requirement in project["dependencies"]}


def test_core_names_no_target():
    """A target named after a runtime core itself runs (ONNX Runtime evaluates every ONNX model) is not a
    target name when core uses it: that word names core's own dependency."""
    from edgeq.backend import discover

    names = sorted(set(discover()) - _core_dependencies())
    assert names and "onnxruntime" in _core_dependencies()
    pattern = re.compile(r"\b(" + "|".join(map(re.escape, names)) + r")\b")
    found = [f"{path.relative_to(ROOT)}:{line}: {text[:60]!r}" for path in (ROOT / "edgeq").rglob("*.py")
             for line, text in _code_strings(path) if pattern.search(text)]
    assert not found
