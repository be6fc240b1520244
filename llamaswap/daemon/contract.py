"""What the HTTP layer (``app.py``) may use of the daemon: two narrow, typed Protocols.

Why: the routes and middlewares (and what comes next: an operator UI, peers, hardening) must not
know how the daemon reloads, drains or owns its upstream processes, so they can be tested and
extended against this contract alone. There are two objects because a reload swaps one of them:

- :class:`Server` lives as long as the process (``server.Daemon`` implements it): draining, the
  config new requests are checked against, logs, metrics, the recorder, the upstream HTTP clients
  and per-request bookkeeping (drain counting, metrics, access log).
- :class:`Backend` is one config brought to life (``runtime.Runtime`` implements it): the core's
  tickets, model states, unloads. A request keeps the backend it was dispatched to, so a reload
  never moves a request half-way through to the new config.

Both are read-only from here: the HTTP layer asks and submits, it decides nothing.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import TYPE_CHECKING, Protocol

from aiohttp import ClientSession

from llamaswap.config.model import Config
from llamaswap.core.process import ProcessState
from llamaswap.core.selectors import Selectors
from llamaswap.daemon.host import Ticket
from llamaswap.daemon.logs import Logs
from llamaswap.daemon.metrics import Metrics
from llamaswap.daemon.upstream_client import LeanClient
from llamaswap.record.recorder import Recorder

if TYPE_CHECKING:
    from llamaswap.daemon.operator import OperatorView


class Backend(Protocol):
    """One running config: the core behind it and its upstream processes."""

    @property
    def config(self) -> Config: ...

    active_profile: str
    """The profile whose pins apply ("" = none; a new backend, i.e. a reload, starts with none)."""

    @property
    def selectors(self) -> Selectors:
        """This config's selectors and their spillover counts (the core decides; see selectors)."""

    def state(self, model: str) -> ProcessState | None:
        """The model's process state (None: the core has not seen it yet)."""

    def running(self) -> list[dict[str, object]]:
        """``/running``: one record per model whose process is not stopped."""

    def scheduler_state(self) -> tuple[str, Mapping[str, object]]:
        """``/api/scheduler``: the scheduler's name and its own snapshot."""

    def submit(self, model: str, *, request_id: Hashable | None = None) -> Ticket:
        """Hand a request to the core; its ticket's future says when it may be served."""

    def release(self, ticket: Ticket, error: str | None = None) -> None:
        """A handler's last word on its ticket (served, failed or cancelled), exactly once."""

    async def unload(self, models: tuple[str, ...] | None) -> None:
        """Stop these models (None: all) through the core; returns when they are stopped."""

    async def settle_if_dead(self, model: str) -> None:
        """After an upstream failure: let the core see a crashed process before the client does."""


class Server(Protocol):
    """The daemon as the HTTP layer sees it, for the lifetime of the process."""

    @property
    def draining(self) -> bool:
        """Shutting down: new requests get 503."""

    @property
    def config(self) -> Config:
        """The config now in force (API keys, model names for log streams); no waiting."""

    @property
    def listen_host(self) -> str:
        """The address it listens on (the browser guard checks ``Host`` when it is loopback)."""

    @property
    def logs(self) -> Logs: ...

    @property
    def metrics(self) -> Metrics: ...

    @property
    def recorder(self) -> Recorder | None:
        """``serve --record``: the request path logs arrivals, first bytes and ends into it."""

    @property
    def session(self) -> ClientSession:
        """aiohttp's client, for upstreams the lean client does not take."""

    @property
    def lean(self) -> LeanClient:
        """The fast client for plain-http upstreams and in-memory bodies."""

    async def current(self) -> Backend:
        """The backend new requests go to (waits while a reload switches configs)."""

    def request_opened(self) -> None:
        """A model-dispatched request starts: shutdown waits for it to close."""

    def request_closed(self) -> None:
        """It ended (the operator view's middleware counts, logs and stores it)."""

    @property
    def operator(self) -> OperatorView:
        """Access log, activity store and UI event stream: the outermost middleware and the
        request path's taps (see :mod:`llamaswap.daemon.operator`)."""
