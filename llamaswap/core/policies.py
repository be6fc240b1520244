"""Scheduler registry: ``routing.scheduler.use`` names map to classes here."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from llamaswap.core.batch_aging import BatchAgingScheduler
from llamaswap.core.fifo import FifoScheduler
from llamaswap.core.serial import SerialScheduler
from llamaswap.core.spec import RoutingSpec
from llamaswap.core.swapper import Swapper

if TYPE_CHECKING:
    from llamaswap.core.scheduler import Effects, Scheduler

SCHEDULERS: dict[str, Any] = {
    "serial": SerialScheduler,
    "fifo": FifoScheduler,
    "batch-aging": BatchAgingScheduler,
}


def scheduler_names() -> list[str]:
    return sorted(SCHEDULERS)


def make_scheduler(spec: RoutingSpec, effects: Effects, swapper: Swapper) -> Scheduler:
    try:
        cls = SCHEDULERS[spec.scheduler]
    except KeyError:
        raise ValueError(
            f"unknown scheduler {spec.scheduler!r}; valid: {', '.join(scheduler_names())}"
        ) from None
    scheduler: Scheduler = cls(spec, effects, swapper)
    return scheduler
