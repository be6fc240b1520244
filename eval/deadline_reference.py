"""A yardstick for one-slot workloads: how far can *planning* switches to deadlines get?

Not a policy of llamaswap and not run through the core: a small event loop of its own over one GPU
with one slot (workload (b): a diffusion GPU makes one image at a time), used to test whether the
issue's max-wait goal is within reach of any reasonable online scheduler. The scheduler it models
dispatches one request at a time (so it can reorder everything) and keeps serving the resident
model for as long as every other waiting model can still be loaded and start its oldest request
within its deadline ``arrival + W``, visited in deadline order; otherwise it loads the model with
the oldest request. Two variants:

* *planned (means, adaptive)*: plans with each model's mean service time (what an online estimate
  converges to) and ``W = max(maxWait, the longest wait so far)``, so an unreachable deadline does
  not turn it into a round-robin that loads a model per request;
* *planned (exact, best W)*: plans with every request's exact service time and the fixed ``W``
  that turns out best in hindsight among those within 1.1x fifo's swaps (an oracle).

``fifo`` runs in the same loop (serve the resident model while it has queued requests, then load
the model with the oldest one) so that the ratios compare like with like; its numbers are printed
next to the simulator's fifo as a check of the loop.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass

import numpy as np

from llamaswap.timing import Distribution

HINDSIGHT_W = (300.0, 600.0, 900.0, 1200.0, 1500.0, 1800.0, 2100.0, 2400.0, 3000.0)
"""Fixed deadlines (s) the oracle variant tries; the best one within the swap budget is reported."""
SWAP_BUDGET = 1.1
"""The issue's swap limit, as a multiple of fifo's swaps (in the same loop)."""


@dataclass(frozen=True)
class Outcome:
    max_wait: float
    p99_latency: float
    swaps: int


@dataclass(frozen=True)
class OneSlotTrace:
    """Arrival times, exact service times and model index of every request, in arrival order."""

    arrival: np.ndarray
    service: np.ndarray
    model: np.ndarray

    @property
    def models(self) -> int:
        return int(self.model.max()) + 1

    def run(
        self,
        load_time: Distribution,
        seed: int,
        policy: str,
        deadline: float = 0.0,
        exact: bool = False,
    ) -> Outcome:
        """One pass; ``policy`` is ``"fifo"`` or ``"planned"`` (see the module docstring)."""
        rng = random.Random(seed)
        queues: list[deque[int]] = [deque() for _ in range(self.models)]
        plan = _Planner(self, queues, load_time.mean(), deadline, exact)
        start = np.zeros(len(self.arrival))
        now, nxt, resident, swaps = 0.0, 0, -1, 0
        while True:
            while nxt < len(self.arrival) and self.arrival[nxt] <= now:
                queues[self.model[nxt]].append(nxt)
                nxt += 1
            waiting = [m for m in range(self.models) if queues[m]]
            if not waiting:
                if nxt == len(self.arrival):
                    break
                now = float(self.arrival[nxt])
                continue
            if resident in waiting and (policy == "fifo" or plan.may_stay(resident, now)):
                chosen = resident
            else:
                chosen = min(waiting, key=lambda m: self.arrival[queues[m][0]])
            if chosen != resident:
                swaps += 1
                now += load_time.sample(rng)
                resident = chosen
                continue  # requests arriving during the load join before the next decision
            request = queues[chosen].popleft()
            start[request] = now
            plan.worst = max(plan.worst, now - float(self.arrival[request]))
            now += float(self.service[request])
        wait = start - self.arrival
        return Outcome(float(wait.max()), float(np.percentile(wait + self.service, 99)), swaps)


class _Planner:
    """The deadline check of the planned variant."""

    def __init__(
        self,
        trace: OneSlotTrace,
        queues: list[deque[int]],
        mean_load: float,
        deadline: float,
        exact: bool,
    ) -> None:
        self.trace = trace
        self.queues = queues
        self.mean_load = mean_load
        self.deadline = deadline
        self.exact = exact
        self.mean_service = [
            float(trace.service[trace.model == m].mean()) if (trace.model == m).any() else 0.0
            for m in range(trace.models)
        ]
        self.worst = 0.0
        """The longest wait so far (the adaptive variant's floor under the deadline)."""

    def size(self, request: int) -> float:
        if self.exact:
            return float(self.trace.service[request])
        return self.mean_service[int(self.trace.model[request])]

    def may_stay(self, resident: int, now: float) -> bool:
        """Serve one more request of the resident model only if every other waiting model, taken
        in deadline order and each paying a load, can still start its oldest request in time."""
        limit = self.deadline if self.exact else max(self.deadline, self.worst)
        arrival = self.trace.arrival
        heads = sorted(
            (float(arrival[q[0]]), q[0]) for m, q in enumerate(self.queues) if m != resident and q
        )
        when = now + self.size(self.queues[resident][0])
        for arrived, request in heads:
            when += self.mean_load
            if when > arrived + limit:
                return False
            when += self.size(request)
        return True


def shortest_load(load_time: Distribution) -> float:
    """The least a load can take under ``load_time`` (0 where the distribution has no floor)."""
    if load_time.kind == "constant":
        return load_time.value
    if load_time.kind == "uniform":
        return load_time.low
    if load_time.kind == "empirical":
        return min(load_time.samples)
    return 0.0


def max_wait_floor(trace: OneSlotTrace, min_load: float) -> float:
    """A max wait that *no* schedule on one slot can beat, whatever its order and however many loads.

    Take the requests that arrive in a window ``[r_a, r_b]`` (a set S of k models). None starts
    before ``r_a``, the slot serves one at a time, and k - 1 of the models are not resident at
    ``r_a`` at best, so the last of S to start, request l, starts at
    ``r_a + sum(S's services) - p_l + (k - 1) * min_load`` or later, and waits that minus ``r_l``.
    Whichever request ends up last, its wait is at least the minimum of that over l, and the bound
    is the largest such value over all windows. Free loads make it the one-machine bound with
    release dates; it is below the free-swaps figure only because that one fixes arrival order.
    """
    order = np.argsort(trace.arrival, kind="stable")
    arrival = trace.arrival[order].astype(float)
    service = trace.service[order].astype(float)
    model = trace.model[order]
    best = 0.0
    for a in range(len(arrival)):
        total = np.cumsum(service[a:])
        latest_release_plus_service = np.maximum.accumulate(service[a:] + arrival[a:])
        first_seen = np.zeros(len(model) - a, dtype=bool)
        seen: set[int] = set()
        for i, m in enumerate(model[a:].tolist()):
            if m not in seen:
                seen.add(m)
                first_seen[i] = True
        loads = np.cumsum(first_seen) - 1
        wait = arrival[a] + total + loads * min_load - latest_release_plus_service
        best = max(best, float(wait.max()))
    return best


def reference(
    trace: OneSlotTrace, load_time: Distribution, seed: int, max_wait: float
) -> dict[str, dict[str, float]]:
    """fifo, the adaptive planned variant at ``max_wait`` and the oracle at its best fixed W."""
    fifo = trace.run(load_time, seed, "fifo")
    adaptive = trace.run(load_time, seed, "planned", deadline=max_wait)
    runs = [(trace.run(load_time, seed, "planned", deadline=w, exact=True), w) for w in HINDSIGHT_W]
    budget = [pair for pair in runs if pair[0].swaps <= SWAP_BUDGET * fifo.swaps] or runs
    oracle = min(budget, key=lambda pair: (pair[0].max_wait, pair[1]))
    out = {"fifo": _row(fifo), "planned (means, adaptive)": _row(adaptive)}
    out["planned (exact, best W)"] = {**_row(oracle[0]), "W": oracle[1]}
    return out


def _row(outcome: Outcome) -> dict[str, float]:
    return {
        "max_wait": round(outcome.max_wait, 3),
        "p99": round(outcome.p99_latency, 3),
        "swaps": outcome.swaps,
    }
