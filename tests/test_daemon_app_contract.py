"""``app.py`` talks to the daemon only through ``contract.Server`` and ``contract.Backend``.

mypy checks that ``Daemon`` and ``Runtime`` implement the Protocols; this checks the other side,
which mypy cannot: that the HTTP layer does not import the implementations, and that every
attribute it reads off the server or a backend is one the contract names (an ``Any`` escape or a
new ``self.server.runtime`` would otherwise slip through).
"""

from __future__ import annotations

import ast
from pathlib import Path

from llamaswap.daemon.contract import Backend, Server

APP = Path(__file__).resolve().parents[1] / "llamaswap" / "daemon" / "app.py"


def _members(protocol: type) -> set[str]:
    return {name for name in vars(protocol) if not name.startswith("_")}


def _is_server(node: ast.expr) -> bool:
    """``self.server`` or a local ``server`` bound to it."""
    if isinstance(node, ast.Name):
        return node.id == "server"
    return (
        isinstance(node, ast.Attribute)
        and node.attr == "server"
        and isinstance(node.value, ast.Name)
        and node.value.id == "self"
    )


def _is_backend(node: ast.expr) -> bool:
    """A local ``backend`` or ``(await <server>.current())``."""
    if isinstance(node, ast.Name):
        return node.id == "backend"
    return (
        isinstance(node, ast.Await)
        and isinstance(node.value, ast.Call)
        and isinstance(node.value.func, ast.Attribute)
        and node.value.func.attr == "current"
        and _is_server(node.value.func.value)
    )


def contract_violations(source: str) -> list[str]:
    tree = ast.parse(source)
    found: list[str] = []
    server_members, backend_members = _members(Server), _members(Backend)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module in (
            "llamaswap.daemon.server",
            "llamaswap.daemon.runtime",
        ):
            found.append(f"imports {node.module}")
        elif isinstance(node, ast.Import):
            found += [
                f"imports {a.name}"
                for a in node.names
                if a.name in ("llamaswap.daemon.server", "llamaswap.daemon.runtime")
            ]
        elif isinstance(node, ast.Attribute):
            if _is_server(node.value) and node.attr not in server_members:
                found.append(f"server.{node.attr}")
            elif _is_backend(node.value) and node.attr not in backend_members:
                found.append(f"backend.{node.attr}")
    return found


def test_app_uses_only_the_contract() -> None:
    source = APP.read_text()
    assert contract_violations(source) == []
    # The scan is not vacuous: app.py does reach the server and backends through these names.
    used = {n.attr for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Attribute)}
    assert {"current", "request_opened", "request_closed", "submit", "release"} <= used


def test_scanner_catches_reaching_past_the_contract() -> None:
    bad = (
        "from llamaswap.daemon.server import Daemon\n"
        "import llamaswap.daemon.runtime\n"
        "async def f(self, backend):\n"
        "    self.server.runtime.host\n"
        "    server = self.server\n"
        "    server.active += 1\n"
        "    backend.router\n"
        "    (await self.server.current()).processes\n"
        "    backend.config\n"
        "    self.server.draining\n"
    )
    assert sorted(contract_violations(bad)) == [
        "backend.processes",
        "backend.router",
        "imports llamaswap.daemon.runtime",
        "imports llamaswap.daemon.server",
        "server.active",
        "server.runtime",
    ]
