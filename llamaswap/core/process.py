"""One upstream process as a pure state machine (reference §3, and the llama-swap #946 lesson).

Every decision to start or stop is taken *here*, on the machine's current state, never on a stale
snapshot held by a caller. Every transition into a settled state (ready, stopped, start failed,
shutdown) is reported through ``ProcessPort.settled`` so that all waiters are re-evaluated.

Transition table (``ensure_ready`` / ``stop`` are requests from the router; the rest are reports)::

    state     ensure_ready        stop(t)                 ready(gen)  exited(gen)           timer
    stopped   spawn -> starting   settled(stopped)        -           -                     -
    starting  (wait)              abort -> stopping       -> ready    -> stopped (error)    health deadline -> stopping (error)
    ready     settled(ready)      terminate -> stopping   -           crash -> stopped      TTL -> stopping
    stopping  restart after stop  cancel pending restart, -           -> stopped (restart?) kill deadline -> kill
                                  earlier kill deadline
    shutdown  settled(error)      settled(shutdown)       -           -                     -
"""

from __future__ import annotations

import enum
from typing import Protocol

from llamaswap.core.clock import TimerHandle
from llamaswap.core.errors import LoadFailure
from llamaswap.core.spec import START_ABORT_GRACE


class ProcessState(enum.Enum):
    STOPPED = "stopped"
    STARTING = "starting"
    READY = "ready"
    STOPPING = "stopping"
    SHUTDOWN = "shutdown"


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
        self.state = ProcessState.STOPPED
        self.generation = 0
        self.in_flight = 0
        self.last_use = 0.0
        self._port = port
        self._health_timeout = health_check_timeout
        self._ttl = ttl
        self._unload_timeout = unload_timeout
        self._restart_after_stop = False
        self._shutdown_requested = False
        self._stop_deadline: TimerHandle | None = None
        self._kill_at = 0.0
        self._health_deadline: TimerHandle | None = None
        self._ttl_timer: TimerHandle | None = None

    @property
    def restart_pending(self) -> bool:
        """True while stopping with a start queued behind the stop (``ensure_ready`` while stopping)."""
        return self._restart_after_stop

    # ------------------------------------------------------------------ requests from the router

    def ensure_ready(self) -> None:
        """Make the process ready; the outcome is reported through ``settled``."""
        state = self.state
        if state is ProcessState.READY:
            self._port.settled(self.model, state, None)
        elif state is ProcessState.STOPPED:
            self._start()
        elif state is ProcessState.STOPPING:
            self._restart_after_stop = True
        elif state is ProcessState.SHUTDOWN:
            self._port.settled(self.model, state, LoadFailure.failed("process is shut down"))
        # STARTING: the start in progress will settle.

    def stop(self, graceful_timeout: float, reason: str = "stop requested") -> None:
        """Stop the process (if any), SIGKILL after ``graceful_timeout``; settles ``stopped``."""
        state = self.state
        if state is ProcessState.STOPPED:
            self._port.settled(self.model, state, None)
        elif state is ProcessState.STARTING:
            self._begin_stopping(graceful_timeout, reason)
            self._port.settled(self.model, ProcessState.STOPPING, LoadFailure.aborted(reason))
        elif state is ProcessState.READY:
            self._begin_stopping(graceful_timeout, reason)
        elif state is ProcessState.STOPPING:
            self._tighten_kill_deadline(graceful_timeout)
            if self._restart_after_stop:
                self._restart_after_stop = False
                self._port.settled(self.model, state, LoadFailure.aborted(reason))
        elif state is ProcessState.SHUTDOWN:
            self._port.settled(self.model, state, None)

    def shutdown(self, graceful_timeout: float) -> None:
        """Stop for good: after this the machine ends in the terminal ``shutdown`` state."""
        self._shutdown_requested = True
        self._restart_after_stop = False
        if self.state is ProcessState.STOPPED:
            self._set_state(ProcessState.SHUTDOWN, "shutdown")
            self._port.settled(self.model, ProcessState.SHUTDOWN, None)
        else:
            self.stop(graceful_timeout, "shutdown")

    def serve_started(self) -> None:
        self.in_flight += 1
        self._cancel_ttl()

    def serve_finished(self) -> None:
        self.in_flight = max(0, self.in_flight - 1)
        self.last_use = self._port.now()
        if self.in_flight == 0 and self.state is ProcessState.READY:
            self._arm_ttl()

    # ------------------------------------------------------------------ reports from the host

    def on_ready(self, generation: int) -> None:
        if generation != self.generation or self.state is not ProcessState.STARTING:
            return  # stale report from an earlier process, or already torn down
        self._cancel(self._health_deadline)
        self._health_deadline = None
        self.last_use = self._port.now()
        self._set_state(ProcessState.READY, "health check passed")
        self._arm_ttl()
        self._port.settled(self.model, ProcessState.READY, None)

    def on_exited(self, generation: int, reason: str) -> None:
        if generation != self.generation:
            return
        state = self.state
        if state is ProcessState.STARTING:
            self._cancel(self._health_deadline)
            self._health_deadline = None
            self._set_state(ProcessState.STOPPED, reason)
            self._port.settled(
                self.model,
                ProcessState.STOPPED,
                LoadFailure.failed(f"upstream failed to start: {reason}"),
            )
            self._after_stopped()
        elif state is ProcessState.READY:
            self._cancel_ttl()
            self._set_state(ProcessState.STOPPED, reason)
            self._port.abort_serving(self.model, f"upstream process exited unexpectedly: {reason}")
            self._port.settled(self.model, ProcessState.STOPPED, None)
            self._after_stopped()
        elif state is ProcessState.STOPPING:
            self._cancel(self._stop_deadline)
            self._stop_deadline = None
            self._set_state(ProcessState.STOPPED, reason)
            if self.in_flight:
                self._port.abort_serving(self.model, f"model stopped: {reason}")
            self._port.settled(self.model, ProcessState.STOPPED, None)
            self._after_stopped()

    def on_timer(self, kind: str, generation: int) -> None:
        if generation != self.generation:
            return
        if kind == "health" and self.state is ProcessState.STARTING:
            self._health_deadline = None
            message = f"health check timed out after {self._health_timeout:g}s"
            self._begin_stopping(START_ABORT_GRACE, message)
            self._port.settled(self.model, ProcessState.STOPPING, LoadFailure.failed(message))
        elif kind == "kill" and self.state is ProcessState.STOPPING:
            self._stop_deadline = None
            self._port.kill(self.model, generation)
        elif kind == "ttl" and self.state is ProcessState.READY:
            self._ttl_timer = None
            if self.in_flight == 0 and self._port.now() >= self.last_use + self._ttl:
                self._begin_stopping(self._unload_timeout, f"ttl of {self._ttl:g}s expired")
            elif self.in_flight == 0:
                self._arm_ttl()

    # ------------------------------------------------------------------ internals

    def _start(self) -> None:
        self.generation += 1
        self._set_state(ProcessState.STARTING, "start requested")
        self._health_deadline = self._port.set_timer(
            self.model, self._port.now() + self._health_timeout, "health", self.generation
        )
        self._port.spawn(self.model, self.generation)

    def _begin_stopping(self, graceful_timeout: float, reason: str) -> None:
        self._cancel(self._health_deadline)
        self._health_deadline = None
        self._cancel_ttl()
        self._restart_after_stop = False
        self._set_state(ProcessState.STOPPING, reason)
        self._arm_kill(self._port.now() + graceful_timeout)
        self._port.terminate(self.model, self.generation)

    def _arm_kill(self, when: float) -> None:
        self._cancel(self._stop_deadline)
        self._kill_at = when
        self._stop_deadline = self._port.set_timer(self.model, when, "kill", self.generation)

    def _tighten_kill_deadline(self, graceful_timeout: float) -> None:
        """A second stop with a shorter window (e.g. shutdown after a slow eviction) wins."""
        when = self._port.now() + graceful_timeout
        if self._stop_deadline is not None and when < self._kill_at:
            self._arm_kill(when)

    def _after_stopped(self) -> None:
        if self._shutdown_requested:
            self._set_state(ProcessState.SHUTDOWN, "shutdown")
            self._port.settled(self.model, ProcessState.SHUTDOWN, None)
        elif self._restart_after_stop:
            self._restart_after_stop = False
            self._start()

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

    def _set_state(self, new: ProcessState, reason: str) -> None:
        old = self.state
        self.state = new
        self._port.state_changed(self.model, old, new, self.generation, reason)
