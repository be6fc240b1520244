"""The I/O edge: what a host (simulator or daemon) must do on the core's behalf.

Every method must return promptly and must not call back into the router synchronously; results
(process ready/exited, serve done, ...) come back later as events through ``Router.handle``.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Protocol

from llamaswap.core.errors import RequestError
from llamaswap.core.observe import Observation
from llamaswap.core.request import Request


class Host(Protocol):
    def spawn(self, model: str, generation: int) -> None:
        """Start the model's process and health-check it.

        Report ``ProcessReady(model, generation)`` once healthy, or ``ProcessExited`` if it could not
        be started or died. The core enforces the health-check deadline itself.
        """

    def terminate(self, model: str, generation: int) -> None:
        """Ask the process to stop gracefully (``cmdStop`` or SIGTERM). Report ``ProcessExited``."""

    def kill(self, model: str, generation: int) -> None:
        """Force the process down (SIGKILL to its group): the graceful window has passed."""

    def grant(self, request: Request) -> bool:
        """Hand the request to the model. Return False if the caller is gone (nothing was served)."""

    def reject(self, request: Request, error: RequestError) -> None:
        """Answer the request with an error. Called at most once per request."""

    def abort_serving(self, model: str, reason: str) -> None:
        """The model's process died: fail whatever is in flight to it (each still reports ServeDone)."""

    def queue_changed(self, queue: Sequence[Request]) -> None:
        """The scheduler's waiting line changed; positions are 1-based indices into ``queue``."""

    def unload_complete(self, token: Hashable) -> None:
        """Every process named by the ``UnloadRequested`` with this token has stopped."""

    def shutdown_complete(self) -> None:
        """Every process has stopped after ``Shutdown``; nothing more will happen."""

    def observe(self, observation: Observation) -> None:
        """A fact for metrics and logs. Must not affect behaviour."""
