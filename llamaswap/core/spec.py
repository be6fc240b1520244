"""Typed, validated routing settings the core runs on.

The config loader (``llamaswap.config``) turns llama-swap YAML into these; tests and the simulator
may build them directly. Keeping them tiny and frozen lets the core trust them without re-checking.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

DEFAULT_CONCURRENCY_LIMIT = 10
DEFAULT_HEALTH_CHECK_TIMEOUT = 120.0
DEFAULT_UNLOAD_TIMEOUT = 10.0
START_ABORT_GRACE = 5.0
"""Graceful seconds before SIGKILL when a failed or aborted start is torn down (llama-swap: 5 s)."""


@dataclass(frozen=True)
class ModelSpec:
    """What the core needs to know about one model (ids are real ids, aliases resolved by hosts)."""

    id: str
    concurrency_limit: int = DEFAULT_CONCURRENCY_LIMIT
    ttl: float = 0.0
    """Idle seconds after the last completed request before the model is unloaded; 0 = never."""
    unload_timeout: float = DEFAULT_UNLOAD_TIMEOUT
    """Graceful seconds before SIGKILL when unloading (API, TTL)."""

    def limit(self) -> int:
        """Effective admission limit: llama-swap treats 0 (unset) as 10."""
        return self.concurrency_limit if self.concurrency_limit > 0 else DEFAULT_CONCURRENCY_LIMIT


@dataclass(frozen=True)
class GroupSpec:
    """A llama-swap group (reference §1.6)."""

    name: str
    members: tuple[str, ...]
    swap: bool = True
    exclusive: bool = True
    persistent: bool = False

    def as_json(self) -> dict[str, Any]:
        """Plain JSON fields: a log's meta record and ``check-config`` show groups this way."""
        return {
            "name": self.name,
            "members": list(self.members),
            "swap": self.swap,
            "exclusive": self.exclusive,
            "persistent": self.persistent,
        }


@dataclass(frozen=True)
class RoutingSpec:
    """Everything the router, scheduler and swapper need."""

    models: Mapping[str, ModelSpec]
    groups: tuple[GroupSpec, ...] = ()
    scheduler: str = "fifo"
    """Config built in code defaults to ``fifo``; a loaded config file defaults to ``serial``."""
    scheduler_settings: Mapping[str, Any] = field(default_factory=dict)
    """``routing.scheduler.settings`` keyed by scheduler name: each value the policy's parsed
    settings (``core.settings.PolicySettings``, as config stores them; also a mapping of the plain
    form) or a plain mapping (specs built in code), which is parsed when the scheduler is built."""
    health_check_timeout: float = DEFAULT_HEALTH_CHECK_TIMEOUT

    @classmethod
    def simple(cls, *model_ids: str, **kwargs: Any) -> RoutingSpec:
        """Shorthand for tests and examples: default settings for each model id."""
        return cls(models={m: ModelSpec(m) for m in model_ids}, **kwargs)

    def settings_for(self, scheduler: str) -> Mapping[str, Any]:
        value = self.scheduler_settings.get(scheduler, {})
        return value if isinstance(value, Mapping) else {}
