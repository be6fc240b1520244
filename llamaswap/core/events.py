"""Everything that can happen to the core, as plain immutable values.

Hosts construct the *external* events (requests, cancels, serve completions, unloads, shutdown,
process reports) and pass them to :meth:`Router.handle`. Timer and swap events are created by the
core itself and come back through the same path.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass

from llamaswap.core.errors import LoadFailure
from llamaswap.core.request import Request


@dataclass(frozen=True, slots=True)
class RequestArrived:
    request: Request


@dataclass(frozen=True, slots=True)
class RequestCancelled:
    """The client gave up (disconnect, ``cancel_after``). A no-op once the request was granted."""

    request: Request


@dataclass(frozen=True, slots=True)
class ServeDone:
    """A granted request finished (successfully or not). Sent exactly once per successful grant."""

    request: Request
    error: str | None = None


@dataclass(frozen=True, slots=True)
class UnloadRequested:
    """Stop ``models`` (None = every model). The host is answered via ``Host.unload_complete(token)``."""

    models: tuple[str, ...] | None
    token: Hashable = None


@dataclass(frozen=True, slots=True)
class Shutdown:
    """Fail everything held, stop every process; answered via ``Host.shutdown_complete()``."""

    timeout: float | None = None


@dataclass(frozen=True, slots=True)
class ProcessReady:
    """The host saw the process of ``generation`` pass its health check.

    ``slots``: the parallel slots the upstream reports about itself (llama-server's ``/props``
    ``total_slots``), or None when it reports none; the scheduler may use it (``batch-aging``).
    """

    model: str
    generation: int
    slots: int | None = None


@dataclass(frozen=True, slots=True)
class ProcessExited:
    """The process of ``generation`` is gone (or could not be spawned): ``reason`` says why."""

    model: str
    generation: int
    reason: str = "exited"


@dataclass(frozen=True, slots=True)
class TimerFired:
    """A timer set through the clock fell due. ``owner`` routes it; ``key`` identifies it."""

    owner: str
    key: Hashable


@dataclass(frozen=True, slots=True)
class SwapDone:
    """Internal: a swap the scheduler asked for settled (``failure`` None on success)."""

    model: str
    failure: LoadFailure | None


@dataclass(frozen=True, slots=True)
class StopCompleted:
    """Internal: every process named by an unload has stopped."""

    token: Hashable


Event = (
    RequestArrived
    | RequestCancelled
    | ServeDone
    | UnloadRequested
    | Shutdown
    | ProcessReady
    | ProcessExited
    | TimerFired
    | SwapDone
    | StopCompleted
)
