"""A Host that records what the core asked for, and a harness that drives a Router by hand.

This is not a mock of something that runs here: the core has no I/O, so "the host" in tests is
exactly this: a log of requests, answered by the test itself.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field

from llamaswap.core import (
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
from llamaswap.core.observe import Observation


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


class Harness:
    """A router on a manual clock with a recording host, plus verbs for tests."""

    def __init__(self, spec: RoutingSpec) -> None:
        self.host = RecordingHost()
        self.clock = ManualClock()
        self.router = Router(spec, self.host, self.clock)
        self.clock.sink = self.router.handle
        self._requests: dict[Hashable, Request] = {}

    def request(self, rid: Hashable, model: str) -> Request:
        req = Request(rid, model)
        self._requests[rid] = req
        self.router.handle(RequestArrived(req))
        return req

    def cancel(self, rid: Hashable) -> None:
        self.host.gone.add(rid)
        self.router.handle(RequestCancelled(self._requests[rid]))

    def finish(self, rid: Hashable, error: str | None = None) -> None:
        self.router.handle(ServeDone(self._requests[rid], error))

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
