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


class RecordingSimHost(SimHost):
    """A :class:`SimHost` that also writes the event log (set ``recorder`` before the run)."""

    recorder: Recorder

    def __init__(self, env: simpy.Environment, *args: Any, **kwargs: Any) -> None:
        super().__init__(env, *args, **kwargs)

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
        ttft = profile.time_to_first_token(prompt)
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
) -> SimRecord:
    """Run :func:`sim.run.simulate` and write its event log to ``path`` (truncated first)."""
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


__all__ = ["Observation", "RecordingSimHost", "simulate_recorded", "trace_ids"]
