"""Scenario ``config:`` -> :class:`RoutingSpec`, read exactly as the daemon reads its config file.

``llamaswap.config.parse_config(..., require_cmd=False)``: the simulator has no processes to start,
so ``cmd`` is optional; everything else (models, groups, ``routing.scheduler``, TTLs, limits) means
the same as in the daemon.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from llamaswap.config import ConfigError, parse_config
from llamaswap.core.spec import RoutingSpec


class RoutingConfigError(ValueError):
    """The scenario's routing config is malformed; the message names the key path."""


def routing_spec(
    data: Mapping[str, Any], source: str = "config"
) -> tuple[RoutingSpec, tuple[str, ...]]:
    """The spec and the config's warnings (e.g. a model ignored as it would be by the daemon)."""
    if not isinstance(data, Mapping):
        raise RoutingConfigError(f"{source}: expected a mapping (the daemon's config schema)")
    try:
        config = parse_config(data, source=source, require_cmd=False)
    except ConfigError as exc:
        raise RoutingConfigError(str(exc)) from None
    spec = config.routing_spec()
    if not spec.models:
        raise RoutingConfigError(f"{source}: models: at least one model is required")
    return spec, tuple(config.warnings)
