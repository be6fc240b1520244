"""The SimPy host: the core's ``Clock`` and ``Host`` over simulated time and simulated servers.

Nothing here decides anything: the router decides who is served, what loads and what is evicted;
this module only makes time pass (load, unload, service, crash) and reports what happened. Per-request
state lives in flat arrays indexed by trace position (``Request.id``), so the hot path allocates
little beyond the core's own event objects.

Extending a run (writing the daemon's event log, replaying measured stops) goes through two
documented seams, never through subclassing: :class:`SimHooks` is told every request milestone, and
``stop_time`` replaces the profile's unload time. SimPy's public API is used
(``Environment.timeout``/``now``/``peek``) except in one documented place, :func:`call_at`.
"""

from __future__ import annotations

import math
import random
from array import array
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from heapq import heappush
from typing import Any

import simpy
from simpy.events import NORMAL

from llamaswap.core.errors import ErrorKind, RequestError
from llamaswap.core.events import (
    ProcessExited,
    ProcessReady,
    RequestArrived,
    RequestCancelled,
    ServeDone,
)
from llamaswap.core.observe import ProcessStateChanged, QueueDepth, SwapStarted
from llamaswap.core.request import Request
from llamaswap.timing import TimingProfile

PENDING, OK, ERROR, REJECTED, CANCELLED, GRANTED = 0, 1, 2, 3, 4, 5
STATUS_NAMES = {OK: "ok", ERROR: "error", REJECTED: "rejected", CANCELLED: "cancelled"}
_REJECT_KINDS = (ErrorKind.OVER_LIMIT, ErrorKind.NOT_FOUND)
_TRANSIENT = {"starting": 1, "stopping": 1}
"""States that count as swap overhead in ``busy_fraction.loading``."""
_RESIDENT = {"starting": 1, "ready": 1, "stopping": 1}
"""States in which a model holds memory (``max_resident_models``)."""
STATE_CODES = {"stopped": 0, "starting": 1, "ready": 2, "stopping": 3, "shutdown": 0}


class _Timer:
    """A cancellable SimPy timeout: the flag is checked when it fires (SimPy cannot unschedule)."""

    __slots__ = ("cancelled", "event", "sink")

    def __init__(self, event: object, sink: Callable[[object], None]) -> None:
        self.event = event
        self.sink = sink
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True

    def fire(self, _ev: Any) -> None:
        if not self.cancelled:
            self.cancelled = True
            self.sink(self.event)


def call_at(
    env: simpy.Environment, when: float, value: Any, callback: Callable[[Any], None]
) -> None:
    """Run ``callback(event)`` at exactly ``when`` (``event.value`` is ``value``; now if past).

    SimPy schedules relative to now, and ``now + (when - now)`` can miss ``when`` by one ulp, and
    no other float delay need hit it (round-half-even can skip it): then a request would start
    "before" it arrived, or a TTL timer fire just before its deadline. So: public API
    (``env.timeout``) whenever the delay lands; otherwise, the one exception in the simulator, the
    event goes onto SimPy's queue at ``when`` directly. That relies on SimPy 4.1's private queue
    layout ``(time, priority, id, event)``, so pyproject pins ``simpy>=4.1,<4.2``;
    ``tests/test_sim.py::test_arrivals_happen_at_their_exact_trace_time`` guards it.
    """
    now = env.now
    delay = when - now
    if delay <= 0 or now + delay == when:
        env.timeout(max(delay, 0.0), value).callbacks.append(callback)
        return
    event = simpy.Event(env)
    event.callbacks.append(callback)
    event._ok, event._value = True, value  # triggered, as Timeout.__init__ does
    heappush(env._queue, (when, NORMAL, next(env._eid), event))


class SimClock:
    """``Clock`` over a SimPy environment; due timers are fed to ``sink`` (the router)."""

    def __init__(self, env: simpy.Environment) -> None:
        self.env = env
        self.sink: Callable[[object], None] = _no_sink

    def now(self) -> float:
        return self.env.now

    def call_at(self, when: float, event: object) -> _Timer:
        timer = _Timer(event, self.sink)
        call_at(self.env, when, None, timer.fire)
        return timer


def _no_sink(event: object) -> None:
    raise RuntimeError("SimClock.sink is not connected to a router")


class SimHooks:
    """What a run tells a listener, request by request (override any; each default does nothing).

    This is the simulator's only extension seam for watching a run (``sim.eventlog`` writes the
    daemon's event log through it). ``index`` is the request's trace position and ``at`` the
    simulated time; hooks must not call back into the host or the router.
    """

    def arrived(self, index: int, model: str, at: float) -> None:
        """The client sent the request (before the router sees it)."""

    def started(self, index: int, profile: TimingProfile, at: float, cold: bool) -> None:
        """A server slot began serving it; ``cold``: it pays the fresh process's warm-up."""

    def finished(self, index: int, profile: TimingProfile, at: float) -> None:
        """It was served to the end."""

    def rejected(self, index: int, kind: str, at: float) -> None:
        """The core answered it with an error of ``kind`` (an ``ErrorKind`` value)."""

    def aborted(self, index: int, reason: str, at: float) -> None:
        """Its process died while it was granted (served or waiting for a slot)."""

    def cancelled(self, index: int, at: float) -> None:
        """The client gave up while it still waited."""

    def observed(self, observation: object) -> None:
        """Every core observation (``llamaswap.core.observe``), after the host's own accounting."""


@dataclass
class SimRecord:
    """Everything a run leaves behind, in compact columns (metrics and reports read this)."""

    n: int
    start: array
    end: array
    status: bytearray
    error: dict[int, str] = field(default_factory=dict)
    swaps: list[list[Any]] = field(default_factory=list)
    """Rows ``[start, end, model, evicted, ok]``; a swap = one model load started."""
    states: list[tuple[float, str, int]] = field(default_factory=list)
    """Process state changes ``(time, model, STATE_CODES[state])`` for the Gantt chart."""
    queue_t: array = field(default_factory=lambda: array("d"))
    queue_n: array = field(default_factory=lambda: array("i"))
    max_in_flight: int = 0
    max_resident: int = 0
    t_serving: float = 0.0
    t_loading: float = 0.0
    t_idle: float = 0.0
    events: int = 0


class SimHost:
    """Simulated model servers for one run; implements the core's ``Host`` protocol."""

    def __init__(
        self,
        env: simpy.Environment,
        models: Sequence[str],
        profiles: dict[str, TimingProfile],
        seed: int,
        prompt_tokens: Sequence[int],
        output_tokens: Sequence[int],
        service_time: Sequence[float],
        hooks: SimHooks | None = None,
        stop_time: Callable[[str], float] | None = None,
    ) -> None:
        """``hooks``: told every request milestone; ``stop_time(model)``: seconds from a graceful
        stop to the exit, instead of the profile's ``unload_time`` (a replay of measured stops)."""
        self.env = env
        self.handle: Callable[[object], None] = _no_sink
        self.profiles = profiles
        self.hooks = hooks
        self._stop_time = stop_time
        self._prompt = prompt_tokens
        self._output = output_tokens
        self._service = service_time
        n = len(service_time)
        self.record = SimRecord(
            n=n,
            start=array("d", [math.nan]) * n,
            end=array("d", bytes(8 * n)),
            status=bytearray(n),
        )
        self._rng_load = {m: random.Random(f"{seed}:load:{m}") for m in models}
        self._rng_crash = {m: random.Random(f"{seed}:crash:{m}") for m in models}
        self._rng_noise = {m: random.Random(f"{seed}:noise:{m}") for m in models}
        self._alive: dict[str, int] = {}
        self._terminating: set[tuple[str, int]] = set()
        self._free = {m: profiles[m].parallel for m in models}
        self._waiting: dict[str, deque[Request]] = {m: deque() for m in models}
        self._serving: dict[str, dict[Request, int]] = {m: {} for m in models}
        self._deferred: list[object] = []
        self._granted = 0
        self._n_serving = 0
        self._n_transient = 0
        self._resident = 0
        self._last = 0.0
        self._last_evict: dict[str, tuple[str, ...]] = {}
        self._open_swap: dict[str, list[Any]] = {}
        self._last_depth = -1
        self._warm: dict[str, int] = {}
        """model -> the generation that has begun serving (its warm-up is paid)."""
        self.cold_starts: set[int] = set()
        """Requests that were the first served by a fresh process (they paid its warm-up)."""

    # ------------------------------------------------------------------ busy-time accounting

    def _tick(self) -> None:
        now = self.env.now
        dt = now - self._last
        if dt > 0:
            rec = self.record
            if self._n_serving:
                rec.t_serving += dt
            elif self._n_transient:
                rec.t_loading += dt
            else:
                rec.t_idle += dt
            self._last = now

    # ------------------------------------------------------------------ deferred reports

    def _defer(self, event: object) -> None:
        """Report to the router after the current call returns (hosts never re-enter it)."""
        if not self._deferred:
            self.env.timeout(0).callbacks.append(self._flush)
        self._deferred.append(event)

    def _flush(self, _ev: Any) -> None:
        events, self._deferred = self._deferred, []
        for event in events:
            self.handle(event)

    # ------------------------------------------------------------------ Host: processes

    def spawn(self, model: str, generation: int) -> None:
        self._alive[model] = generation
        profile = self.profiles[model]
        rng = self._rng_load[model]
        delay = profile.load_time.sample(rng)
        fail = profile.load_failure_prob > 0 and rng.random() < profile.load_failure_prob
        self.env.timeout(delay, (model, generation, fail)).callbacks.append(self._loaded)

    def _loaded(self, ev: Any) -> None:
        model, generation, fail = ev.value
        if self._alive.get(model) != generation or (model, generation) in self._terminating:
            return
        if fail:
            self._alive[model] = 0
            self.handle(ProcessExited(model, generation, "failed to load (simulated fault)"))
        else:
            self.handle(ProcessReady(model, generation))

    def terminate(self, model: str, generation: int) -> None:
        key = (model, generation)
        if self._alive.get(model) != generation or key in self._terminating:
            return
        self._terminating.add(key)
        stop_time = self._stop_time
        delay = self.profiles[model].unload_time if stop_time is None else stop_time(model)
        self.env.timeout(delay, (model, generation, "terminated")).callbacks.append(self._exited)

    def kill(self, model: str, generation: int) -> None:
        if self._alive.get(model) == generation:
            self.env.timeout(0, (model, generation, "killed")).callbacks.append(self._exited)

    def _exited(self, ev: Any) -> None:
        model, generation, reason = ev.value
        if self._alive.get(model) != generation:
            return
        self._alive[model] = 0
        self._terminating.discard((model, generation))
        self.handle(ProcessExited(model, generation, reason))

    def _crashed(self, ev: Any) -> None:
        model, generation = ev.value
        if self._alive.get(model) != generation or (model, generation) in self._terminating:
            return
        self._alive[model] = 0
        self.handle(ProcessExited(model, generation, "crashed while serving (simulated fault)"))

    # ------------------------------------------------------------------ Host: requests

    def grant(self, request: Request) -> bool:
        rec = self.record
        i: int = request.id  # type: ignore[assignment]
        if rec.status[i] != PENDING:
            return False
        rec.status[i] = GRANTED
        self._granted += 1
        if self._granted > rec.max_in_flight:
            rec.max_in_flight = self._granted
        model = request.model
        if self._free[model] > 0:
            self._free[model] -= 1
            self._begin(request)
        else:
            self._waiting[model].append(request)
        return True

    def _begin(self, request: Request) -> None:
        """A slot of the model server takes the request: service starts now."""
        if not self._n_serving:
            self._tick()
        self._n_serving += 1
        i: int = request.id  # type: ignore[assignment]
        model = request.model
        env = self.env
        self.record.start[i] = env.now
        profile = self.profiles[model]
        generation = self._alive.get(model, 0)
        first = self._warm.get(model) != generation
        if first:
            self._warm[model] = generation
        service = self._service[i]
        cold = False
        if service != service:  # NaN: not given by the trace
            prompt = self._prompt[i]
            output = self._output[i]
            cold = first and profile.first_request_overhead > 0
            if cold:
                self.cold_starts.add(i)
            service = profile.service_time(
                None if prompt < 0 else prompt, None if output < 0 else output, cold
            ) * profile.noise_factor(self._rng_noise[model])
        if self.hooks is not None:
            self.hooks.started(i, profile, env.now, cold)
        self._serving[model][request] = generation
        if profile.crash_rate > 0:
            crash_in = self._rng_crash[model].expovariate(profile.crash_rate)
            if crash_in < service:
                env.timeout(crash_in, (model, generation)).callbacks.append(self._crashed)
        env.timeout(service, request).callbacks.append(self._served)

    def _served(self, ev: Any) -> None:
        request: Request = ev.value
        model = request.model
        if self._serving[model].pop(request, None) is None:
            return  # aborted earlier: its ServeDone was already reported
        i: int = request.id  # type: ignore[assignment]
        rec = self.record
        rec.end[i] = self.env.now
        rec.status[i] = OK
        if self.hooks is not None:
            self.hooks.finished(i, self.profiles[model], rec.end[i])
        self._release(model)
        self.handle(ServeDone(request))

    def _release(self, model: str) -> None:
        self._granted -= 1
        waiting = self._waiting[model]
        if waiting:
            self._begin(waiting.popleft())
            self._n_serving -= 1
        else:
            self._tick()
            self._n_serving -= 1
            self._free[model] += 1

    def reject(self, request: Request, error: RequestError) -> None:
        i: int = request.id  # type: ignore[assignment]
        rec = self.record
        rec.status[i] = REJECTED if error.kind in _REJECT_KINDS else ERROR
        rec.end[i] = self.env.now
        rec.error[i] = error.kind.value
        if self.hooks is not None:
            self.hooks.rejected(i, error.kind.value, rec.end[i])

    def abort_serving(self, model: str, reason: str) -> None:
        """The process died: every request granted to it fails, each reports ServeDone."""
        rec = self.record
        now = self.env.now
        victims = list(self._serving[model]) + list(self._waiting[model])
        in_service = len(self._serving[model])
        self._serving[model].clear()
        self._waiting[model].clear()
        self._tick()
        self._n_serving -= in_service
        self._free[model] += in_service
        self._granted -= len(victims)
        kind = ErrorKind.UPSTREAM_CRASHED.value
        hooks = self.hooks
        for request in victims:
            i: int = request.id  # type: ignore[assignment]
            rec.status[i] = ERROR
            rec.end[i] = now
            rec.error[i] = kind
            if hooks is not None:
                hooks.aborted(i, reason, now)
            self._defer(ServeDone(request, error=reason))

    def queue_changed(self, queue: Sequence[Request]) -> None:
        """Depth is recorded from the ``QueueDepth`` observation."""

    def unload_complete(self, token: Hashable) -> None:
        """The simulator sends no unloads."""

    def shutdown_complete(self) -> None:
        """The simulator does not shut down mid-trace."""

    def observe(self, observation: object) -> None:
        kind = type(observation)
        if kind is QueueDepth:
            depth = observation.depth  # type: ignore[attr-defined]
            if depth != self._last_depth:
                self._last_depth = depth
                self.record.queue_t.append(observation.at)  # type: ignore[attr-defined]
                self.record.queue_n.append(depth)
        elif kind is ProcessStateChanged:
            self._on_state(observation)  # type: ignore[arg-type]
        elif kind is SwapStarted:
            self._last_evict[observation.model] = observation.evict  # type: ignore[attr-defined]
        if self.hooks is not None:
            self.hooks.observed(observation)

    def _on_state(self, obs: ProcessStateChanged) -> None:
        old, new = obs.old, obs.new
        rec = self.record
        self._tick()
        self._n_transient += _TRANSIENT.get(new, 0) - _TRANSIENT.get(old, 0)
        self._resident += _RESIDENT.get(new, 0) - _RESIDENT.get(old, 0)
        if self._resident > rec.max_resident:
            rec.max_resident = self._resident
        rec.states.append((obs.at, obs.model, STATE_CODES.get(new, 0)))
        if new == "starting":
            evicted = " ".join(self._last_evict.pop(obs.model, ()))
            row = [obs.at, math.nan, obs.model, evicted, 0]
            self._open_swap[obs.model] = row
            rec.swaps.append(row)
        elif old == "starting":
            row = self._open_swap.pop(obs.model, [])
            if row:
                row[1] = obs.at
                row[4] = int(new == "ready")

    # ------------------------------------------------------------------ client side
    # Called by ``sim.agenda.ClientAgenda``, which owns when (and in which order) they happen.

    def arrive(self, index: int, model: str) -> Request | None:
        """The client sends request ``index``; returns it if it still waits afterwards."""
        if self.hooks is not None:
            self.hooks.arrived(index, model, self.env.now)
        request = Request(index, model)
        self.handle(RequestArrived(request))
        return request if self.record.status[index] == PENDING else None

    def give_up(self, request: Request) -> None:
        """The client stops waiting; a no-op once the request was granted or answered."""
        i: int = request.id  # type: ignore[assignment]
        rec = self.record
        if rec.status[i] != PENDING:
            return
        rec.status[i] = CANCELLED
        rec.end[i] = self.env.now
        if self.hooks is not None:
            self.hooks.cancelled(i, rec.end[i])
        self.handle(RequestCancelled(request))

    def finish(self, events: int) -> SimRecord:
        rec = self.record
        rec.events = events
        for i in range(rec.n):
            if rec.status[i] in (PENDING, GRANTED):  # never answered: should not happen
                rec.status[i] = ERROR
                rec.error[i] = "unfinished"
        return rec
