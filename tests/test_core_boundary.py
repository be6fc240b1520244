"""The core must stay sans-IO: scan every module under llamaswap/core for forbidden imports."""

import ast
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[1] / "llamaswap" / "core"
FORBIDDEN_MODULES = {"asyncio", "simpy", "aiohttp", "subprocess", "threading", "socket", "signal"}
FORBIDDEN_CALLS = {("time", "time"), ("time", "monotonic"), ("time", "perf_counter")}


def _violations(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
            if node.module in {"time", "datetime"}:
                found += [f"from {node.module} import {a.name}" for a in node.names]
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            if (node.value.id, node.attr) in FORBIDDEN_CALLS or (
                node.attr == "now" and node.value.id == "datetime"
            ):
                found.append(f"{node.value.id}.{node.attr}")
            continue
        else:
            continue
        found += [n for n in names if n.split(".")[0] in FORBIDDEN_MODULES]
    return found


@pytest.mark.parametrize("path", sorted(CORE.glob("*.py")), ids=lambda p: p.name)
def test_core_module_is_sans_io(path: Path) -> None:
    assert _violations(path) == []


def test_scanner_catches_forbidden_imports(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text(
        "import asyncio\nfrom subprocess import run\nimport time\nx = time.monotonic()\n"
    )
    assert _violations(bad) == ["asyncio", "subprocess", "time.monotonic"]
