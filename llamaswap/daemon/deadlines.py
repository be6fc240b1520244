"""Bounds on one relay: a hung upstream or a client that stopped reading must not pin a model.

A :class:`RelayWatch` runs inside ``asyncio.timeout(None)``; when a bound is passed it makes that
timeout expire, so the relay sees an ordinary ``TimeoutError`` (the upstream request is closed
and the core gets the same ``ServeDone`` with an error as for any failed relay). One timer per
relay, re-armed only when it fires: the hot path merely stores the time of the last byte.

=============  ==============================  ======================================
bound          measured from                   applies while
=============  ==============================  ======================================
total          request sent                    always
header         request sent                    no response head yet
idle           last byte from the upstream     not blocked writing to the client
write          start of a blocked client write  a write waits for the client to read
=============  ==============================  ======================================
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from llamaswap.config.limits import Timeouts

TIMED_OUT = "timed out: "
"""Every timeout reason starts so (``forward.failed_status`` counts those as 504)."""
KIND_KEYS = {
    "total": "timeouts.total",
    "header": "timeouts.responseHeader",
    "idle": "timeouts.idle",
    "write": "timeouts.write",
}


class RelayWatch:
    """Which bound (if any) a relay has passed; expires ``scope`` when one is."""

    __slots__ = (
        "_handle",
        "_loop",
        "_scope",
        "_started",
        "expired",
        "head_seen",
        "last_data",
        "timeouts",
        "writing_since",
    )

    def __init__(self, scope: asyncio.Timeout, timeouts: Timeouts) -> None:
        self._loop = asyncio.get_running_loop()
        self._scope = scope
        self.timeouts = timeouts
        self._started = self.last_data = self._loop.time()
        self.writing_since: float | None = None
        self.head_seen = False
        self.expired: str | None = None
        """The bound passed: ``total``, ``header``, ``idle`` or ``write``."""
        self._handle: asyncio.TimerHandle | None = None
        self._arm()

    # ------------------------------------------------------------------ fed by the relay

    def touch(self) -> None:
        self.last_data = self._loop.time()

    def wrap(self, sink: Callable[[bytes], bool] | None) -> Callable[[bytes], bool] | None:
        """A direct sink that also records the data it accepted (it bypasses the relay task)."""
        if sink is None:
            return None

        def watched(data: bytes) -> bool:
            if sink(data):
                self.last_data = self._loop.time()
                return True
            return False

        return watched

    async def write(self, send: Callable[[], object]) -> None:
        """Await one client write, timing how long the client leaves it blocked."""
        self.writing_since = self._loop.time()
        try:
            await send()  # type: ignore[misc]
        finally:
            self.writing_since = None
            self.last_data = self._loop.time()

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    # ------------------------------------------------------------------ the timer

    def _deadlines(self) -> list[tuple[float, str]]:
        t = self.timeouts
        out: list[tuple[float, str]] = []
        if t.total:
            out.append((self._started + t.total, "total"))
        if not self.head_seen and t.response_header:
            out.append((self._started + t.response_header, "header"))
        if self.writing_since is not None:
            if t.write:
                out.append((self.writing_since + t.write, "write"))
        elif t.idle:
            out.append((self.last_data + t.idle, "idle"))
        return out

    def _arm(self) -> None:
        # A write may block any time from now on without touching this timer, so look again
        # within one write bound at the latest: a blocked write is then seen by its deadline.
        t = self.timeouts
        soonest = self._loop.time() + (t.write or 1.0)
        if t.idle and self.writing_since is None:
            soonest = min(soonest, self.last_data + t.idle)
        if t.total or t.response_header or self.writing_since is not None:
            for when, _ in self._deadlines():
                soonest = min(soonest, when)
        self._handle = self._loop.call_at(soonest, self._check)

    def _check(self) -> None:
        self._handle = None
        now = self._loop.time()
        for when, kind in self._deadlines():
            if now >= when:
                self.expired = kind
                self._scope.reschedule(now)
                return
        self._arm()

    def describe(self) -> str:
        """The client-facing reason, naming the config key that bounds it."""
        t = self.timeouts
        seconds = {"total": t.total, "header": t.response_header, "idle": t.idle, "write": t.write}
        kind = self.expired or "idle"
        what = {
            "total": "the request took longer than",
            "header": "the upstream sent no response head within",
            "idle": "the upstream sent nothing for",
            "write": "the client read nothing for",
        }[kind]
        return f"{TIMED_OUT}{what} {seconds[kind]:g}s ({KIND_KEYS[kind]})"
