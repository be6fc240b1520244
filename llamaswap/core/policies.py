"""Scheduler registry: each ``routing.scheduler.use`` name with its scheduler and settings parser.

Config asks this registry (and nothing else in the core) which schedulers exist and how their
settings parse, so a new policy is one entry here, not a branch in the config loader.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from llamaswap.core.batch_aging import BatchAgingScheduler, BatchAgingSettings
from llamaswap.core.fifo import FifoScheduler, FifoSettings
from llamaswap.core.scheduler import Effects, Scheduler
from llamaswap.core.serial import SerialScheduler, SerialSettings
from llamaswap.core.settings import PolicySettings
from llamaswap.core.spec import RoutingSpec
from llamaswap.core.swapper import Swapper


@dataclass(frozen=True)
class Policy:
    name: str
    scheduler: Callable[[RoutingSpec, Effects, Swapper], Scheduler]
    settings: type[PolicySettings]
    """Parses ``routing.scheduler.settings.<name>``; the scheduler reads the parsed object."""


POLICIES: Mapping[str, Policy] = {
    p.name: p
    for p in (
        Policy("serial", SerialScheduler, SerialSettings),
        Policy("fifo", FifoScheduler, FifoSettings),
        Policy(BatchAgingSettings.NAME, BatchAgingScheduler, BatchAgingSettings),
    )
}


def scheduler_names() -> list[str]:
    return sorted(POLICIES)


def policy(name: str) -> Policy:
    try:
        return POLICIES[name]
    except KeyError:
        raise ValueError(
            f"unknown scheduler {name!r}; valid: {', '.join(scheduler_names())}"
        ) from None


def parse_settings(name: str, raw: Mapping[str, Any], models: Sequence[str]) -> PolicySettings:
    """The settings hook: parse once (config calls this at load time); raises ``ValueError``."""
    return policy(name).settings.parse(raw, models)


def make_scheduler(spec: RoutingSpec, effects: Effects, swapper: Swapper) -> Scheduler:
    return policy(spec.scheduler).scheduler(spec, effects, swapper)
