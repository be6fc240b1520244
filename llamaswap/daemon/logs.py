"""Log monitors: bounded history plus live subscribers (reference §6.1).

Like llama-swap, each monitor keeps about 100 KiB of history and pushes new data to subscribers
through bounded queues that drop when a subscriber lags, so a slow ``/logs/stream`` client can never
block an upstream's stdout or the proxy. Monitors can forward to parents (a model's log also feeds
the combined upstream log, which feeds the combined ``/logs`` history).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

HISTORY_BYTES = 100 * 1024
SUBSCRIBER_QUEUE = 1024


class LogMonitor:
    def __init__(self, name: str, parents: tuple[LogMonitor, ...] = ()) -> None:
        self.name = name
        self._parents = parents
        self._history = bytearray()
        self._subscribers: set[asyncio.Queue[bytes | None]] = set()
        self.listeners: list[Callable[[bytes], None]] = []
        """Synchronous sinks that must not block (the UI event hub batches what it gets)."""

    def write(self, data: bytes) -> None:
        if not data:
            return
        self._history += data
        if len(self._history) > HISTORY_BYTES:
            del self._history[: len(self._history) - HISTORY_BYTES]
        for queue in self._subscribers:
            if not queue.full():  # a lagging subscriber loses data; the writer never blocks
                queue.put_nowait(data)
        for listener in self.listeners:
            listener(data)
        for parent in self._parents:
            parent.write(data)

    def history(self) -> bytes:
        return bytes(self._history)

    def subscribe(self) -> asyncio.Queue[bytes | None]:
        queue: asyncio.Queue[bytes | None] = asyncio.Queue(SUBSCRIBER_QUEUE)
        self._subscribers.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[bytes | None]) -> None:
        self._subscribers.discard(queue)

    def close_subscribers(self) -> None:
        """Wake every subscriber with an end marker (shutdown)."""
        for queue in self._subscribers:
            try:
                queue.put_nowait(None)
            except asyncio.QueueFull:
                queue.get_nowait()
                queue.put_nowait(None)


class Logs:
    """The daemon's monitors: ``proxy`` (our messages), ``upstream`` (all processes), per model."""

    def __init__(self) -> None:
        self.combined = LogMonitor("combined")
        self.proxy = LogMonitor("proxy", (self.combined,))
        self.upstream = LogMonitor("upstream", (self.combined,))
        self._models: dict[str, LogMonitor] = {}

    def model(self, model_id: str) -> LogMonitor:
        monitor = self._models.get(model_id)
        if monitor is None:
            monitor = self._models[model_id] = LogMonitor(model_id, (self.upstream,))
        return monitor

    def has_model(self, model_id: str) -> bool:
        return model_id in self._models

    def close_subscribers(self) -> None:
        for monitor in (self.combined, self.proxy, self.upstream, *self._models.values()):
            monitor.close_subscribers()


class MonitorHandler(logging.Handler):
    """Routes the daemon's ``logging`` records into the proxy monitor, llama-swap's line format."""

    def __init__(self, monitor: LogMonitor) -> None:
        super().__init__()
        self.monitor = monitor

    def emit(self, record: logging.LogRecord) -> None:
        try:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(record.created))
            line = (
                f"{stamp} [{record.levelname.replace('WARNING', 'WARN')}] {record.getMessage()}\n"
            )
            self.monitor.write(line.encode("utf-8", "replace"))
        except Exception:  # pragma: no cover - logging must never raise into the caller
            self.handleError(record)
