"""One simulation run: a trace, a routing spec and a scheduler name in; a :class:`SimRecord` out."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping

import simpy

from llamaswap.core.router import Router
from llamaswap.core.spec import RoutingSpec
from llamaswap.timing import TimingProfile
from sim.agenda import ClientAgenda
from sim.host import SimClock, SimHooks, SimHost, SimRecord
from sim.trace import Trace


def simulate(
    spec: RoutingSpec,
    scheduler: str,
    trace: Trace,
    profiles: Mapping[str, TimingProfile],
    seed: int,
    progress: Callable[[int], None] | None = None,
    hooks: SimHooks | None = None,
    stop_time: Callable[[str], float] | None = None,
    host_factory: Callable[..., SimHost] = SimHost,
) -> tuple[SimRecord, float]:
    """Replay ``trace`` through the real router with ``scheduler``; returns (record, wall seconds).

    ``hooks`` and ``stop_time``: see :class:`SimHost` (e.g. ``sim.eventlog`` writes the event log).
    Neither changes a decision: a run with hooks is the same run.
    ``host_factory``: builds the host from :class:`SimHost`'s arguments; a host that routes some
    requests before the core sees them (``sim.federation``: selectors, profiles, peers) passes its
    subclass here. Everything else uses :class:`SimHost` itself.
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
        hooks=hooks,
        stop_time=stop_time,
    )
    router = Router(dataclasses.replace(spec, scheduler=scheduler), host, clock)
    clock.sink = router.handle
    host.handle = router.handle
    ClientAgenda(env, host, trace, progress).start()
    env.run()
    if progress is not None:
        progress(len(trace))
    record = host.finish(router.events_handled)
    return record, time.perf_counter() - wall
