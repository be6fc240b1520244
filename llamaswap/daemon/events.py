"""``/api/events``: one SSE stream for the UI, on llama-swap's wire format (reference: its
``apiSendEvents``): ``event:message`` frames whose data is ``{"type": T, "data": "<JSON text>"}``.

Cost on the proxy is bounded whatever the clients do:

- nothing is built while no client is connected (:meth:`EventHub.active` is False);
- messages are batched: the first message after a quiet spell arms a timer, and every
  :data:`FLUSH_INTERVAL` the batch is encoded once and handed to every client as one blob (one
  write per client per batch, not per message). State-like types (``modelStatus``, ``scheduler``,
  ``queueDepth``) keep only their latest value per batch; an in-flight request that starts and ends
  in the same batch is never sent at all; log data is concatenated per source;
- live volume is capped per batch whatever the request rate: at most :data:`ACTIVITY_PER_BATCH`
  activity rows (the newest; a ``skipped`` count says how many more finished, they are all in
  ``/api/activity``) and :data:`LOG_PER_BATCH` bytes of log per source (the rest is in ``/logs``);
- each client has a byte-bounded buffer (:data:`CLIENT_BUFFER`). A client that does not read (its
  socket stops draining) fills it and is dropped: it is sent one ``dropped`` message when its socket
  allows, and its connection is aborted after :data:`DROP_GRACE` seconds regardless.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import deque
from collections.abc import Callable
from typing import Any

from aiohttp import web

log = logging.getLogger("llamaswap.events")

FLUSH_INTERVAL = 0.1
ACTIVITY_PER_BATCH = 10
LOG_PER_BATCH = 4 * 1024
CLIENT_BUFFER = 1 << 20
DROP_GRACE = 2.0
PING_INTERVAL = 15.0
COMPACT = (",", ":")
COALESCED = ("modelStatus", "scheduler", "queueDepth")
"""Types whose latest value replaces earlier ones in the same batch."""


def frame(kind: str, data: str) -> bytes:
    """One SSE frame exactly as llama-swap writes it (``event:message``, envelope as JSON)."""
    envelope = json.dumps({"type": kind, "data": data}, separators=COMPACT)
    return b"event:message\ndata:" + envelope.encode() + b"\n\n"


def dumps(value: Any) -> str:
    return json.dumps(value, separators=COMPACT)


class Client:
    """One connected UI: a byte-bounded buffer drained by its handler task."""

    def __init__(self, request: web.Request) -> None:
        self.request = request
        self.chunks: deque[bytes] = deque()
        self.size = 0
        self.wake = asyncio.Event()
        self.dropped = False

    def offer(self, blob: bytes) -> bool:
        """Queue ``blob``; False (and nothing queued) if that would exceed the client's buffer."""
        if self.dropped:
            return True
        if self.size + len(blob) > CLIENT_BUFFER:
            return False
        self.chunks.append(blob)
        self.size += len(blob)
        self.wake.set()
        return True

    def take(self) -> bytes:
        data = b"".join(self.chunks)
        self.chunks.clear()
        self.size = 0
        self.wake.clear()
        return data


class EventHub:
    def __init__(self) -> None:
        self.clients: set[Client] = set()
        self.dropped_clients = 0
        self._batch: list[tuple[str, Any]] = []
        self._latest: dict[str, Callable[[], Any] | Any] = {}
        self._inflight: dict[str, Callable[[], dict[str, Any]] | None] = {}
        self._inflight_order: list[str] = []
        self._logs: dict[str, bytearray] = {}
        self._log_skipped: dict[str, int] = {}
        self._activity: deque[tuple[int, Any]] = deque(maxlen=ACTIVITY_PER_BATCH)
        self.describe: Callable[[Any], dict[str, Any]] = lambda item: {"id": str(item)}
        """Turns what :meth:`inflight_start` got into the ``inflight`` request (at flush only)."""
        self.state: Callable[[], list[tuple[str, Any]]] = list
        """The state-like messages (``modelStatus``, ``scheduler``, ``queueDepth``), built at a
        flush after :meth:`state_changed`: a busy queue costs one flag per change, not messages."""
        self._state_dirty = False
        self._activity_seen = 0
        self._timer: asyncio.TimerHandle | None = None
        self._ping: asyncio.TimerHandle | None = None

    @property
    def active(self) -> bool:
        return bool(self.clients)

    # ------------------------------------------------------------------ publishing

    def publish(self, kind: str, data: Any) -> None:
        """Queue one message; ``data`` is JSON-encoded at flush (a callable is called then)."""
        if not self.clients:
            return
        if kind in COALESCED:
            self._latest[kind] = data
        else:
            self._batch.append((kind, data))
        self._arm()

    def state_changed(self) -> None:
        if self.clients:
            self._state_dirty = True
            self._arm()

    def activity(self, row_id: int, row: Any) -> None:
        """A finished request's row (llama-swap sends ``{"id": N}``; we add the row itself).
        ``row``: a mapping, or a callable giving one (called only for the rows sent)."""
        if not self.clients:
            return
        self._activity.append((row_id, row))
        self._activity_seen += 1
        self._arm()

    def inflight_start(self, request_id: str, item: Any) -> None:
        if not self.clients:
            return
        if request_id not in self._inflight:
            self._inflight_order.append(request_id)
        self._inflight[request_id] = item
        self._arm()

    def inflight_end(self, request_id: str) -> None:
        if not self.clients:
            return
        if self._inflight.get(request_id) is not None:
            del self._inflight[request_id]  # started and ended within one batch: never sent
        else:
            if request_id not in self._inflight:
                self._inflight_order.append(request_id)
            self._inflight[request_id] = None
        self._arm()

    def log(self, source: str, data: bytes) -> None:
        if not self.clients:
            return
        buffer = self._logs.get(source)
        if buffer is None:
            buffer = self._logs[source] = bytearray()
        room = LOG_PER_BATCH - len(buffer)
        if room >= len(data):
            buffer += data
        else:
            if room > 0:
                buffer += data[:room]
            self._log_skipped[source] = self._log_skipped.get(source, 0) + len(data) - max(room, 0)
        self._arm()

    def _arm(self) -> None:
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(FLUSH_INTERVAL, self.flush)

    # ------------------------------------------------------------------ flushing

    def encode(self) -> bytes:
        """The pending batch as one blob (and the batch emptied)."""
        parts: list[bytes] = []
        for source, data in self._logs.items():
            text = data.decode("utf-8", "replace")
            skipped = self._log_skipped.get(source)
            if skipped:
                text += f"\n[{skipped} more bytes of log not sent live: see /logs]\n"
            parts.append(frame("logData", dumps({"source": source, "data": text})))
        self._logs = {}
        self._log_skipped = {}
        for row_id, row in self._activity:
            fields = row() if callable(row) else row
            parts.append(frame("activity", dumps({"id": row_id, "row": {"id": row_id, **fields}})))
        skipped_rows = self._activity_seen - len(self._activity)
        if skipped_rows > 0:
            last = self._activity[-1][0]
            parts.append(frame("activity", dumps({"id": last, "skipped": skipped_rows})))
        self._activity.clear()
        self._activity_seen = 0
        for request_id in self._inflight_order:
            if request_id not in self._inflight:
                continue
            item = self._inflight[request_id]
            body: dict[str, Any] = (
                {"operation": "upsert", "request": self.describe(item)}
                if item is not None
                else {"operation": "remove", "id": request_id}
            )
            parts.append(frame("inflight", dumps(body)))
        self._inflight.clear()
        self._inflight_order.clear()
        for kind, message in self._batch:
            parts.append(frame(kind, message if isinstance(message, str) else dumps(message)))
        self._batch.clear()
        if self._state_dirty:
            self._state_dirty = False
            for kind, value in self.state():
                self._latest.setdefault(kind, value)
        for kind, latest in self._latest.items():
            value = latest() if callable(latest) else latest
            parts.append(frame(kind, dumps(value)))
        self._latest.clear()
        return b"".join(parts)

    def flush(self) -> None:
        self._timer = None
        blob = self.encode()
        if not blob:
            return
        for client in list(self.clients):
            if not client.offer(blob):
                self.drop(client, "the client did not keep up with the event stream")

    def drop(self, client: Client, reason: str) -> None:
        if client.dropped:
            return
        self.dropped_clients += 1
        self.clients.discard(client)  # no more batches for it, whatever its socket does
        client.take()
        client.dropped = True
        notice = dumps({"reason": reason, "buffer_bytes": CLIENT_BUFFER})
        client.chunks.append(frame("dropped", notice))
        client.wake.set()
        log.warning("events: dropped a UI client (%s)", reason)
        transport = client.request.transport
        if transport is not None:
            asyncio.get_running_loop().call_later(DROP_GRACE, transport.abort)

    # ------------------------------------------------------------------ the handler

    async def stream(
        self, request: web.Request, initial: Callable[[], bytes]
    ) -> web.StreamResponse:
        """Serve one client until it leaves, is dropped or the daemon shuts down."""
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "X-Content-Type-Options": "nosniff",
                "X-Accel-Buffering": "no",
            }
        )
        await response.prepare(request)
        client = Client(request)
        self.clients.add(client)
        if self._ping is None:
            self._ping = asyncio.get_running_loop().call_later(PING_INTERVAL, self._send_ping)
        try:
            client.offer(initial())
            while True:
                await client.wake.wait()
                data = client.take()
                if data:
                    await response.write(data)
                if client.dropped and not client.chunks:  # the drop notice went out too
                    break
        except (ConnectionError, RuntimeError):
            pass
        finally:
            self.clients.discard(client)
        if client.dropped and request.transport is not None:
            request.transport.close()
        return response

    def _send_ping(self) -> None:
        self._ping = None
        if not self.clients:
            return
        for client in list(self.clients):
            if not client.offer(b": ping\n\n"):
                self.drop(client, "the client did not keep up with the event stream")
        self._ping = asyncio.get_running_loop().call_later(PING_INTERVAL, self._send_ping)

    def close(self) -> None:
        """Shutdown: end every stream (each handler returns after its pending data)."""
        for client in list(self.clients):
            client.dropped = True
            client.wake.set()
        for handle in (self._timer, self._ping):
            if handle is not None:
                handle.cancel()
        self._timer = self._ping = None
