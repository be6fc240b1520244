"""The simulator writing the daemon's event log: same :class:`Recorder`, same record kinds.

:class:`LogHooks` is a :class:`sim.host.SimHooks` that tells a recorder what a daemon's request
handler would log: arrival (with token counts), first byte (start of service plus the time to first
token), completion, rejection and cancel. Grants, swaps and process states come from the core's
observations, exactly as in the daemon. Logged ids are the trace's ids. A run with the hooks is the
same run as one without (they only listen), so a report and its log come from one simulation.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from llamaswap.core.spec import RoutingSpec
from llamaswap.record import EventLog, Recorder
from llamaswap.record.meta import spec_meta
from llamaswap.timing import TimingProfile
from sim.host import SimHooks, SimRecord
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


def stop_replay(
    stop_durations: Mapping[str, Sequence[float]] | None,
    profiles: Mapping[str, TimingProfile],
) -> Callable[[str], float] | None:
    """A ``SimHost`` ``stop_time``: per model the recorded stops in order, else the profile's."""
    replays = {m: ReplayedDurations(d) for m, d in (stop_durations or {}).items() if d}
    if not replays:
        return None
    default = TimingProfile().unload_time

    def stop_time(model: str) -> float:
        replay = replays.get(model)
        if replay is not None:
            return replay.sample()
        profile = profiles.get(model)
        return default if profile is None else profile.unload_time

    return stop_time


class LogHooks(SimHooks):
    """Writes a run's requests and observations through ``recorder`` (the daemon's log format)."""

    def __init__(self, recorder: Recorder, trace: Trace) -> None:
        self.recorder = recorder
        self._prompt = trace.prompt_tokens.tolist()
        self._output = trace.output_tokens.tolist()

    def _tokens(self, i: int) -> tuple[int | None, int | None]:
        prompt, output = self._prompt[i], self._output[i]
        return (None if prompt < 0 else int(prompt)), (None if output < 0 else int(output))

    def arrived(self, index: int, model: str, at: float) -> None:
        prompt, output = self._tokens(index)
        self.recorder.arrival(index, model, prompt_tokens=prompt, output_tokens=output, at=at)

    def started(self, index: int, profile: TimingProfile, at: float, cold: bool) -> None:
        prompt, _ = self._tokens(index)
        self.recorder.first_byte(index, at=at + profile.time_to_first_token(prompt, cold))

    def finished(self, index: int, profile: TimingProfile, at: float) -> None:
        prompt, output = self._tokens(index)
        self.recorder.done(
            index,
            200,
            prompt_tokens=profile.default_prompt_tokens if prompt is None else prompt,
            output_tokens=profile.default_output_tokens if output is None else output,
            at=at,
        )

    def rejected(self, index: int, kind: str, at: float) -> None:
        self.recorder.done(index, kind, at=at)

    def aborted(self, index: int, reason: str, at: float) -> None:
        self.recorder.done(index, 502, error=reason, at=at)

    def cancelled(self, index: int, at: float) -> None:
        self.recorder.cancel(index, at=at)

    def observed(self, observation: object) -> None:
        self.recorder.observe(observation)  # type: ignore[arg-type]


def trace_ids(trace: Trace) -> list[str]:
    """The id each trace row is logged under: its own id, else its position."""
    if trace.ids is not None:
        return [str(i) for i in trace.ids]
    return [str(i) for i in range(len(trace))]


@contextmanager
def event_log(
    path: str | Path,
    spec: RoutingSpec,
    scheduler: str,
    trace: Trace,
    seed: int,
    meta: Mapping[str, Any] | None = None,
) -> Iterator[LogHooks]:
    """Hooks writing ``path`` (truncated first, old rotations removed) for one run; closed on exit.

    The recorder's clock origin is the simulation's start (time 0): every hook passes its time.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    for old in path.parent.glob(path.name + ".*"):
        old.unlink()
    ids = trace_ids(trace)
    log = EventLog(path, max_bytes=1 << 40, threaded=False)
    routed = {
        "host": "sim",
        "seed": seed,
        **spec_meta(dataclasses.replace(spec, scheduler=scheduler)),
        **dict(meta or {}),
    }
    try:
        recorder = Recorder(log, lambda: 0.0, routed, name=lambda i: ids[i])  # type: ignore[call-overload]
        yield LogHooks(recorder, trace)
    finally:
        log.close()


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
    with event_log(path, spec, scheduler, trace, seed, meta) as hooks:
        record, _ = simulate(
            spec,
            scheduler,
            trace,
            profiles,
            seed,
            hooks=hooks,
            stop_time=stop_replay(stop_durations, profiles),
        )
    return record


__all__ = [
    "LogHooks",
    "ReplayedDurations",
    "event_log",
    "simulate_recorded",
    "stop_replay",
    "trace_ids",
]
