"""The simulator writing the daemon's event log: same :class:`Recorder`, same record kinds.

:class:`RecordingSimHost` is a :class:`sim.host.SimHost` that also tells a recorder what a daemon's
request handler would log: arrival (with token counts), first byte (start of service plus the
time to first token), completion, rejection and cancel. Grants, swaps and process states come
from the core's observations, exactly as in the daemon. Logged ids are the trace's ids.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import simpy

from llamaswap.core.errors import RequestError
from llamaswap.core.observe import Observation
from llamaswap.core.request import Request
from llamaswap.core.spec import RoutingSpec
from llamaswap.record import EventLog, Recorder
from llamaswap.record.meta import spec_meta
from llamaswap.timing import TimingProfile
from sim.host import PENDING, SimHost, SimRecord
from sim.run import simulate
from sim.trace import Trace


class ReplayedDurations:
    """Recorded durations handed out in order (then from the start again), for a measured replay.

    Duck-types :class:`llamaswap.timing.Distribution` (``sample``/``mean``) so it can stand in for a
    profile's ``load_time``: the n-th load of a model in the simulation takes as long as its n-th
    real load did. Also replays stop durations (``simulate_recorded(stop_durations=...)``).
    """

    kind = "replayed"

    def __init__(self, samples: Sequence[float]) -> None:
        if not samples:
            raise ValueError("ReplayedDurations needs at least one recorded duration")
        self.samples = tuple(float(s) for s in samples)
        self._next = 0

    def sample(self, rng: Any = None) -> float:
        value = self.samples[self._next % len(self.samples)]
        self._next += 1
        return value

    def mean(self) -> float:
        return sum(self.samples) / len(self.samples)


class RecordingSimHost(SimHost):
    """A :class:`SimHost` that also writes the event log (set ``recorder`` before the run)."""

    recorder: Recorder
    stops: Mapping[str, ReplayedDurations] = {}
    """Per model, recorded stop durations to replay instead of the profile's ``unload_time``."""

    def __init__(self, env: simpy.Environment, *args: Any, **kwargs: Any) -> None:
        super().__init__(env, *args, **kwargs)

    def _unload_delay(self, model: str) -> float:
        replay = self.stops.get(model)
        return replay.sample() if replay is not None else super()._unload_delay(model)

    def _tokens(self, i: int) -> tuple[int | None, int | None]:
        prompt, output = self._prompt[i], self._output[i]
        return (None if prompt < 0 else int(prompt)), (None if output < 0 else int(output))

    def arrive(self, index: int, model: str, cancel_after: float) -> None:
        prompt, output = self._tokens(index)
        self.recorder.arrival(
            index, model, prompt_tokens=prompt, output_tokens=output, at=self.env.now
        )
        super().arrive(index, model, cancel_after)

    def observe(self, observation: object) -> None:
        super().observe(observation)
        self.recorder.observe(observation)  # type: ignore[arg-type]

    def _begin(self, request: Request) -> None:
        super()._begin(request)
        i: int = request.id  # type: ignore[assignment]
        profile: TimingProfile = self.profiles[request.model]
        prompt, _ = self._tokens(i)
        ttft = profile.time_to_first_token(prompt, i in self.cold_starts)
        self.recorder.first_byte(i, at=self.env.now + ttft)

    def _served(self, ev: Any) -> None:
        request: Request = ev.value
        if request in self._serving[request.model]:
            i: int = request.id  # type: ignore[assignment]
            prompt, output = self._tokens(i)
            profile = self.profiles[request.model]
            self.recorder.done(
                i,
                200,
                prompt_tokens=profile.default_prompt_tokens if prompt is None else prompt,
                output_tokens=profile.default_output_tokens if output is None else output,
                at=self.env.now,
            )
        super()._served(ev)

    def reject(self, request: Request, error: RequestError) -> None:
        super().reject(request, error)
        self.recorder.done(request.id, error.kind.value, at=self.env.now)

    def abort_serving(self, model: str, reason: str) -> None:
        victims = list(self._serving[model]) + list(self._waiting[model])
        for request in victims:
            self.recorder.done(request.id, 502, error=reason, at=self.env.now)
        super().abort_serving(model, reason)

    def _give_up(self, ev: Any) -> None:
        request: Request = ev.value
        if self.record.status[request.id] == PENDING:  # type: ignore[call-overload]
            self.recorder.cancel(request.id, at=self.env.now)
        super()._give_up(ev)


def trace_ids(trace: Trace) -> list[str]:
    """The id each trace row is logged under: its own id, else its position."""
    if trace.ids is not None:
        return [str(i) for i in trace.ids]
    return [str(i) for i in range(len(trace))]


def simulate_recorded(
    spec: RoutingSpec,
    scheduler: str,
    trace: Trace,
    profiles: Mapping[str, TimingProfile],
    seed: int,
    path: str | Path,
    meta: Mapping[str, Any] | None = None,
    stop_durations: Mapping[str, Sequence[float]] | None = None,
) -> SimRecord:
    """Run :func:`sim.run.simulate` and write its event log to ``path`` (truncated first).

    ``stop_durations``: per model, recorded stopping -> stopped durations; the n-th stop of that
    model takes the n-th of them (a measured replay: real stops vary 120-260 ms around the median
    the profile carries, enough to move a fifo batch boundary).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    for old in path.parent.glob(path.name + ".*"):
        old.unlink()
    ids: Sequence[str] = trace_ids(trace)
    log = EventLog(path, max_bytes=1 << 40, threaded=False)
    holder: dict[str, RecordingSimHost] = {}

    def factory(env: simpy.Environment, *args: Any, **kwargs: Any) -> RecordingSimHost:
        host = RecordingSimHost(env, *args, **kwargs)
        host.stops = {m: ReplayedDurations(d) for m, d in (stop_durations or {}).items() if d}
        routed = {
            "host": "sim",
            "seed": seed,
            **spec_meta(_with_scheduler(spec, scheduler)),
            **dict(meta or {}),
        }
        host.recorder = Recorder(log, lambda: env.now, routed, name=lambda i: ids[i])  # type: ignore[call-overload]
        holder["host"] = host
        return host

    try:
        record, _ = simulate(spec, scheduler, trace, profiles, seed, host_factory=factory)
    finally:
        log.close()
    return record


def _with_scheduler(spec: RoutingSpec, scheduler: str) -> RoutingSpec:
    import dataclasses

    return dataclasses.replace(spec, scheduler=scheduler)


__all__ = [
    "Observation",
    "RecordingSimHost",
    "ReplayedDurations",
    "simulate_recorded",
    "trace_ids",
]
