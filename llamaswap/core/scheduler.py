"""The scheduler contract: the policy half of the router (reference §4.1).

A scheduler owns the waiting line and the in-flight counts and decides, for every event, who is
granted, who waits, who fails and which swap starts. It acts only through :class:`Effects`.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Protocol

from llamaswap.core.clock import TimerHandle
from llamaswap.core.errors import LoadFailure, RequestError
from llamaswap.core.process import ProcessState
from llamaswap.core.request import Request


class Effects(Protocol):
    """The scheduler's system-call table, implemented by the router."""

    def now(self) -> float: ...

    def model_state(self, model: str) -> ProcessState | None:
        """Advisory process state; None when the model is not configured."""

    def running_models(self) -> list[str]:
        """Models whose process is starting, ready or stopping (sorted)."""

    def start_swap(self, model: str, evict: Sequence[str]) -> None:
        """Stop ``evict``, then make ``model`` ready; ``Scheduler.on_swap_done`` reports the outcome."""

    def cancel_swap(self, model: str) -> None:
        """Abort a swap nobody waits for any more; its ``on_swap_done`` still follows (with an error)."""

    def grant_error(self, request: Request, error: RequestError) -> None: ...

    def grant_serve(self, request: Request) -> bool:
        """Hand the request to its model. True only if the caller took it: count it in flight then."""

    def stop_processes(self, models: Sequence[str], token: Hashable) -> None:
        """Stop ``models`` with their unload timeouts; the host's unload caller is answered on completion."""

    def queue_changed(self, queue: Sequence[Request]) -> None: ...

    def call_at(self, when: float, key: Hashable) -> TimerHandle:
        """A timer for the scheduler: ``Scheduler.on_timer(key)`` runs when it is due."""


class Scheduler(Protocol):
    name: str

    def on_request(self, request: Request) -> None: ...

    def on_cancel(self, request: Request) -> None: ...

    def on_swap_done(self, model: str, failure: LoadFailure | None) -> None: ...

    def on_serve_done(self, request: Request) -> None: ...

    def on_unload(self, models: Sequence[str], token: Hashable) -> None: ...

    def on_shutdown(self) -> None: ...

    def on_timer(self, key: Hashable) -> None: ...

    def on_upstream_slots(self, model: str, slots: int) -> None:
        """The model's freshly ready upstream reports ``slots`` parallel slots (``ProcessReady``).

        Called before that readiness is handled, so a scheduler that limits what it hands an
        upstream can use the count for the requests waiting for this very load.
        """

    def snapshot(self) -> Mapping[str, object]:
        """Counts for tests, metrics and ``/running``-style introspection."""
