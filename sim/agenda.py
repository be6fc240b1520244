"""The client side of a run: arrivals and give-ups at their exact trace times, under one tie rule.

The tie rule at equal timestamps, independent of the run's history:

1. Server and core events first: loads finishing, processes exiting or crashing, services
   completing, the core's timers (TTL, health deadline, maxWait) and the reports they cause. A
   client event waits while anything else is due at its instant (``Environment.peek``), including
   what an earlier client event of the same instant set off.
2. Then client events, in trace order of the request they concern; a request's arrival comes
   before its own give-up (``cancel_after: 0`` gives up right after arriving).

Before this rule an arrival was scheduled when the previous one fired, so whether an arrival at
``t`` ran before a completion at ``t`` depended on when the previous arrival happened (an
unrelated request could flip it). The daemon has no "right" order for such ties (its event loop
decides); the simulator's is this one, documented in ``docs/design.md``.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable
from typing import Any

import simpy

from llamaswap.core.request import Request
from sim.host import SimHost, call_at
from sim.trace import Trace

PROGRESS_EVERY = 8192


class ClientAgenda:
    """Feeds ``host`` the trace's arrivals and give-ups; one wake-up is pending at a time."""

    def __init__(
        self,
        env: simpy.Environment,
        host: SimHost,
        trace: Trace,
        progress: Callable[[int], None] | None = None,
    ) -> None:
        self.env, self.host, self._progress = env, host, progress
        self._arrivals: list[float] = trace.arrival.tolist()
        self._models = [trace.models[k] for k in trace.model.tolist()]
        self._cancel: list[float] = trace.cancel_after.tolist()
        self._next = 0
        """Trace position of the next arrival."""
        self._give_ups: list[tuple[float, int, Request]] = []
        """Heap of (time, trace position, request) of the pending give-ups."""

    def start(self) -> None:
        if self._arrivals:
            call_at(self.env, self._arrivals[0], None, self._wake)

    def _wake(self, _ev: Any) -> None:
        env, host = self.env, self.host
        now = env.now
        arrivals, give_ups = self._arrivals, self._give_ups
        n = len(arrivals)
        while True:
            i = self._next
            when = arrivals[i] if i < n else math.inf
            give_up = bool(give_ups) and give_ups[0][:2] < (when, i)  # an earlier request's
            if give_up:
                when = give_ups[0][0]
            if when > now:
                break
            if env.peek() <= now:  # rule 1: something else is due at this instant
                env.timeout(0).callbacks.append(self._wake)
                return
            if give_up:
                host.give_up(heapq.heappop(give_ups)[2])
                continue
            self._next = i + 1
            request = host.arrive(i, self._models[i])
            cancel = self._cancel[i]
            if request is not None and cancel == cancel:  # not NaN: the client gives up then
                heapq.heappush(give_ups, (now + cancel, i, request))
            if self._progress is not None and not self._next % PROGRESS_EVERY:
                self._progress(self._next)
        if when < math.inf:
            call_at(env, when, None, self._wake)
