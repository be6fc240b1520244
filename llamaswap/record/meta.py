"""The routing config inside a log's ``meta`` record, so a log replays without its config file.

``spec_meta`` writes a plain JSON form of the :class:`RoutingSpec` the host ran (models with limits,
TTLs and unload timeouts, groups, scheduler and its settings, health-check timeout);
``spec_from_meta`` rebuilds it, with errors that name the missing field.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from llamaswap.core.spec import GroupSpec, ModelSpec, RoutingSpec


class MetaError(ValueError):
    """A log's meta record lacks the routing config (or it is malformed)."""


def spec_meta(spec: RoutingSpec) -> dict[str, Any]:
    return {
        "routing": {
            "models": {
                m.id: {
                    "concurrency_limit": m.concurrency_limit,
                    "ttl": m.ttl,
                    "unload_timeout": m.unload_timeout,
                }
                for m in sorted(spec.models.values(), key=lambda m: m.id)
            },
            "groups": [g.as_json() for g in spec.groups],
            "scheduler": spec.scheduler,
            "scheduler_settings": _plain(spec.scheduler_settings),
            "health_check_timeout": spec.health_check_timeout,
        }
    }


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def spec_from_meta(meta: Mapping[str, Any], where: str = "log meta") -> RoutingSpec:
    routing = meta.get("routing")
    if not isinstance(routing, Mapping):
        raise MetaError(
            f"{where}: no 'routing' in the meta record (written by llamaswap serve --record "
            "or llamaswap sim --record-dir); cannot rebuild the routing config"
        )
    models_raw = routing.get("models")
    if not isinstance(models_raw, Mapping) or not models_raw:
        raise MetaError(f"{where}: routing.models: expected a non-empty mapping")
    try:
        models = {
            str(mid): ModelSpec(
                str(mid),
                int(m.get("concurrency_limit", 10)),
                float(m.get("ttl", 0.0)),
                float(m.get("unload_timeout", 10.0)),
            )
            for mid, m in models_raw.items()
        }
        groups = tuple(
            GroupSpec(
                str(g["name"]),
                tuple(str(x) for x in g["members"]),
                bool(g.get("swap", True)),
                bool(g.get("exclusive", True)),
                bool(g.get("persistent", False)),
            )
            for g in routing.get("groups") or []
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise MetaError(f"{where}: routing: malformed ({type(exc).__name__}: {exc})") from None
    return RoutingSpec(
        models=models,
        groups=groups,
        scheduler=str(routing.get("scheduler", "fifo")),
        scheduler_settings=dict(routing.get("scheduler_settings") or {}),
        health_check_timeout=float(routing.get("health_check_timeout", 120.0)),
    )
