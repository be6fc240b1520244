"""``routing.scheduler.settings.batch-aging``, parsed once (by the registry's settings hook)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from llamaswap.core.settings import PolicySettings, per_model

NAME = "batch-aging"
DEFAULTS: Mapping[str, float] = {
    "maxWait": 60.0,
    "minResident": 10.0,
    "residencyPerLoad": 4.0,
    "defaultLoadCost": 10.0,
    "defaultServiceTime": 1.0,
    "switchRatio": 4.0,
}


@dataclass(frozen=True, eq=False)
class BatchAgingSettings(PolicySettings):
    """Validated ``routing.scheduler.settings.batch-aging``."""

    NAME: ClassVar[str] = NAME
    MODEL_KEYS: ClassVar[tuple[str, ...]] = ("priority", "loadCost", "slots")
    SCALAR_KEYS: ClassVar[frozenset[str]] = frozenset({"slots"})

    max_wait: float | None = None
    """The ``maxWait`` setting; None: the default, see ``BatchAgingScheduler.max_wait``."""
    min_resident: float = DEFAULTS["minResident"]
    residency_per_load: float = DEFAULTS["residencyPerLoad"]
    default_load_cost: float = DEFAULTS["defaultLoadCost"]
    default_service_time: float = DEFAULTS["defaultServiceTime"]
    switch_ratio: float = DEFAULTS["switchRatio"]
    priority: Mapping[str, int] = field(default_factory=dict)
    load_cost: Mapping[str, float] = field(default_factory=dict)
    slots: Mapping[str, int] = field(default_factory=dict)
    """Empty, or every model's upstream slot count (planned switches, see the module docstring)."""

    @property
    def planned(self) -> bool:
        return bool(self.slots)

    @classmethod
    def parse(cls, raw: Mapping[str, Any], models: Sequence[str]) -> BatchAgingSettings:
        """Check every key; errors name ``routing.scheduler.settings.batch-aging.<key>`` and say why."""
        where = f"routing.scheduler.settings.{NAME}"
        if not isinstance(raw, Mapping):
            raise ValueError(f"{where}: must be a mapping, got {type(raw).__name__}")
        known = {*DEFAULTS, "priority", "loadCost", "slots"}
        for key in raw:
            if key not in known:
                raise ValueError(
                    f"{where}.{key}: unknown setting; valid: {', '.join(sorted(known))}"
                )

        def seconds(key: str, *, positive: bool) -> float:
            value = raw.get(key, DEFAULTS[key])
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{where}.{key}: must be a number of seconds, got {value!r}")
            number = float(value)
            if not math.isfinite(number) or number < 0 or (positive and number == 0):
                need = "> 0" if positive else ">= 0"
                raise ValueError(f"{where}.{key}: must be a finite number {need}, got {value!r}")
            return number

        def ratio(key: str) -> float:
            value = raw.get(key, DEFAULTS[key])
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{where}.{key}: must be a number, got {value!r}")
            number = float(value)
            if not math.isfinite(number) or (number != 0 and number < 1):
                raise ValueError(
                    f"{where}.{key}: must be 0 (off) or a finite number >= 1, got {value!r}"
                )
            return number

        priority: dict[str, int] = {}
        for model, value in per_model(raw, "priority", models, where).items():
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{where}.priority.{model}: must be an integer, got {value!r}")
            priority[str(model)] = value
        load_cost: dict[str, float] = {}
        for model, value in per_model(raw, "loadCost", models, where).items():
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
                or value < 0
            ):
                raise ValueError(
                    f"{where}.loadCost.{model}: must be a finite number of seconds >= 0, got {value!r}"
                )
            load_cost[str(model)] = float(value)
        return cls(
            raw=dict(raw),
            slots=_parse_slots(raw.get("slots"), models, where),
            max_wait=seconds("maxWait", positive=True) if "maxWait" in raw else None,
            min_resident=seconds("minResident", positive=False),
            residency_per_load=seconds("residencyPerLoad", positive=False),
            default_load_cost=seconds("defaultLoadCost", positive=False),
            default_service_time=seconds("defaultServiceTime", positive=True),
            switch_ratio=ratio("switchRatio"),
            priority=priority,
            load_cost=load_cost,
        )


def _parse_slots(value: Any, models: Sequence[str], where: str) -> dict[str, int]:
    """``slots``: absent, one count for every model, or a count for each model."""

    def count(raw: Any, key: str) -> int:
        if isinstance(raw, bool) or not isinstance(raw, int) or raw < 1:
            raise ValueError(f"{where}.{key}: must be a whole number of slots >= 1, got {raw!r}")
        return raw

    if value is None:
        return {}
    if not isinstance(value, Mapping):
        return {m: count(value, "slots") for m in models}
    slots: dict[str, int] = {}
    for model, raw in value.items():
        if str(model) not in models:
            raise ValueError(f"{where}.slots.{model}: no such model is configured")
        slots[str(model)] = count(raw, f"slots.{model}")
    missing = sorted(set(models) - set(slots))
    if missing:
        raise ValueError(
            f"{where}.slots: give every model its slot count (or one number for all); "
            f"missing: {', '.join(missing)}"
        )
    return slots
