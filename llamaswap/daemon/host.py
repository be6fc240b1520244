"""The asyncio host: the core's Clock and Host on an event loop.

The core's :class:`Router` is synchronous; it is only ever called from the loop thread, by request
handlers (arrive/cancel/done), by process tasks (ready/exited) and by timers. Each HTTP request
becomes a :class:`Ticket`: a core :class:`Request` plus a future that ``grant``/``reject`` resolve.

Exactly-once rules, enforced here:

- ``grant`` returns False when the caller has already left (its future is cancelled or done), so
  nothing is counted in flight for it.
- after a successful grant the handler sends exactly one ``ServeDone`` (``finish``), from a
  ``finally`` block, even if it is cancelled at the very moment of the grant;
- a handler that leaves while waiting sends ``RequestCancelled`` (``cancel``) instead.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable, Hashable, Sequence
from typing import Any

from llamaswap.core.clock import TimerHandle
from llamaswap.core.errors import RequestError
from llamaswap.core.events import (
    ProcessExited,
    ProcessReady,
    RequestArrived,
    RequestCancelled,
    ServeDone,
    Shutdown,
    UnloadRequested,
)
from llamaswap.core.observe import Observation, ProcessStateChanged, SwapFinished
from llamaswap.core.request import Request
from llamaswap.core.router import Router
from llamaswap.daemon.metrics import Metrics
from llamaswap.daemon.processes import UpstreamProcesses
from llamaswap.record.recorder import Recorder

log = logging.getLogger("llamaswap.host")

_ids = itertools.count(1)


class Ticket:
    """One request's seat in the core, seen from its HTTP handler."""

    __slots__ = (
        "abort_reason",
        "finished",
        "future",
        "granted",
        "granted_at",
        "on_position",
        "position",
        "preload",
        "request",
        "upstream",
    )

    def __init__(self, request: Request, future: asyncio.Future[RequestError | None]) -> None:
        self.request = request
        self.future = future
        self.granted = False
        self.granted_at: float | None = None
        self.finished = False
        self.position = 0
        self.on_position: Callable[[int], None] | None = None
        self.abort_reason: str | None = None
        self.upstream: Any = None
        """The upstream response being relayed (closed on ``abort_serving``)."""
        self.preload = False


class AsyncHost:
    def __init__(self, processes: UpstreamProcesses | None, metrics: Metrics) -> None:
        self.loop = asyncio.get_running_loop()
        self.router: Router | None = None
        self.processes = processes
        self.metrics = metrics
        self.shutdown_done = asyncio.Event()
        self._tickets: dict[Request, Ticket] = {}
        self._serving: dict[str, set[Ticket]] = {}
        self._unloads: dict[Hashable, asyncio.Future[None]] = {}
        self.recorder: Recorder | None = None
        """``serve --record``: the event log sink (grants, swaps, process states)."""
        self.on_observe: Callable[[Observation], None] | None = None
        """The operator's view (UI events, timeline); it watches, it never decides."""
        self.queue: Sequence[Request] = ()
        """The core's queue as last reported (``queue_changed``), in order."""

    def attach(self, router: Router, processes: UpstreamProcesses) -> None:
        self.router = router
        self.processes = processes

    def _handle(self, event: object) -> None:
        assert self.router is not None
        self.router.handle(event)

    # ================================================================== Clock

    def now(self) -> float:
        return self.loop.time()

    def call_at(self, when: float, event: object) -> TimerHandle:
        return self.loop.call_at(when, self._handle, event)

    # ================================================================== reports from processes

    def process_ready(self, model: str, generation: int, slots: int | None = None) -> None:
        self._handle(ProcessReady(model, generation, slots))

    def process_exited(self, model: str, generation: int, reason: str) -> None:
        self._handle(ProcessExited(model, generation, reason))

    # ================================================================== Host (called by the core)

    def spawn(self, model: str, generation: int) -> None:
        assert self.processes is not None
        self.processes.spawn(model, generation)

    def terminate(self, model: str, generation: int) -> None:
        assert self.processes is not None
        self.processes.terminate(model, generation)

    def kill(self, model: str, generation: int) -> None:
        assert self.processes is not None
        self.processes.kill(model, generation)

    def grant(self, request: Request) -> bool:
        ticket = self._tickets.get(request)
        if ticket is None or ticket.future.done():
            self._tickets.pop(request, None)
            return False
        ticket.granted = True
        ticket.granted_at = self.now()
        ticket.future.set_result(None)
        self._serving.setdefault(request.model, set()).add(ticket)
        if ticket.preload:
            self.loop.call_soon(self.finish, ticket)
        else:
            self.metrics.request_granted(request.model, self.now() - request.arrival)
        return True

    def reject(self, request: Request, error: RequestError) -> None:
        ticket = self._tickets.pop(request, None)
        if ticket is not None and not ticket.future.done():
            ticket.future.set_result(error)
        if ticket is not None and ticket.preload:
            log.warning("preload of %s failed: %s", request.model, error.message)

    def abort_serving(self, model: str, reason: str) -> None:
        for ticket in list(self._serving.get(model, ())):
            ticket.abort_reason = reason
            upstream = ticket.upstream
            if upstream is not None:
                upstream.close()

    def queue_changed(self, queue: Sequence[Request]) -> None:
        self.queue = queue
        for index, request in enumerate(queue):
            ticket = self._tickets.get(request)
            if ticket is not None and ticket.position != index + 1:
                ticket.position = index + 1
                if ticket.on_position is not None:
                    ticket.on_position(index + 1)

    def unload_complete(self, token: Hashable) -> None:
        future = self._unloads.pop(token, None)
        if future is not None and not future.done():
            future.set_result(None)

    def shutdown_complete(self) -> None:
        self.shutdown_done.set()

    def observe(self, observation: Observation) -> None:
        self.metrics.observe(observation)
        if self.recorder is not None:
            self.recorder.observe(observation)
        if self.on_observe is not None:
            self.on_observe(observation)
        if isinstance(observation, ProcessStateChanged):
            log.info(
                "%s: %s -> %s (%s)",
                observation.model,
                observation.old,
                observation.new,
                observation.reason,
            )
        elif isinstance(observation, SwapFinished) and observation.error is not None:
            log.warning("swap to %s failed: %s", observation.model, observation.error)

    # ================================================================== for request handlers

    def submit(
        self, model: str, *, preload: bool = False, request_id: Hashable | None = None
    ) -> Ticket:
        """``request_id``: the client's ``X-Request-Id`` (recorded logs then line up with traces)."""
        request = Request(next(_ids) if request_id is None else request_id, model, self.now())
        ticket = Ticket(request, self.loop.create_future())
        ticket.preload = preload
        self._tickets[request] = ticket
        self._handle(RequestArrived(request))
        return ticket

    def cancel(self, ticket: Ticket) -> None:
        """The caller left before being served (or gave up waiting)."""
        if ticket.granted:
            self.finish(ticket, "client disconnected")
            return
        if self._tickets.pop(ticket.request, None) is not None:
            if not ticket.future.done():
                ticket.future.cancel()
            self._handle(RequestCancelled(ticket.request))

    def finish(self, ticket: Ticket, error: str | None = None) -> None:
        if not ticket.granted or ticket.finished:
            return
        ticket.finished = True
        self._tickets.pop(ticket.request, None)
        serving = self._serving.get(ticket.request.model)
        if serving is not None:
            serving.discard(ticket)
        self._handle(ServeDone(ticket.request, error))

    def release(self, ticket: Ticket, error: str | None = None) -> None:
        """End of a handler: ServeDone if granted, RequestCancelled if still waiting."""
        if ticket.granted:
            self.finish(ticket, error)
        elif ticket.request in self._tickets:
            self.cancel(ticket)

    async def unload(self, models: tuple[str, ...] | None) -> None:
        token = object()
        future: asyncio.Future[None] = self.loop.create_future()
        self._unloads[token] = future
        self._handle(UnloadRequested(models, token))
        await future

    def shutdown(self, timeout: float | None) -> None:
        self._handle(Shutdown(timeout))

    def tickets(self) -> list[Ticket]:
        """Every request the core holds (queued or being served), oldest first."""
        return list(self._tickets.values())

    def waiting(self) -> int:
        return sum(1 for t in self._tickets.values() if not t.granted)

    def in_flight(self, model: str | None = None) -> int:
        if model is not None:
            return len(self._serving.get(model, ()))
        return sum(len(s) for s in self._serving.values())
