"""The package import graph (read with ``ast``, function-level imports included) has the shape
docs/design.md describes: the core imports nothing else of the project, the simulator is
self-contained (never imports ``llamaswap.fidelity``), fidelity is a leaf only its CLI and
``bench/`` use, and no two packages import each other, directly or through others."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROJECT = ("llamaswap", "sim", "eval")
PACKAGES = (
    "llamaswap.core",
    "llamaswap.config",
    "llamaswap.daemon",
    "llamaswap.record",
    "llamaswap.fidelity",
    "sim",
    "eval",
)


def node_of(module: str) -> str | None:
    """The graph node of a dotted module: its package, or a top-level ``llamaswap.X`` module."""
    for package in PACKAGES:
        if module == package or module.startswith(package + "."):
            return package
    parts = module.split(".")
    if parts[0] == "llamaswap":
        return ".".join(parts[:2]) if len(parts) > 1 else "llamaswap"
    return None


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def is_module(name: str) -> bool:
    base = ROOT.joinpath(*name.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def imports(path: Path) -> set[str]:
    """Every project module ``path`` imports, at any depth of the file; a string constant that is
    a dotted module name counts too (``llamaswap.cli`` imports its sub-commands by name)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    out: set[str] = set()
    package = module_name(path).rsplit(".", 1)[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                base = f"{base}.{node.module}" if node.module else base
            out.add(base)
            out |= {f"{base}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and "." in node.value:
            out.add(node.value)  # a dotted module name, not a bare word like "sim"
    return {m for m in out if m.split(".")[0] in PROJECT and is_module(m)}


def graph() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = defaultdict(set)
    for top in PROJECT:
        for path in sorted((ROOT / top).rglob("*.py")):
            source = node_of(module_name(path))
            assert source is not None, path
            for target in map(node_of, imports(path)):
                if target is not None and target != source:
                    edges[source].add(target)
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Every cycle found by a depth-first walk (empty: the graph is a DAG)."""
    found: list[list[str]] = []
    state: dict[str, int] = {}

    def walk(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                found.append([*path[path.index(nxt) :], nxt])
            elif nxt not in state:
                walk(nxt, [*path, nxt])
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            walk(node, [node])
    return found


def test_no_import_cycles_between_packages() -> None:
    assert cycles(graph()) == []


def test_the_core_imports_nothing_else_of_the_project() -> None:
    assert graph().get("llamaswap.core", set()) == set()


def test_the_simulator_does_not_import_fidelity_or_the_daemon() -> None:
    assert not graph()["sim"] & {"llamaswap.fidelity", "llamaswap.daemon"}


def test_fidelity_is_a_leaf_used_only_by_its_cli() -> None:
    users = {source for source, targets in graph().items() if "llamaswap.fidelity" in targets}
    assert users == {"llamaswap.cli"}  # and bench/ scripts, which are not packages


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
