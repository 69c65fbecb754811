"""The package's structure: no import circle, pure modules stay pure, functions fit a screen.

Imports are read with ``ast`` from the source (module-level and function-level imports
alike: a lazy import inside a function still makes a circle), so nothing is executed.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "sercseg_tf"
# Longest function allowed in the modules a newcomer reads first (loop, LOOCV, report).
MAX_FUNCTION_LINES = 80
LENGTH_CHECKED = ("training", "loocv.py", "report.py", "reporting")
# Modules that must not import TensorFlow or Keras (they are used without it).
PURE_MODULES = ("features", "metrics", "labels", "layout", "config", "paper_values",
                "formats", "visualize", "atomic_io", "cli", "fault_points", "run_lock")


def _module_name(path: pathlib.Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules() -> dict[str, pathlib.Path]:
    return {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _imports(path: pathlib.Path, name: str, known: set[str]) -> set[str]:
    """Package modules imported anywhere in ``path`` (``from x import y`` may name a module)."""
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1]
                                + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)
    return {m for m in found if m in known and m != name}


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    known = set(mods)
    return {name: _imports(path, name, known) for name, path in mods.items()}


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_cycle_finder_finds_a_planted_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}
    assert _find_cycle(graph) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_circle():
    graph = _graph()
    assert "sercseg_tf.training.loop" in graph  # the walk sees the package
    assert _find_cycle(graph) is None


@pytest.mark.parametrize("module", PURE_MODULES)
def test_pure_modules_do_not_import_tensorflow(module):
    tree = ast.parse((PACKAGE / f"{module}.py").read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0])
    assert not names & {"tensorflow", "keras"}, module


def _long_functions() -> list[str]:
    out = []
    for target in LENGTH_CHECKED:
        root = PACKAGE / target
        for path in sorted([root] if root.is_file() else root.rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    continue
                length = node.end_lineno - node.lineno + 1
                reason = "Long because" in (ast.get_docstring(node) or "")
                if length > MAX_FUNCTION_LINES and not reason:
                    out.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name} "
                               f"({length} lines)")
    return out


def test_functions_fit_on_a_screen():
    assert _long_functions() == []
