"""The import graph: the product never imports research/, serving never imports training/, training/ has no cycle.

Every import counts, also one inside a function (a lazy import still ties the modules together).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import REPO

PRODUCT = ("training", "models", "serving", "service.py")
SERVED = ("models", "serving", "service.py")  # what the images pack (bentofile.yaml)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _files(*roots: str) -> list[Path]:
    files = []
    for root in roots:
        path = REPO / root
        files += [path] if path.is_file() else sorted(path.rglob("*.py"))
    return files


def imports(path: Path) -> set[str]:
    """Every module ``path`` imports, by full name (``from a import b`` counts as ``a`` and ``a.b``)."""
    package = _module_name(path).rpartition(".")[0] if path.name != "__init__.py" else _module_name(path)
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolved against this module's package
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def _graph(root: str) -> dict[str, set[str]]:
    modules = {_module_name(path): path for path in _files(root)}
    return {name: {m for m in imports(path) if m in modules and m != name} for name, path in modules.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in graph[node]:
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


@pytest.mark.parametrize("root", PRODUCT)
def test_the_product_never_imports_research(root):
    offending = {
        str(path.relative_to(REPO)): sorted(m for m in imports(path) if m.split(".")[0] == "research")
        for path in _files(root)
    }
    assert not {path: names for path, names in offending.items() if names}


@pytest.mark.parametrize("root", SERVED)
def test_the_served_code_never_imports_training(root):
    offending = {
        str(path.relative_to(REPO)): sorted(m for m in imports(path) if m.split(".")[0] in ("training", "research"))
        for path in _files(root)
    }
    assert not {path: names for path, names in offending.items() if names}


def test_training_has_no_import_cycle():
    graph = _graph("training")
    assert {"training.data", "training.splits", "training.augment.rules"} <= set(graph)
    assert _cycles(graph) == []


def test_the_cycle_check_finds_a_cycle_and_lazy_imports():
    assert "training.report" in imports(REPO / "training/train.py")  # imported inside main()
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []
