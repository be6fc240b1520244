"""One simulation run: a trace, a routing spec and a scheduler name in; a :class:`SimRecord` out."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping
from typing import Any

import simpy

from llamaswap.core.router import Router
from llamaswap.core.spec import RoutingSpec
from llamaswap.timing import TimingProfile
from sim.host import At, SimClock, SimHost, SimRecord
from sim.trace import Trace

PROGRESS_EVERY = 8192


def simulate(
    spec: RoutingSpec,
    scheduler: str,
    trace: Trace,
    profiles: Mapping[str, TimingProfile],
    seed: int,
    progress: Callable[[int], None] | None = None,
    host_factory: Callable[..., SimHost] = SimHost,
) -> tuple[SimRecord, float]:
    """Replay ``trace`` through the real router with ``scheduler``; returns (record, wall seconds).

    ``host_factory``: a :class:`SimHost` subclass (e.g. one that also writes the event log).
    """
    wall = time.perf_counter()
    env = simpy.Environment()
    clock = SimClock(env)
    models = sorted(set(spec.models) | set(trace.models))
    default = TimingProfile()
    host = host_factory(
        env,
        models,
        {m: profiles.get(m, default) for m in models},
        seed,
        prompt_tokens=trace.prompt_tokens.tolist(),
        output_tokens=trace.output_tokens.tolist(),
        service_time=trace.service_time.tolist(),
    )
    router = Router(dataclasses.replace(spec, scheduler=scheduler), host, clock)
    clock.sink = router.handle
    host.handle = router.handle

    arrivals = trace.arrival.tolist()
    names = [trace.models[k] for k in trace.model.tolist()]
    cancel = trace.cancel_after.tolist()
    n = len(arrivals)
    arrive = host.arrive

    def feed(ev: Any) -> None:
        i: int = ev.value
        now = env.now
        while True:
            arrive(i, names[i], cancel[i])
            i += 1
            if progress is not None and not i % PROGRESS_EVERY:
                progress(i)
            if i >= n or arrivals[i] > now:
                break
        if i < n:
            At(env, arrivals[i], i, feed)

    if n:
        At(env, arrivals[0], 0, feed)
    env.run()
    if progress is not None:
        progress(n)
    record = host.finish(router.events_handled)
    return record, time.perf_counter() - wall
