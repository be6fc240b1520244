"""One upstream process as an executable transition table (reference §3, the llama-swap #946 lesson).

Every decision to start or stop is taken *here*, on the machine's current phase, never on a stale
snapshot held by a caller. :data:`TABLE` maps every ``(phase, input)`` pair to the next phase and
the actions to run, in order; it is complete (checked at import), so no pair is unhandled and no
decision lives outside it. ``docs/design.md`` shows it as rendered by :func:`table_markdown`, and a
test fails when the two differ.

The phases refine the public :class:`ProcessState`: a stop with a start queued behind it
(``restarting``) and a stop that ends in shutdown (``shutting-down``) are phases of their own
instead of flags. Reports and timers of another generation are stale and never reach the table.
Every settled outcome (ready, stopped, a failed or aborted start, shutdown) is reported through
``ProcessPort.settled`` so that all waiters are re-evaluated.
"""

from __future__ import annotations

import enum
import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from llamaswap.core.clock import TimerHandle
from llamaswap.core.errors import LoadFailure
from llamaswap.core.spec import START_ABORT_GRACE


class ProcessState(enum.Enum):
    STOPPED = "stopped"
    STARTING = "starting"
    READY = "ready"
    STOPPING = "stopping"
    SHUTDOWN = "shutdown"


class Phase(enum.Enum):
    """The machine's state, sub-states included; ``state`` is what the world sees."""

    STOPPED = "stopped"
    STARTING = "starting"
    READY = "ready"
    STOPPING = "stopping"
    RESTARTING = "restarting"
    """Stopping, with a start queued behind the stop (``ensure_ready`` while stopping)."""
    SHUTTING_DOWN = "shutting-down"
    """Stopping, and then terminal: ``shutdown`` was asked while the process was up."""
    SHUTDOWN = "shutdown"

    @property
    def state(self) -> ProcessState:
        return _PUBLIC[self]


_PUBLIC = {
    Phase.STOPPED: ProcessState.STOPPED,
    Phase.STARTING: ProcessState.STARTING,
    Phase.READY: ProcessState.READY,
    Phase.STOPPING: ProcessState.STOPPING,
    Phase.RESTARTING: ProcessState.STOPPING,
    Phase.SHUTTING_DOWN: ProcessState.STOPPING,
    Phase.SHUTDOWN: ProcessState.SHUTDOWN,
}


class Input(enum.Enum):
    """Requests from the router, reports from the host, timers, serve bookkeeping."""

    ENSURE_READY = "ensure_ready"
    STOP = "stop"
    SHUTDOWN = "shutdown"
    READY = "ready"
    """The host saw this generation pass its health check."""
    EXITED = "exited"
    HEALTH_TIMEOUT = "health deadline"
    KILL_TIMEOUT = "kill deadline"
    TTL_DUE = "ttl due"
    """Idle, and ``ttl`` seconds have passed since the last completed request."""
    TTL_EARLY = "ttl early"
    """Idle, but a completion after the timer was set moved the deadline later."""
    TTL_BUSY = "ttl serving"
    """A request is in flight: ``serve_finished`` arms the TTL again."""
    SERVE_STARTED = "serve_started"
    SERVE_FINISHED = "serve_finished"


class Action(enum.Enum):
    START = "start"
    """New generation, enter starting, arm the health deadline, ``spawn``."""
    BEGIN_STOP = "begin_stop"
    """Cancel health/TTL timers, enter stopping, arm the kill deadline, ``terminate``."""
    TIGHTEN_KILL = "tighten_kill"
    """A second stop with a shorter graceful window brings the kill deadline forward."""
    KILL = "kill"
    MARK_READY = "mark_ready"
    """Cancel the health deadline, enter ready, count the TTL from now."""
    MARK_STOPPED = "mark_stopped"
    """Cancel every timer, enter stopped."""
    MARK_SHUTDOWN = "mark_shutdown"
    ABORT_CRASHED = "abort_crashed"
    """``abort_serving``: the process died under its requests."""
    ABORT_IN_FLIGHT = "abort_in_flight"
    """``abort_serving`` if requests are still in flight when a stop completes."""
    SETTLE = "settle"
    """``settled(state)``: the state reached, no failure."""
    SETTLE_ABORTED = "settle_aborted"
    """``settled(state, load aborted)``: the start waited for was stopped on purpose."""
    SETTLE_FAILED = "settle_failed"
    """``settled(state, load failed)``: it could not start (exit, health timeout, shut down)."""
    ARM_TTL = "arm_ttl"
    COUNT_IN = "count_in"
    """One more request in flight; the TTL does not run while serving."""
    COUNT_OUT = "count_out"
    """One fewer in flight; the TTL counts from this completion."""
    ARM_TTL_IF_IDLE = "arm_ttl_if_idle"


class Transition(NamedTuple):
    next: Phase
    actions: tuple[Action, ...] = ()


class TransitionError(RuntimeError):
    """The table and the machine disagree: a bug in this module, never a caller's mistake."""


P, In, A = Phase, Input, Action

_ROWS: dict[tuple[Phase, Input], Transition] = {
    # stopped
    (P.STOPPED, In.ENSURE_READY): Transition(P.STARTING, (A.START,)),
    (P.STOPPED, In.STOP): Transition(P.STOPPED, (A.SETTLE,)),
    (P.STOPPED, In.SHUTDOWN): Transition(P.SHUTDOWN, (A.MARK_SHUTDOWN, A.SETTLE)),
    # starting
    (P.STARTING, In.ENSURE_READY): Transition(P.STARTING),  # the start in progress will settle
    (P.STARTING, In.STOP): Transition(P.STOPPING, (A.BEGIN_STOP, A.SETTLE_ABORTED)),
    (P.STARTING, In.SHUTDOWN): Transition(P.SHUTTING_DOWN, (A.BEGIN_STOP, A.SETTLE_ABORTED)),
    (P.STARTING, In.READY): Transition(P.READY, (A.MARK_READY, A.SETTLE)),
    (P.STARTING, In.EXITED): Transition(P.STOPPED, (A.MARK_STOPPED, A.SETTLE_FAILED)),
    (P.STARTING, In.HEALTH_TIMEOUT): Transition(P.STOPPING, (A.BEGIN_STOP, A.SETTLE_FAILED)),
    # ready
    (P.READY, In.ENSURE_READY): Transition(P.READY, (A.SETTLE,)),
    (P.READY, In.STOP): Transition(P.STOPPING, (A.BEGIN_STOP,)),
    (P.READY, In.SHUTDOWN): Transition(P.SHUTTING_DOWN, (A.BEGIN_STOP,)),
    (P.READY, In.EXITED): Transition(P.STOPPED, (A.MARK_STOPPED, A.ABORT_CRASHED, A.SETTLE)),
    (P.READY, In.TTL_DUE): Transition(P.STOPPING, (A.BEGIN_STOP,)),
    (P.READY, In.TTL_EARLY): Transition(P.READY, (A.ARM_TTL,)),
    (P.READY, In.TTL_BUSY): Transition(P.READY),  # serve_finished arms it again
    (P.READY, In.SERVE_STARTED): Transition(P.READY, (A.COUNT_IN,)),
    (P.READY, In.SERVE_FINISHED): Transition(P.READY, (A.COUNT_OUT, A.ARM_TTL_IF_IDLE)),
    # stopping
    (P.STOPPING, In.ENSURE_READY): Transition(P.RESTARTING),  # no spawn before the exit
    (P.STOPPING, In.STOP): Transition(P.STOPPING, (A.TIGHTEN_KILL,)),
    (P.STOPPING, In.SHUTDOWN): Transition(P.SHUTTING_DOWN, (A.TIGHTEN_KILL,)),
    (P.STOPPING, In.EXITED): Transition(P.STOPPED, (A.MARK_STOPPED, A.ABORT_IN_FLIGHT, A.SETTLE)),
    (P.STOPPING, In.KILL_TIMEOUT): Transition(P.STOPPING, (A.KILL,)),
    # restarting: stopping, a start queued behind the stop
    (P.RESTARTING, In.ENSURE_READY): Transition(P.RESTARTING),
    (P.RESTARTING, In.STOP): Transition(P.STOPPING, (A.TIGHTEN_KILL, A.SETTLE_ABORTED)),
    (P.RESTARTING, In.SHUTDOWN): Transition(P.SHUTTING_DOWN, (A.TIGHTEN_KILL,)),
    (P.RESTARTING, In.EXITED): Transition(
        P.STARTING, (A.MARK_STOPPED, A.ABORT_IN_FLIGHT, A.SETTLE, A.START)
    ),
    (P.RESTARTING, In.KILL_TIMEOUT): Transition(P.RESTARTING, (A.KILL,)),
    # shutting down: stopping, then terminal
    (P.SHUTTING_DOWN, In.ENSURE_READY): Transition(P.SHUTTING_DOWN, (A.SETTLE_FAILED,)),
    (P.SHUTTING_DOWN, In.STOP): Transition(P.SHUTTING_DOWN, (A.TIGHTEN_KILL,)),
    (P.SHUTTING_DOWN, In.SHUTDOWN): Transition(P.SHUTTING_DOWN, (A.TIGHTEN_KILL,)),
    (P.SHUTTING_DOWN, In.EXITED): Transition(
        P.SHUTDOWN, (A.MARK_STOPPED, A.ABORT_IN_FLIGHT, A.SETTLE, A.MARK_SHUTDOWN, A.SETTLE)
    ),
    (P.SHUTTING_DOWN, In.KILL_TIMEOUT): Transition(P.SHUTTING_DOWN, (A.KILL,)),
    # shutdown: terminal
    (P.SHUTDOWN, In.ENSURE_READY): Transition(P.SHUTDOWN, (A.SETTLE_FAILED,)),
    (P.SHUTDOWN, In.STOP): Transition(P.SHUTDOWN, (A.SETTLE,)),
    (P.SHUTDOWN, In.SHUTDOWN): Transition(P.SHUTDOWN, (A.SETTLE,)),
}


def _complete(
    rows: dict[tuple[Phase, Input], Transition],
) -> Mapping[tuple[Phase, Input], Transition]:
    """Every pair not in ``rows`` is spelled out: serve bookkeeping only counts, and any other
    report or timer cannot concern the live process here (its timer was cancelled, or it is a
    late report of a process that was already torn down), so it changes nothing."""
    table = dict(rows)
    for phase, given in itertools.product(Phase, Input):
        if (phase, given) in table:
            continue
        if given is Input.SERVE_STARTED:
            table[phase, given] = Transition(phase, (Action.COUNT_IN,))
        elif given is Input.SERVE_FINISHED:
            table[phase, given] = Transition(phase, (Action.COUNT_OUT,))
        elif given in _REQUESTS:
            raise TransitionError(f"no row for the request {given.value} in phase {phase.value}")
        else:
            table[phase, given] = Transition(phase)
    return table


_REQUESTS = (Input.ENSURE_READY, Input.STOP, Input.SHUTDOWN)
"""Requests from the router always need an explicit row: each one must be answered."""

TABLE: Mapping[tuple[Phase, Input], Transition] = _complete(_ROWS)
"""``(phase, input) -> (next phase, actions)``: the whole lifecycle."""


class ProcessPort(Protocol):
    """What a machine needs from its owner (the router): I/O requests, timers and notifications."""

    def now(self) -> float: ...

    def spawn(self, model: str, generation: int) -> None: ...

    def terminate(self, model: str, generation: int) -> None: ...

    def kill(self, model: str, generation: int) -> None: ...

    def set_timer(self, model: str, when: float, kind: str, generation: int) -> TimerHandle: ...

    def abort_serving(self, model: str, reason: str) -> None: ...

    def state_changed(
        self, model: str, old: ProcessState, new: ProcessState, generation: int, reason: str
    ) -> None: ...

    def settled(self, model: str, state: ProcessState, failure: LoadFailure | None) -> None:
        """A settled state was reached; ``failure`` is set when a start failed or was aborted."""


@dataclass(frozen=True)
class _Args:
    """What an input carries into its row's actions."""

    timeout: float = 0.0
    """Graceful seconds before SIGKILL (stop inputs)."""
    reason: str = ""
    """Why: the stop reason, the exit reason, the timeout message."""
    failure: str = ""
    """The message of a failed start, should the row settle one."""


_SHUT = "process is shut down"
_NO_ARGS = _Args()


class ProcessMachine:
    """Lifecycle of one model's process. Hosts only spawn, probe and signal."""

    def __init__(
        self,
        model: str,
        port: ProcessPort,
        health_check_timeout: float,
        ttl: float = 0.0,
        unload_timeout: float = 10.0,
    ) -> None:
        self.model = model
        self.phase = Phase.STOPPED
        self.state = ProcessState.STOPPED
        """The public state; moves with the actions, and equals ``phase.state`` between inputs."""
        self.generation = 0
        self.in_flight = 0
        self.last_use = 0.0
        self._port = port
        self._health_timeout = health_check_timeout
        self._ttl = ttl
        self._unload_timeout = unload_timeout
        self._stop_deadline: TimerHandle | None = None
        self._kill_at = 0.0
        self._health_deadline: TimerHandle | None = None
        self._ttl_timer: TimerHandle | None = None
        self._busy = False
        self._actions: Mapping[Action, Callable[[_Args], None]] = {
            Action.START: self._start,
            Action.BEGIN_STOP: self._begin_stop,
            Action.TIGHTEN_KILL: self._tighten_kill,
            Action.KILL: self._kill,
            Action.MARK_READY: self._mark_ready,
            Action.MARK_STOPPED: self._mark_stopped,
            Action.MARK_SHUTDOWN: lambda args: self._enter(ProcessState.SHUTDOWN, "shutdown"),
            Action.ABORT_CRASHED: lambda args: self._port.abort_serving(
                self.model, f"upstream process exited unexpectedly: {args.reason}"
            ),
            Action.ABORT_IN_FLIGHT: self._abort_in_flight,
            Action.SETTLE: lambda args: self._port.settled(self.model, self.state, None),
            Action.SETTLE_ABORTED: lambda args: self._port.settled(
                self.model, self.state, LoadFailure.aborted(args.reason)
            ),
            Action.SETTLE_FAILED: lambda args: self._port.settled(
                self.model, self.state, LoadFailure.failed(args.failure)
            ),
            Action.ARM_TTL: lambda args: self._arm_ttl(),
            Action.COUNT_IN: self._count_in,
            Action.COUNT_OUT: self._count_out,
            Action.ARM_TTL_IF_IDLE: lambda args: self._arm_ttl() if self.in_flight == 0 else None,
        }

    @property
    def restart_pending(self) -> bool:
        """True while stopping with a start queued behind the stop (``ensure_ready`` while stopping)."""
        return self.phase is Phase.RESTARTING

    # ------------------------------------------------------------------ requests from the router

    def ensure_ready(self) -> None:
        """Make the process ready; the outcome is reported through ``settled``."""
        self.handle(Input.ENSURE_READY, _Args(failure=_SHUT))

    def stop(self, graceful_timeout: float, reason: str = "stop requested") -> None:
        """Stop the process (if any), SIGKILL after ``graceful_timeout``; settles ``stopped``."""
        self.handle(Input.STOP, _Args(graceful_timeout, reason))

    def shutdown(self, graceful_timeout: float) -> None:
        """Stop for good: after this the machine ends in the terminal ``shutdown`` state."""
        self.handle(Input.SHUTDOWN, _Args(graceful_timeout, "shutdown"))

    def serve_started(self) -> None:
        self.handle(Input.SERVE_STARTED)

    def serve_finished(self) -> None:
        self.handle(Input.SERVE_FINISHED)

    # ------------------------------------------------------------------ reports from the host

    def on_ready(self, generation: int) -> None:
        if generation == self.generation:
            self.handle(Input.READY)

    def on_exited(self, generation: int, reason: str) -> None:
        if generation == self.generation:
            self.handle(
                Input.EXITED, _Args(reason=reason, failure=f"upstream failed to start: {reason}")
            )

    def on_timer(self, kind: str, generation: int) -> None:
        if generation != self.generation:
            return
        if kind == "health":
            self._health_deadline = None  # spent
            message = f"health check timed out after {self._health_timeout:g}s"
            self.handle(Input.HEALTH_TIMEOUT, _Args(START_ABORT_GRACE, message, message))
        elif kind == "kill":
            self._stop_deadline = None
            self.handle(Input.KILL_TIMEOUT)
        elif kind == "ttl":
            self._ttl_timer = None
            self.handle(
                self._ttl_input(), _Args(self._unload_timeout, f"ttl of {self._ttl:g}s expired")
            )
        else:
            raise ValueError(f"unknown process timer {kind!r} for {self.model!r}")

    def _ttl_input(self) -> Input:
        if self.in_flight:
            return Input.TTL_BUSY
        return Input.TTL_DUE if self._port.now() >= self.last_use + self._ttl else Input.TTL_EARLY

    # ------------------------------------------------------------------ the engine

    def handle(self, given: Input, args: _Args = _NO_ARGS) -> None:
        """Run the row for ``(phase, given)``: its actions in order, then enter its next phase.

        The phase changes only after the row, so a waiter woken by one of its ``settled`` sees
        the phase the row started in (``restart_pending`` while a queued restart is still to come).
        """
        if self._busy:
            raise TransitionError(f"{self.model}: {given.value} arrived while a transition ran")
        row = TABLE[self.phase, given]
        self._busy = True
        try:
            for action in row.actions:
                self._actions[action](args)
        finally:
            self._busy = False
        self.phase = row.next
        if self.state is not row.next.state:
            raise TransitionError(
                f"{self.model}: row ({given.value}) ends in {row.next.value} "
                f"but its actions left the state {self.state.value}"
            )

    # ------------------------------------------------------------------ actions

    def _start(self, args: _Args) -> None:
        self.generation += 1
        self._enter(ProcessState.STARTING, "start requested")
        self._health_deadline = self._port.set_timer(
            self.model, self._port.now() + self._health_timeout, "health", self.generation
        )
        self._port.spawn(self.model, self.generation)

    def _begin_stop(self, args: _Args) -> None:
        self._cancel(self._health_deadline)
        self._health_deadline = None
        self._cancel_ttl()
        self._enter(ProcessState.STOPPING, args.reason)
        self._arm_kill(self._port.now() + args.timeout)
        self._port.terminate(self.model, self.generation)

    def _tighten_kill(self, args: _Args) -> None:
        when = self._port.now() + args.timeout
        if self._stop_deadline is not None and when < self._kill_at:
            self._arm_kill(when)

    def _kill(self, args: _Args) -> None:
        self._port.kill(self.model, self.generation)

    def _mark_ready(self, args: _Args) -> None:
        self._cancel(self._health_deadline)
        self._health_deadline = None
        self.last_use = self._port.now()
        self._enter(ProcessState.READY, "health check passed")
        self._arm_ttl()

    def _mark_stopped(self, args: _Args) -> None:
        for handle in (self._health_deadline, self._stop_deadline, self._ttl_timer):
            self._cancel(handle)
        self._health_deadline = self._stop_deadline = self._ttl_timer = None
        self._enter(ProcessState.STOPPED, args.reason)

    def _abort_in_flight(self, args: _Args) -> None:
        if self.in_flight:
            self._port.abort_serving(self.model, f"model stopped: {args.reason}")

    def _count_in(self, args: _Args) -> None:
        self.in_flight += 1
        self._cancel_ttl()

    def _count_out(self, args: _Args) -> None:
        self.in_flight = max(0, self.in_flight - 1)
        self.last_use = self._port.now()

    # ------------------------------------------------------------------ timers and state

    def _arm_kill(self, when: float) -> None:
        self._cancel(self._stop_deadline)
        self._kill_at = when
        self._stop_deadline = self._port.set_timer(self.model, when, "kill", self.generation)

    def _arm_ttl(self) -> None:
        self._cancel_ttl()
        if self._ttl > 0:
            self._ttl_timer = self._port.set_timer(
                self.model, self.last_use + self._ttl, "ttl", self.generation
            )

    def _cancel_ttl(self) -> None:
        self._cancel(self._ttl_timer)
        self._ttl_timer = None

    @staticmethod
    def _cancel(handle: TimerHandle | None) -> None:
        if handle is not None:
            handle.cancel()

    def _enter(self, new: ProcessState, reason: str) -> None:
        old = self.state
        self.state = new
        self._port.state_changed(self.model, old, new, self.generation, reason)


def table_markdown() -> str:
    """The table as docs/design.md shows it: the listed rows, then the rule for the rest."""
    lines = ["| phase (state) | input | next | actions |", "|---|---|---|---|"]
    for (phase, given), row in _ROWS.items():
        shown = phase.value
        if phase.value != phase.state.value:
            shown += f" ({phase.state.value})"
        actions = ", ".join(f"`{a.value}`" for a in row.actions) or "(none)"
        lines.append(f"| {shown} | {given.value} | **{row.next.value}** | {actions} |")
    rest = len(TABLE) - len(_ROWS)
    lines.append("")
    lines.append(
        f"The other {rest} pairs are filled in by rule: `serve_started` does `count_in`, "
        "`serve_finished` does `count_out`, and any other report or timer changes nothing (its "
        "timer was cancelled, or it reports a process already torn down). "
        "A request from the router (`ensure_ready`, `stop`, `shutdown`) always has a row."
    )
    return "\n".join(lines)
