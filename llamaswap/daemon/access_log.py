"""The access log: one line per HTTP request on stdout, text by default or JSON (``--access-log json``).

Every request gets a line, refusals included (401, 404 for an unknown model, 400 for a malformed
body, 413), because an operator's first question about a failed client is "did it even reach the
proxy, and what did it get?". A line carries only what is safe to keep in a log file: method,
path without its query string (a client may put a key there), model, status, bytes sent, queue
wait, total time and request id. Never a key, a header value or a body.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from dataclasses import dataclass
from typing import TextIO

FORMATS = ("text", "json", "off")


@dataclass(frozen=True, slots=True)
class AccessRecord:
    unix: float
    method: str
    path: str
    model: str
    status: int
    bytes: int
    wait: float | None
    """Seconds queued in the scheduler (arrival -> grant), None when never queued."""
    total: float
    request_id: str


class AccessLog:
    """Writes :class:`AccessRecord` lines to a stream (the daemon's stdout unless told otherwise)."""

    def __init__(self, fmt: str = "text", stream: TextIO | None = None) -> None:
        if fmt not in FORMATS:
            raise ValueError(
                f"access log format: expected one of {', '.join(FORMATS)}, got {fmt!r}"
            )
        self.format = fmt
        self._stream = stream
        self._second = -1
        self._stamp = ""

    def write(self, record: AccessRecord) -> None:
        if self.format == "off":
            return
        stream = self._stream if self._stream is not None else sys.stdout
        # a closed or broken stdout must never fail a request
        with contextlib.suppress(OSError, ValueError):
            stream.write(self.json(record) if self.format == "json" else self.text(record))

    def text(self, r: AccessRecord) -> str:
        second = int(r.unix)
        if second != self._second:
            self._second = second
            self._stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(second))
        wait = "-" if r.wait is None else f"{r.wait * 1000:.1f}ms"
        return (
            f"{self._stamp} {r.method} {r.path} model={r.model or '-'} status={r.status} "
            f"bytes={r.bytes} wait={wait} total={r.total * 1000:.1f}ms id={r.request_id or '-'}\n"
        )

    @staticmethod
    def json(r: AccessRecord) -> str:
        return (
            json.dumps(
                {
                    "time": round(r.unix, 3),
                    "method": r.method,
                    "path": r.path,
                    "model": r.model or None,
                    "status": r.status,
                    "bytes": r.bytes,
                    "wait_ms": None if r.wait is None else round(r.wait * 1000, 1),
                    "total_ms": round(r.total * 1000, 1),
                    "request_id": r.request_id or None,
                },
                separators=(",", ":"),
            )
            + "\n"
        )
