"""The package's import graph: arrows between subpackages point one way (docs/architecture.md),
and no module imports itself back through others."""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

from conftest import REPO

PACKAGE = REPO / "flan_jax"
# subpackage -> what it may import (besides itself and flan_jax.errors); entry points
# (train, infer, eval, convert, tasks, catalog, demo) may import anything. `console` is
# what the entry points share (their quiet start-up).
ALLOWED = {
    "console": set(),
    "kernels": set(),
    "models": {"kernels"},
    "data": set(),
    "interop": {"models"},
    "training": {"models", "kernels", "data", "interop", "evaluation"},
    "evaluation": {"models", "data", "interop"},
}
ENTRY_POINTS = {"train", "infer", "eval", "convert", "tasks", "catalog", "demo"}


def _module(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> dict[str, set[str]]:
    """Module -> the flan_jax modules it imports (at any depth of its code)."""
    modules = {_module(p): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("flan_jax"):
                for alias in node.names:
                    full = f"{node.module}.{alias.name}"
                    found.add(full if full in modules else node.module)
            elif isinstance(node, ast.Import):
                found |= {a.name for a in node.names if a.name.startswith("flan_jax")}
        graph[name] = found - {name}
    return graph


def _area(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "flan_jax"


def _wrong_arrows(graph: dict[str, set[str]]) -> list[str]:
    wrong = []
    for module, imported in graph.items():
        area = _area(module)
        if area in ENTRY_POINTS or area in ("flan_jax", "errors"):
            continue
        if area not in ALLOWED:
            wrong.append(f"{module}: a new subpackage needs a row in ALLOWED")
            continue
        for target in imported:
            other = _area(target)
            if other not in (area, "errors", "flan_jax") and other not in ALLOWED[area]:
                wrong.append(f"{module} imports {target}")
    return wrong


def test_arrows_between_subpackages_point_one_way() -> None:
    assert _wrong_arrows(_imports()) == []


def test_no_import_cycles_between_modules() -> None:
    """Module-level and deferred imports alike: a cycle is a design to untangle."""
    graph = {m: {t for t in ts if t != "flan_jax"} for m, ts in _imports().items()}
    graphlib.TopologicalSorter(graph).prepare()  # raises CycleError naming the cycle


def test_the_guard_sees_a_wrong_arrow() -> None:
    graph = _imports()
    graph["flan_jax.models.t5"] = graph["flan_jax.models.t5"] | {"flan_jax.training.step"}
    assert _wrong_arrows(graph) == ["flan_jax.models.t5 imports flan_jax.training.step"]
