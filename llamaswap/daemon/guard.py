"""Connection-level bounds, before any authentication: slowloris and malformed-request floods.

aiohttp has no deadline for reading a request head and no cap on connections, so 1,100
connections dribbling a header byte every 3 s exhausted the 1,024-descriptor soft limit with
nothing logged. This module plugs a small subclass of aiohttp's connection handler in:

- ``limits.maxConnections``: a connection beyond the cap gets a 503 and is closed at once (the cap
  is logged, rate-limited); :func:`raise_fd_limit` lifts the soft descriptor limit to the hard one
  at start-up and the cap is clamped below it, so the listening socket always stays usable.
- ``limits.headerTimeout``: a connection must deliver a complete request head within this many
  seconds of opening, or of the first byte of its next request (idle keep-alive connections are
  left to aiohttp's keep-alive timeout): 408 and closed.
- A malformed request logs one line (rate-limited), not aiohttp's traceback per request.

Reaching into aiohttp's handler (``_messages``, ``_current_request``) is deliberate and pinned by
the ``aiohttp<4`` range; the tests in tests/test_daemon_hardening_slowloris.py fail if it breaks.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestHandler

from llamaswap.config.limits import Limits
from llamaswap.daemon.logsafe import printable

log = logging.getLogger("llamaswap.guard")

FD_HEADROOM = 256
"""Descriptors kept free beyond the connection cap: upstream sockets, pipes, log files."""
_REFUSED = b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
_TOO_SLOW = b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"


def raise_fd_limit() -> int:
    """Lift the soft ``RLIMIT_NOFILE`` to the hard limit where allowed; the soft limit after."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:
            log.warning("could not raise the file-descriptor limit from %d: %s", soft, exc)
    return soft


class RateLimitedLog:
    """One line per ``every`` seconds at most; the next line says how many were folded into it."""

    def __init__(self, logger: logging.Logger, every: float = 10.0) -> None:
        self._log = logger
        self._every = every
        self._last = -float("inf")
        self._folded = 0

    def warning(self, message: str, *args: object) -> None:
        now = time.monotonic()
        if now - self._last < self._every:
            self._folded += 1
            return
        self._last = now
        if self._folded:
            message += f" (and {self._folded} more like it since the last such line)"
            self._folded = 0
        self._log.warning(message, *args)


class ConnectionGuard:
    """The daemon-wide state: open connections and the current limits."""

    def __init__(self, limits: Callable[[], Limits], fd_soft_limit: int) -> None:
        self.limits = limits
        """Read on every connection, so a reload that changes ``limits`` applies at once."""
        self.fd_cap = max(16, fd_soft_limit - FD_HEADROOM)
        self.open = 0
        self.refused = 0
        self.too_slow = 0
        self.malformed = 0
        self._cap_log = RateLimitedLog(log)
        self._slow_log = RateLimitedLog(log)
        self._bad_log = RateLimitedLog(log)
        if self.limits().max_connections > self.fd_cap:
            log.warning(
                "limits.maxConnections %d is above what the file-descriptor limit allows; using %d",
                self.limits().max_connections,
                self.fd_cap,
            )

    @property
    def cap(self) -> int:
        return min(self.limits().max_connections, self.fd_cap)

    def admit(self, transport: asyncio.Transport) -> bool:
        self.open += 1
        if self.open <= self.cap:
            return True
        self.refused += 1
        self._cap_log.warning(
            "connection cap reached (%d open, limits.maxConnections %d): refusing new connections",
            self.open - 1,
            self.cap,
        )
        transport.write(_REFUSED)
        transport.close()
        return False

    def head_timed_out(self, transport: asyncio.Transport, peer: str) -> None:
        self.too_slow += 1
        self._slow_log.warning(
            "closed a connection from %s: no complete request head within %gs "
            "(limits.headerTimeout)",
            peer,
            self.limits().header_timeout,
        )
        transport.write(_TOO_SLOW)
        transport.close()

    def bad_request(self, peer: str, exc: BaseException) -> None:
        self.malformed += 1
        self._bad_log.warning("malformed HTTP request from %s: %s", peer, printable(str(exc)))


class GuardedHandler(RequestHandler):
    """aiohttp's connection handler plus the head deadline and the connection cap."""

    def __init__(self, manager: Any, *, guard: ConnectionGuard, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._guard = guard
        self._head_timer: asyncio.TimerHandle | None = None
        self._counted = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._counted = True
        if self._guard.admit(transport):  # type: ignore[arg-type]
            self._arm_head()

    def _arm_head(self) -> None:
        delay = self._guard.limits().header_timeout
        self._head_timer = asyncio.get_running_loop().call_later(delay, self._head_late)

    def _head_late(self) -> None:
        self._head_timer = None
        if self.transport is not None and not self.transport.is_closing():
            peer = self.transport.get_extra_info("peername")
            self._guard.head_timed_out(self.transport, str(peer[0]) if peer else "-")

    def data_received(self, data: bytes) -> None:
        if self._head_timer is None and self._current_request is None and not self._messages:
            self._arm_head()  # the first byte of a new request on a kept-alive connection
        super().data_received(data)
        if self._head_timer is not None and (self._messages or self._current_request is not None):
            self._head_timer.cancel()
            self._head_timer = None

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        if self._counted:
            self._counted = False
            self._guard.open -= 1
        super().connection_lost(exc)

    def log_exception(self, *args: Any, **kw: Any) -> None:
        exc = kw.get("exc_info")
        if isinstance(exc, HttpProcessingError):
            peer = self.transport.get_extra_info("peername") if self.transport else None
            self._guard.bad_request(str(peer[0]) if peer else "-", exc)
            return
        super().log_exception(*args, **kw)


class GuardedServer(web.Server):
    def __init__(self, *args: Any, guard: ConnectionGuard, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.guard = guard

    def __call__(self) -> RequestHandler:
        return GuardedHandler(self, guard=self.guard, loop=self._loop, **self._kwargs)


class GuardedRunner(web.AppRunner):
    """``web.AppRunner`` whose connections go through a :class:`GuardedHandler`."""

    def __init__(self, app: web.Application, guard: ConnectionGuard, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.guard = guard

    async def _make_server(self) -> web.Server:
        plain = await super()._make_server()
        return GuardedServer(
            plain.request_handler,
            request_factory=plain.request_factory,
            handler_cancellation=plain.handler_cancellation,
            loop=plain._loop,
            guard=self.guard,
            **plain._kwargs,
        )
