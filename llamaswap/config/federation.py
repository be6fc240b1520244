"""What ``check-config`` shows of ``peers``, ``selectors`` and ``profiles`` (text and JSON).

Kept apart from ``config/cli.py`` so that command's layout stays one job: this only renders.
"""

from __future__ import annotations

from typing import Any

from llamaswap.config.model import Config


def federation_summary(config: Config) -> dict[str, Any]:
    return {
        "peers": {
            pid: {"proxy": p.proxy, "models": list(p.models), "api_key": bool(p.api_key)}
            for pid, p in config.peers.items()
        },
        "peer_routes": {name: r.fqn for name, r in sorted(config.peer_routes.items())},
        "selectors": {
            sid: {
                "strategy": s.spec.strategy.value,
                "targets": [t.name for t in s.spec.targets],
                "spillover": s.spec.spillover,
            }
            for sid, s in config.selectors.items()
        },
        "profiles": {name: dict(p.pins) for name, p in config.profiles.items()},
    }


def federation_lines(config: Config) -> list[str]:
    lines = []
    for pid, peer in config.peers.items():
        key = "  (apiKey set)" if peer.api_key else ""
        lines.append(f"peer {pid}  {peer.proxy}{key}")
        lines.append(f"  models: {', '.join(peer.models)}")
    for sid, selector in config.selectors.items():
        spec = selector.spec
        extra = f"  spillover {spec.spillover}" if spec.strategy.value == "spillover" else ""
        targets = ", ".join(t.name for t in spec.targets)
        lines.append(f"selector {sid}  {spec.strategy.value}{extra}  -> {targets}")
    for name, profile in config.profiles.items():
        pins = ", ".join(f"{k} -> {v or '(disabled)'}" for k, v in profile.pins.items())
        lines.append(f"profile {name}  {pins}")
    return lines
