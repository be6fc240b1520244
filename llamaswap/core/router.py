"""The router: the single serialized event path that ties scheduler, swapper and processes together.

``Router.handle(event)`` is the only way in. Events that the core raises for itself (swap done,
stop completed) go into the same internal queue, so no component is ever re-entered while it is
deciding: like llama-swap's run loop, but without a goroutine, and like h11/aioquic, without I/O.

The router implements the scheduler's :class:`Effects` and the processes' port; it reaches the
world only through :class:`Host` and :class:`Clock`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import cast

from llamaswap.core.admission import shutting_down
from llamaswap.core.clock import Clock, TimerHandle
from llamaswap.core.errors import ErrorKind, LoadFailure, RequestError
from llamaswap.core.events import (
    Event,
    ProcessExited,
    ProcessReady,
    RequestArrived,
    RequestCancelled,
    ServeDone,
    Shutdown,
    StopCompleted,
    SwapDone,
    TimerFired,
    UnloadRequested,
)
from llamaswap.core.host import Host
from llamaswap.core.observe import (
    ProcessStateChanged,
    QueueDepth,
    RequestFailed,
    RequestGranted,
    SwapFinished,
    SwapStarted,
)
from llamaswap.core.policies import make_scheduler
from llamaswap.core.process import ProcessMachine, ProcessState
from llamaswap.core.request import Request
from llamaswap.core.scheduler import Scheduler
from llamaswap.core.spec import RoutingSpec
from llamaswap.core.swapper import GroupSwapper, Swapper

_RUNNING = (ProcessState.STARTING, ProcessState.READY, ProcessState.STOPPING)
_DOWN = (ProcessState.STOPPED, ProcessState.SHUTDOWN)

SchedulerFactory = Callable[[RoutingSpec, "Router", Swapper], Scheduler]


@dataclass
class _SwapOp:
    """A swap in progress: first every evicted model stops, then the target is made ready."""

    model: str
    pending_evict: set[str]
    loading: bool = False
    finished: bool = False


@dataclass(eq=False)
class _UnloadOp:
    """An unload waiting for its processes to stop. Hosts may reuse tokens: each op is answered."""

    token: Hashable
    pending: set[str]


@dataclass
class _ShutdownOp:
    pending: set[str] = field(default_factory=set)
    answered: bool = False


class Router:
    def __init__(
        self,
        spec: RoutingSpec,
        host: Host,
        clock: Clock,
        scheduler_factory: SchedulerFactory | None = None,
    ) -> None:
        self.spec = spec
        self._host = host
        self._clock = clock
        self.processes: dict[str, ProcessMachine] = {
            model_id: ProcessMachine(
                model_id,
                self,
                health_check_timeout=spec.health_check_timeout,
                ttl=model.ttl,
                unload_timeout=model.unload_timeout,
            )
            for model_id, model in spec.models.items()
        }
        self.swapper: Swapper = GroupSwapper(spec.groups, spec.models)
        factory = scheduler_factory or make_scheduler
        self.scheduler: Scheduler = factory(spec, self, self.swapper)
        self._pending: deque[Event] = deque()
        self._busy = False
        self._swaps: dict[str, _SwapOp] = {}
        self._unloads: list[_UnloadOp] = []
        self._serving: dict[Request, str] = {}
        self._shutdown: _ShutdownOp | None = None
        self.events_handled = 0

    # ================================================================== the one way in

    def handle(self, event: object) -> None:
        """Process ``event`` and everything it causes, then return. Never blocks.

        A malformed event (not an event, an unload naming unknown models) is refused with an
        exception *before* anything changes, so no decision is ever left half-made.
        """
        self._check(event)
        self._pending.append(event)  # type: ignore[arg-type]
        if self._busy:
            return
        self._busy = True
        try:
            while self._pending:
                self._dispatch(self._pending.popleft())
        finally:
            self._busy = False

    def _check(self, event: object) -> None:
        if not isinstance(event, Event):
            raise TypeError(f"not an event: {event!r}")
        if isinstance(event, UnloadRequested) and event.models is not None:
            unknown = sorted(set(event.models) - set(self.processes))
            if unknown:
                raise ValueError(f"unload of unknown models {unknown}: hosts resolve names first")

    def _dispatch(self, event: Event) -> None:
        self.events_handled += 1
        if isinstance(event, RequestArrived):
            self._on_request(event.request)
        elif isinstance(event, ServeDone):
            self._on_serve_done(event.request)
        elif isinstance(event, TimerFired):
            self._on_timer(event)
        elif isinstance(event, SwapDone):
            failure = event.failure
            message = None if failure is None else failure.message
            self._host.observe(SwapFinished(self._clock.now(), event.model, message))
            self.scheduler.on_swap_done(event.model, failure)
        elif isinstance(event, ProcessReady):
            process = self.processes.get(event.model)
            if process is not None:
                fresh = process.generation == event.generation
                if event.slots is not None and fresh and process.state is ProcessState.STARTING:
                    self.scheduler.on_upstream_slots(event.model, event.slots)
                process.on_ready(event.generation)
        elif isinstance(event, ProcessExited):
            if event.model in self.processes:
                self.processes[event.model].on_exited(event.generation, event.reason)
        elif isinstance(event, RequestCancelled):
            if self._shutdown is None:
                self.scheduler.on_cancel(event.request)
        elif isinstance(event, UnloadRequested):
            self._on_unload(event)
        elif isinstance(event, StopCompleted):
            self._host.unload_complete(event.token)
        else:
            self._on_shutdown(event)

    # ================================================================== event handlers

    def _on_request(self, request: Request) -> None:
        if self._shutdown is not None:
            self.grant_error(request, shutting_down())
            return
        self.scheduler.on_request(request)

    def _on_serve_done(self, request: Request) -> None:
        model = self._serving.pop(request, None)
        if model is None:
            return  # not granted, or already reported: exactly-once is enforced here
        self.processes[model].serve_finished()
        self.scheduler.on_serve_done(request)

    def _on_timer(self, event: TimerFired) -> None:
        if event.owner == "process":
            key = cast(tuple[str, str, int], event.key)
            self.processes[key[0]].on_timer(key[1], key[2])
        elif event.owner == "scheduler" and self._shutdown is None:
            self.scheduler.on_timer(event.key)

    def _on_unload(self, event: UnloadRequested) -> None:
        if self._shutdown is not None:
            self._host.unload_complete(event.token)
            return
        models = sorted(self.processes) if event.models is None else sorted(set(event.models))
        self.scheduler.on_unload(models, event.token)

    def _on_shutdown(self, event: Shutdown) -> None:
        if self._shutdown is not None:
            return
        self._shutdown = _ShutdownOp(pending=set(self.processes))
        self.scheduler.on_shutdown()
        for op in list(self._swaps.values()):
            op.finished = True
        self._swaps.clear()
        # Like llama-swap, a missing or non-positive budget means healthCheckTimeout.
        timeout = (
            event.timeout if event.timeout and event.timeout > 0 else self.spec.health_check_timeout
        )
        for model in sorted(self.processes):
            self.processes[model].shutdown(timeout)
        self._maybe_shutdown_complete()

    # ================================================================== Effects (for the scheduler)

    def now(self) -> float:
        return self._clock.now()

    def model_state(self, model: str) -> ProcessState | None:
        process = self.processes.get(model)
        return process.state if process is not None else None

    def running_models(self) -> list[str]:
        return sorted(m for m, p in self.processes.items() if p.state in _RUNNING)

    def start_swap(self, model: str, evict: Sequence[str]) -> None:
        if self._shutdown is not None:
            self._pending.append(SwapDone(model, LoadFailure.failed("shutting down")))
            return
        op = _SwapOp(model, set(evict))
        self._swaps[model] = op
        self._host.observe(SwapStarted(self._clock.now(), model, tuple(evict)))
        timeout = self.spec.health_check_timeout
        for victim in sorted(evict):
            self.processes[victim].stop(timeout, f"evicted to load {model}")
        self._advance(op)

    def cancel_swap(self, model: str) -> None:
        op = self._swaps.get(model)
        if op is None or op.finished:
            return
        if op.loading:
            spec = self.spec.models[model]
            self.processes[model].stop(spec.unload_timeout, "nobody waits for this load any more")
        if not op.finished:
            self._finish(op, LoadFailure.aborted("nobody waits for this load any more"))

    def grant_error(self, request: Request, error: RequestError) -> None:
        self._host.observe(
            RequestFailed(
                self._clock.now(), request.id, request.model, error.kind.value, error.message
            )
        )
        self._host.reject(request, error)

    def grant_serve(self, request: Request) -> bool:
        process = self.processes[request.model]
        if process.state is not ProcessState.READY:
            self.grant_error(
                request,
                RequestError(ErrorKind.LOAD_FAILED, f"model {request.model!r} is not ready"),
            )
            return False
        if not self._host.grant(request):
            return False
        self._serving[request] = request.model
        process.serve_started()
        self._host.observe(RequestGranted(self._clock.now(), request.id, request.model))
        return True

    def stop_processes(self, models: Sequence[str], token: Hashable) -> None:
        targets = set(models)
        for model in targets:
            op = self._swaps.pop(model, None)
            if op is not None:
                op.finished = True  # the scheduler already failed its waiters
        unload = _UnloadOp(token, set(targets))
        self._unloads.append(unload)
        for model in sorted(targets):
            self.processes[model].stop(self.spec.models[model].unload_timeout, "unload requested")
        self._check_unload(unload)

    def queue_changed(self, queue: Sequence[Request]) -> None:
        self._host.queue_changed(queue)
        self._host.observe(QueueDepth(self._clock.now(), len(queue)))

    def call_at(self, when: float, key: Hashable) -> TimerHandle:
        return self._clock.call_at(when, TimerFired("scheduler", key))

    # ================================================================== ProcessPort (for processes)

    def spawn(self, model: str, generation: int) -> None:
        self._host.spawn(model, generation)

    def terminate(self, model: str, generation: int) -> None:
        self._host.terminate(model, generation)

    def kill(self, model: str, generation: int) -> None:
        self._host.kill(model, generation)

    def set_timer(self, model: str, when: float, kind: str, generation: int) -> TimerHandle:
        return self._clock.call_at(when, TimerFired("process", (model, kind, generation)))

    def abort_serving(self, model: str, reason: str) -> None:
        self._host.abort_serving(model, reason)

    def state_changed(
        self, model: str, old: ProcessState, new: ProcessState, generation: int, reason: str
    ) -> None:
        self._host.observe(
            ProcessStateChanged(self._clock.now(), model, old.value, new.value, generation, reason)
        )

    def settled(self, model: str, state: ProcessState, failure: LoadFailure | None) -> None:
        """Wake every waiter: swaps waiting on an eviction or a load, unloads, shutdown."""
        for op in list(self._swaps.values()):
            if op.finished:
                continue
            if not op.loading:
                if model in op.pending_evict and state in _DOWN:
                    op.pending_evict.discard(model)
                    self._advance(op)
            elif op.model == model:
                if state is ProcessState.READY:
                    self._finish(op, None)
                elif failure is not None:
                    self._finish(op, failure)
                elif state in _DOWN and not self.processes[model].restart_pending:
                    # A stop that ends with a queued restart (ensure_ready while stopping, e.g. a
                    # request racing a TTL unload) is not the end of this load: keep waiting.
                    self._finish(
                        op, LoadFailure.failed(f"process {state.value} before it became ready")
                    )
        if state in _DOWN:
            for unload in list(self._unloads):
                unload.pending.discard(model)
                self._check_unload(unload)
        if self._shutdown is not None and state is ProcessState.SHUTDOWN:
            self._shutdown.pending.discard(model)
            self._maybe_shutdown_complete()

    # ================================================================== introspection

    def process_states(self) -> Mapping[str, ProcessState]:
        return {m: p.state for m, p in sorted(self.processes.items())}

    def in_flight(self) -> Mapping[Request, str]:
        return dict(self._serving)

    @property
    def shutting_down(self) -> bool:
        return self._shutdown is not None

    # ================================================================== internals

    def _advance(self, op: _SwapOp) -> None:
        if op.finished or op.loading or op.pending_evict:
            return
        op.loading = True
        self.processes[op.model].ensure_ready()

    def _finish(self, op: _SwapOp, failure: LoadFailure | None) -> None:
        op.finished = True
        if self._swaps.get(op.model) is op:
            del self._swaps[op.model]
        self._pending.append(SwapDone(op.model, failure))

    def _check_unload(self, op: _UnloadOp) -> None:
        if not op.pending and op in self._unloads:
            self._unloads.remove(op)
            self._pending.append(StopCompleted(op.token))

    def _maybe_shutdown_complete(self) -> None:
        op = self._shutdown
        if op is not None and not op.pending and not op.answered:
            op.answered = True
            self._host.shutdown_complete()
