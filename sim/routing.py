"""Scenario ``config:`` -> :class:`RoutingSpec`, in the daemon's config-file schema.

Uses ``llamaswap.config.parse_config(..., require_cmd=False)`` when that module provides it, so the
simulator and the daemon read the same YAML the same way. Until then a minimal reader of the
routing-relevant keys (models' ttl/concurrencyLimit/unloadTimeout, groups, routing.scheduler,
healthCheckTimeout, globalTTL) stands in; it is deliberately the only place to swap.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from llamaswap.core.spec import (
    DEFAULT_HEALTH_CHECK_TIMEOUT,
    DEFAULT_UNLOAD_TIMEOUT,
    GroupSpec,
    ModelSpec,
    RoutingSpec,
)


class RoutingConfigError(ValueError):
    """The scenario's routing config is malformed; the message names the key path."""


def routing_spec(data: Mapping[str, Any], source: str = "config") -> RoutingSpec:
    try:
        from llamaswap.config import parse_config
    except ImportError:
        return _fallback(data, source)
    try:
        return parse_config(data, source=source, require_cmd=False).routing_spec()
    except ValueError as exc:
        raise RoutingConfigError(str(exc)) from None


def _fallback(data: Mapping[str, Any], source: str) -> RoutingSpec:
    if not isinstance(data, Mapping):
        raise RoutingConfigError(f"{source}: expected a mapping")
    health = _num(
        data.get("healthCheckTimeout", DEFAULT_HEALTH_CHECK_TIMEOUT), f"{source}.healthCheckTimeout"
    )
    health = max(health, 15.0)
    global_ttl = _num(data.get("globalTTL", 0), f"{source}.globalTTL")
    unload = (
        _num(data.get("unloadTimeout", DEFAULT_UNLOAD_TIMEOUT), f"{source}.unloadTimeout")
        or DEFAULT_UNLOAD_TIMEOUT
    )
    raw_models = data.get("models")
    if not isinstance(raw_models, Mapping) or not raw_models:
        raise RoutingConfigError(f"{source}.models: at least one model is required")
    models: dict[str, ModelSpec] = {}
    for model_id, raw in raw_models.items():
        where = f"{source}.models.{model_id}"
        raw = raw or {}
        if not isinstance(raw, Mapping):
            raise RoutingConfigError(f"{where}: expected a mapping")
        ttl = raw.get("ttl", -1)
        if isinstance(ttl, bool) or not isinstance(ttl, int | float) or ttl < -1:
            raise RoutingConfigError(f"{where}.ttl: expected seconds (-1 = globalTTL), got {ttl!r}")
        limit = raw.get("concurrencyLimit", 0)
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
            raise RoutingConfigError(
                f"{where}.concurrencyLimit: expected an integer >= 0, got {limit!r}"
            )
        models[str(model_id)] = ModelSpec(
            str(model_id),
            concurrency_limit=limit,
            ttl=float(global_ttl if ttl == -1 else ttl),
            unload_timeout=unload,
        )
    routing = data.get("routing") or {}
    if not isinstance(routing, Mapping):
        raise RoutingConfigError(f"{source}.routing: expected a mapping")
    router = routing.get("router") or {}
    groups_raw = data.get("groups") or (router.get("settings") or {}).get("groups") or {}
    groups = []
    for name, raw in groups_raw.items():
        where = f"{source}.groups.{name}"
        members = raw.get("members") if isinstance(raw, Mapping) else None
        if not isinstance(members, list) or not members:
            raise RoutingConfigError(f"{where}.members: a non-empty list of model ids is required")
        unknown = [m for m in members if m not in models]
        if unknown:
            raise RoutingConfigError(f"{where}.members: unknown models {unknown}")
        groups.append(
            GroupSpec(
                str(name),
                tuple(str(m) for m in members),
                swap=bool(raw.get("swap", True)),
                exclusive=bool(raw.get("exclusive", True)),
                persistent=bool(raw.get("persistent", False)),
            )
        )
    scheduler = routing.get("scheduler") or {}
    if not isinstance(scheduler, Mapping):
        raise RoutingConfigError(f"{source}.routing.scheduler: expected a mapping with 'use'")
    return RoutingSpec(
        models=models,
        groups=tuple(groups),
        scheduler=str(scheduler.get("use", "serial")),
        scheduler_settings=dict(scheduler.get("settings") or {}),
        health_check_timeout=health,
    )


def _num(raw: Any, where: str) -> float:
    if isinstance(raw, bool) or not isinstance(raw, int | float) or raw < 0:
        raise RoutingConfigError(f"{where}: expected a non-negative number, got {raw!r}")
    return float(raw)
