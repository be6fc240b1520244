"""Who may claim the GPU from the resident model: the reactive rule and the planned one.

Both answer the same questions for the decision table in ``scheduler.py``, so "planned" is a
second implementation of one interface, not branches through the scheduler:

* ``urgent``: the models whose claim is due now, in the order they go;
* ``weight``: among the other waiting models, who goes first (higher first; ties by age);
* ``soft_claims``: which of those may drain the resident model early all the same;
* ``overrides``: may a claim cut short the residency of a model it would evict;
* ``wake_at``: the next moment one of these answers changes with nothing else happening;
* ``room``: how many more requests a model's upstream may take now (None: no window).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Protocol

from llamaswap.core.batch_aging.costs import CostModel
from llamaswap.core.batch_aging.line import WaitingLine
from llamaswap.core.batch_aging.settings import BatchAgingSettings

TINY = 1e-3
"""Seconds: the floor of a batch's cost, so instant services do not divide by zero."""


class Board(Protocol):
    """What a claim rule reads of the scheduler's state (the scheduler implements it)."""

    line: WaitingLine
    costs: CostModel
    settings: BatchAgingSettings

    @property
    def reported_slots(self) -> Mapping[str, int]:
        """Slot counts the upstreams reported when they became ready (the reactive window)."""

    def running(self) -> list[str]: ...

    def is_ready(self, model: str) -> bool: ...

    def loading(self, model: str) -> bool: ...

    def in_flight(self, model: str) -> int: ...

    def present(self) -> set[str]: ...

    def eviction(self, model: str, present: set[str]) -> tuple[str, ...]: ...

    def load_for(self, model: str, present: set[str]) -> float: ...

    def load_started(self, model: str) -> float:
        """When the load that made ``model`` resident began (-inf if it never loaded)."""

    def longest_wait(self) -> float: ...


class ClaimRule(Protocol):
    def urgent(self, now: float) -> list[str]: ...

    def weight(self, model: str, now: float, present: set[str]) -> float: ...

    def soft_claims(
        self, ranked: Sequence[str], weights: Mapping[str, float], present: set[str]
    ) -> list[str]: ...

    def overrides(self, claimant: str, resident: str, now: float) -> bool: ...

    def wake_at(self, now: float, present: set[str]) -> float: ...

    def room(self, model: str) -> int | None: ...

    def extras(self) -> dict[str, object]:
        """Rule-specific fields for ``snapshot()``."""


class ReactiveClaims:
    """``maxWait`` as a hard trigger, the response ratio reaching ``switchRatio`` as a soft one."""

    def __init__(self, board: Board) -> None:
        self._b = board

    def urgent(self, now: float) -> list[str]:
        """Waiting models whose oldest request has waited ``maxWait``, oldest first."""
        line, bound = self._b.line, self._b.costs.max_wait()
        due = [(line.oldest(m), m) for m in line if now - line.oldest(m) >= bound]
        return [model for _, model in sorted(due)]

    def weight(self, model: str, now: float, present: set[str]) -> float:
        return self.response_ratio(model, now, present)

    def response_ratio(self, model: str, now: float, present: set[str]) -> float:
        """The batch's (waiting + service) / (load + service): highest-response-ratio-next."""
        line = self._b.line
        q = line.count(model)
        if not q:
            return 0.0
        waited = q * now - line.arrival_sum(model)
        work = q * self._b.costs.service_time(model)
        return (max(waited, 0.0) + work) / max(self._b.load_for(model, present) + work, TINY)

    def soft_claims(
        self, ranked: Sequence[str], weights: Mapping[str, float], present: set[str]
    ) -> list[str]:
        """Models that need a load and whose response ratio reached ``switchRatio``."""
        switch = self._b.settings.switch_ratio
        return [
            m
            for m in ranked
            if switch and weights[m] >= switch and self._b.load_for(m, present) > 0
        ]

    def overrides(self, claimant: str, resident: str, now: float) -> bool:
        """Only a ``maxWait`` claim, and only if its late request arrived after the resident's
        load began: a load chosen while that request already waited was paid for with it in
        view, and keeps its residency."""
        oldest = self._b.line.oldest(claimant)
        late = now - oldest >= self._b.costs.max_wait()
        return late and oldest >= self._b.load_started(resident)

    def wake_at(self, now: float, present: set[str]) -> float:
        """The next max-wait expiry or response-ratio crossing."""
        when = math.inf
        bound = self._b.costs.max_wait()
        line = self._b.line
        for model in line:
            due = line.oldest(model) + bound
            if due > now:
                when = min(when, due)
            if self._b.settings.switch_ratio and not self._b.loading(model):
                soon = self._due_at(model, present)
                if soon > now:
                    when = min(when, soon)
        return when

    def _due_at(self, model: str, present: set[str]) -> float:
        """When the batch's response ratio reaches ``switchRatio`` (it grows linearly in time)."""
        line = self._b.line
        q = line.count(model)
        work = q * self._b.costs.service_time(model)
        cost = max(self._b.load_for(model, present) + work, TINY)
        return (self._b.settings.switch_ratio * cost - work + line.arrival_sum(model)) / q

    def room(self, model: str) -> int | None:
        """No configured window; a slot count the upstream reported (``/props``) is one."""
        window = self._b.reported_slots.get(model)
        return None if window is None else max(window - self._b.in_flight(model), 0)

    def extras(self) -> dict[str, object]:
        return {}


class PlannedClaims:
    """``slots``: a window per upstream, and a plan of each switch instead of a trigger."""

    def __init__(self, board: Board) -> None:
        self._b = board
        self._slots = board.settings.slots

    def plan_limit(self) -> float:
        """The planned wait: ``maxWait``, or the longest wait so far when that is longer."""
        return max(self._b.costs.max_wait(), self._b.longest_wait())

    def urgent(self, now: float) -> list[str]:
        """For each ready model with queued work: if taking one more request would make some model
        its load would evict for miss ``arrival + plan_limit`` (visits in deadline order, each a
        load and one service), the waiting model with the oldest request, when that is not its own.
        """
        b, line, costs = self._b, self._b.line, self._b.costs
        present = b.present()
        limit = self.plan_limit()
        failures: list[tuple[float, str]] = []
        for resident in sorted(b.running()):
            if resident not in line or not b.is_ready(resident):
                continue
            heads = sorted(
                (line.oldest(m), m)
                for m in line
                if m != resident and resident in b.eviction(m, present)
            )
            if not heads or heads[0][0] >= line.oldest(resident):
                continue
            when = (
                now
                + (b.in_flight(resident) + 1) * costs.service_time(resident) / self._slots[resident]
            )
            for arrived, model in heads:
                when += costs.load_cost(model)
                if when > arrived + limit:
                    if self._switch_helps(resident, heads[0][1], when - arrived, now):
                        failures.append(heads[0])
                    break
                when += costs.service_time(model)
        return [model for _, model in sorted(set(failures))]

    def _switch_helps(self, resident: str, claimant: str, late_wait: float, now: float) -> bool:
        """Switch only if staying would make the late model wait longer (``late_wait``) than
        switching makes the resident's own oldest queued request wait: it then waits for the
        resident to drain, the claimant's load and queue, and a reload. Of the two, the plan takes
        the smaller worst wait, so an overloaded box does not trade one late request for another
        at the price of two loads."""
        b, costs, slots = self._b, self._b.costs, self._slots
        back = (
            now
            + b.in_flight(resident) * costs.service_time(resident) / slots[resident]
            + costs.load_cost(claimant)
            + b.line.count(claimant) * costs.service_time(claimant) / slots[claimant]
            + costs.load_cost(resident)
        )
        return back - b.line.oldest(resident) < late_wait

    def weight(self, model: str, now: float, present: set[str]) -> float:
        """None: waiting models go in order of their oldest request, the order the plan assumes."""
        return 0.0

    def soft_claims(
        self, ranked: Sequence[str], weights: Mapping[str, float], present: set[str]
    ) -> list[str]:
        return []

    def overrides(self, claimant: str, resident: str, now: float) -> bool:
        """Never: the plan's limit is a target, not a bound, and residency still holds."""
        return False

    def wake_at(self, now: float, present: set[str]) -> float:
        """The plan's decisions fall on arrivals and completions: it needs no timer."""
        return math.inf

    def room(self, model: str) -> int | None:
        return max(self._slots[model] - self._b.in_flight(model), 0)

    def extras(self) -> dict[str, object]:
        return {"plan_limit": self.plan_limit()}
