"""Warnings about a *valid* config that will not do what its author probably wants.

Kept apart from validation: these depend on the machine (is the program installed?) or on how
long loads take, which the loader cannot know. ``check-config`` prints them; the simulator warns
about ``maxWait`` with the scenario's timing profiles as the load times.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from typing import Any

from llamaswap.config.model import Config
from llamaswap.core.batch_aging import DEFAULTS
from llamaswap.core.batch_aging import NAME as BATCH_AGING

ROUND_ROBIN_LOADS = 2.0
"""A ``maxWait`` below this many load times makes batch-aging take turns (README, settings)."""


def missing_programs(config: Config) -> list[str]:
    """Models whose ``cmd`` names a program that is not installed here (the load would fail)."""
    out = []
    for mid, model in config.models.items():
        if model.cmd and shutil.which(model.cmd[0]) is None:
            where = "no such executable file" if "/" in model.cmd[0] else "not found on PATH"
            out.append(
                f"models.{mid}.cmd: program {model.cmd[0]!r} {where}; loading {mid!r} will fail"
            )
    return out


def max_wait_advice(
    scheduler: str, settings: Mapping[str, Any], load_times: Mapping[str, float], source: str
) -> list[str]:
    """``maxWait`` shorter than two loads of some model: every late request forces a swap."""
    own = settings.get(BATCH_AGING) or {}
    if scheduler != BATCH_AGING or "maxWait" not in own:
        return []
    max_wait = float(own["maxWait"])
    slow = {m: t for m, t in load_times.items() if max_wait < ROUND_ROBIN_LOADS * t}
    if not slow:
        return []
    worst = max(slow, key=lambda m: slow[m])
    return [
        f"routing.scheduler.settings.{BATCH_AGING}.maxWait: {max_wait:g} s is below "
        f"{ROUND_ROBIN_LOADS:g} load times of {len(slow)} model(s) (slowest: {worst!r}, "
        f"{slow[worst]:g} s per load by {source}); batch-aging then turns into a round-robin "
        "that swaps for nearly every late request"
    ]


def config_load_times(config: Config) -> dict[str, float]:
    """The load times batch-aging assumes before it has measured any: ``loadCost`` per model,
    else ``defaultLoadCost``."""
    own = config.scheduler_settings.get(BATCH_AGING) or {}
    default = float(own.get("defaultLoadCost", DEFAULTS["defaultLoadCost"]))
    costs = own.get("loadCost") or {}
    return {mid: float(costs.get(mid, default)) for mid in config.models}


def advice(config: Config) -> list[str]:
    return missing_programs(config) + max_wait_advice(
        config.scheduler,
        config.scheduler_settings,
        config_load_times(config),
        "loadCost/defaultLoadCost",
    )
