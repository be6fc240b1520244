"""A Host that records what the core asked for, and a harness that drives a Router by hand.

This is not a mock of something that runs here: the core has no I/O, so "the host" in tests is
exactly this: a log of requests, answered by the test itself.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field

from llamaswap.core import (
    ErrorKind,
    ManualClock,
    ProcessExited,
    ProcessReady,
    Request,
    RequestArrived,
    RequestCancelled,
    RequestError,
    Router,
    RoutingSpec,
    ServeDone,
    Shutdown,
    UnloadRequested,
)
from llamaswap.core.clock import TimerHandle
from llamaswap.core.errors import LoadFailure
from llamaswap.core.observe import Observation
from llamaswap.core.process import ProcessMachine, ProcessState
from llamaswap.core.router import SchedulerFactory


@dataclass
class RecordingHost:
    spawned: list[tuple[str, int]] = field(default_factory=list)
    terminated: list[tuple[str, int]] = field(default_factory=list)
    killed: list[tuple[str, int]] = field(default_factory=list)
    granted: list[Request] = field(default_factory=list)
    rejected: list[tuple[Request, RequestError]] = field(default_factory=list)
    aborted: list[tuple[str, str]] = field(default_factory=list)
    unloads_done: list[Hashable] = field(default_factory=list)
    shutdown_done: int = 0
    observations: list[Observation] = field(default_factory=list)
    queue: list[Request] = field(default_factory=list)
    gone: set[Hashable] = field(default_factory=set)
    """Request ids whose caller has left: ``grant`` returns False for them."""
    answers: dict[Hashable, int] = field(default_factory=dict)

    def spawn(self, model: str, generation: int) -> None:
        self.spawned.append((model, generation))

    def terminate(self, model: str, generation: int) -> None:
        self.terminated.append((model, generation))

    def kill(self, model: str, generation: int) -> None:
        self.killed.append((model, generation))

    def grant(self, request: Request) -> bool:
        self.answers[request.id] = self.answers.get(request.id, 0) + 1
        if request.id in self.gone:
            return False
        self.granted.append(request)
        return True

    def reject(self, request: Request, error: RequestError) -> None:
        self.answers[request.id] = self.answers.get(request.id, 0) + 1
        self.rejected.append((request, error))

    def abort_serving(self, model: str, reason: str) -> None:
        self.aborted.append((model, reason))

    def queue_changed(self, queue: Sequence[Request]) -> None:
        self.queue = list(queue)

    def unload_complete(self, token: Hashable) -> None:
        self.unloads_done.append(token)

    def shutdown_complete(self) -> None:
        self.shutdown_done += 1

    def observe(self, observation: Observation) -> None:
        self.observations.append(observation)

    # helpers for assertions
    def granted_ids(self) -> list[Hashable]:
        return [r.id for r in self.granted]

    def rejected_ids(self) -> list[Hashable]:
        return [r.id for r, _ in self.rejected]

    def error_of(self, rid: Hashable) -> ErrorKind | None:
        """The kind of the (single) rejection of request ``rid``, or None if it was not rejected."""
        kinds = [e.kind for r, e in self.rejected if r.id == rid]
        assert len(kinds) <= 1, f"{rid!r} rejected {len(kinds)} times"
        return kinds[0] if kinds else None

    def spawned_models(self) -> list[str]:
        return [m for m, _ in self.spawned]

    def terminated_models(self) -> list[str]:
        return [m for m, _ in self.terminated]


class Harness:
    """A router on a manual clock with a recording host, plus verbs for tests."""

    def __init__(
        self,
        spec: RoutingSpec,
        scheduler_factory: SchedulerFactory | None = None,
        host: RecordingHost | None = None,
    ) -> None:
        self.host = host if host is not None else RecordingHost()
        self.clock = ManualClock()
        self.router = Router(spec, self.host, self.clock, scheduler_factory)
        self.clock.sink = self.router.handle
        self._requests: dict[Hashable, Request] = {}
        self.finished: set[Hashable] = set()

    def request(self, rid: Hashable, model: str) -> Request:
        req = Request(rid, model)
        self._requests[rid] = req
        self.router.handle(RequestArrived(req))
        return req

    def cancel(self, rid: Hashable) -> None:
        self.host.gone.add(rid)
        self.router.handle(RequestCancelled(self._requests[rid]))

    def finish(self, rid: Hashable, error: str | None = None) -> None:
        self.finished.add(rid)
        self.router.handle(ServeDone(self._requests[rid], error))

    def finish_all(self) -> None:
        """Report ServeDone for every granted request that has not finished yet."""
        for req in list(self.host.granted):
            if req.id not in self.finished:
                self.finish(req.id)

    def advance(self, seconds: float) -> None:
        """Move the manual clock forward, delivering every timer that falls due."""
        self.clock.advance(seconds)

    def settle(self, *, serve: bool = True, rounds: int = 100) -> None:
        """Play an obliging world until nothing moves: starting processes become ready, stopping
        ones exit and (with ``serve``) granted requests finish. Bounded by ``rounds``."""
        for _ in range(rounds):
            moved = False
            for model in sorted(self.router.processes):
                if self.state(model) == "starting":
                    self.ready(model)
                    moved = True
                elif self.state(model) == "stopping":
                    self.exited(model)
                    moved = True
            if serve:
                pending = [r for r in self.host.granted if r.id not in self.finished]
                for req in pending:
                    self.finish(req.id)
                moved = moved or bool(pending)
            if not moved:
                return
        raise AssertionError(f"world did not settle in {rounds} rounds")

    def req(self, rid: Hashable) -> Request:
        return self._requests[rid]

    def generation(self, model: str) -> int:
        return self.router.processes[model].generation

    def ready(self, model: str) -> None:
        self.router.handle(ProcessReady(model, self.generation(model)))

    def exited(self, model: str, reason: str = "exited") -> None:
        self.router.handle(ProcessExited(model, self.generation(model), reason))

    def unload(self, *models: str, token: Hashable = "unload") -> None:
        self.router.handle(UnloadRequested(tuple(models) if models else None, token))

    def shutdown(self) -> None:
        self.router.handle(Shutdown())

    def state(self, model: str) -> str:
        return self.router.processes[model].state.value


class RecordingPort:
    """A ``ProcessPort`` for driving one :class:`ProcessMachine` without a router.

    Timers live on a :class:`ManualClock` whose sink feeds them back into the machine, exactly as
    the router would.
    """

    def __init__(self) -> None:
        self.clock = ManualClock(sink=self._deliver)
        self.calls: list[tuple[str, str, int]] = []
        """``(verb, model, generation)`` for spawn / terminate / kill."""
        self.settles: list[tuple[ProcessState, str | None]] = []
        """``(state, failure message)`` per ``settled``; ``failures`` keeps the typed failures."""
        self.failures: list[LoadFailure | None] = []
        self.transitions: list[tuple[str, str]] = []
        self.aborts: list[str] = []
        self.machine: ProcessMachine | None = None

    def make(self, model: str = "M", **kwargs: float) -> ProcessMachine:
        kwargs.setdefault("health_check_timeout", 30.0)
        self.machine = ProcessMachine(model, self, **kwargs)
        return self.machine

    def _deliver(self, event: object) -> None:
        assert self.machine is not None
        kind, generation = event  # type: ignore[misc]
        self.machine.on_timer(kind, generation)

    def verbs(self) -> list[str]:
        return [verb for verb, _, _ in self.calls]

    def states(self) -> list[str]:
        return [new for _, new in self.transitions]

    # ProcessPort
    def now(self) -> float:
        return self.clock.now()

    def spawn(self, model: str, generation: int) -> None:
        self.calls.append(("spawn", model, generation))

    def terminate(self, model: str, generation: int) -> None:
        self.calls.append(("terminate", model, generation))

    def kill(self, model: str, generation: int) -> None:
        self.calls.append(("kill", model, generation))

    def set_timer(self, model: str, when: float, kind: str, generation: int) -> TimerHandle:
        return self.clock.call_at(when, (kind, generation))

    def abort_serving(self, model: str, reason: str) -> None:
        self.aborts.append(reason)

    def state_changed(
        self, model: str, old: ProcessState, new: ProcessState, generation: int, reason: str
    ) -> None:
        self.transitions.append((old.value, new.value))

    def settled(self, model: str, state: ProcessState, failure: LoadFailure | None) -> None:
        self.settles.append((state, None if failure is None else failure.message))
        self.failures.append(failure)
