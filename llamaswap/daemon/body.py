"""How a request body reaches the upstream: read whole when we must look inside it, streamed otherwise.

A JSON body is read whole: the model name is inside it and filters may rewrite it. An upload is
not: a ``multipart/form-data`` body (audio transcriptions, image edits) is read only until its
``model`` field, which clients send before the file, and a body whose model is in ``?model=`` is
not read at all. The rest goes to the upstream as it arrives from the client, so a 25 MB upload
costs the daemon one socket buffer instead of 25 MB per request while it waits for a load.

Only bodies with a declared ``Content-Length`` are streamed: the limit on body size is then checked
before a byte is read (a clean 413), and the upstream is promised exactly the bytes that follow.
A chunked upload of unknown length is read whole, within the same limit, as before.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field

from aiohttp import StreamReader

from llamaswap.config.limits import Limits
from llamaswap.daemon.extract import multipart_field

HEAD_LIMIT = 1 << 20
"""Bytes of a multipart body read while looking for its ``model`` field; past this (the field
comes after a large file) the body is read whole instead."""


class BodyTooLargeError(ValueError):
    """The declared or received body exceeds the daemon's limit (becomes a 413)."""


SLOW_BODY = "request body too slow: "


class BodyTooSlowError(ConnectionError):
    """The client sends its body too slowly (``limits.bodyIdle``/``bodyMinRate``): a 408.

    A ConnectionError so that, raised while the body streams to an upstream, the relay treats
    it like the client going away mid-body."""


class Pace:
    """Reads body chunks within ``limits.bodyIdle`` of each other and at ``bodyMinRate`` on
    average: a trickling upload must not hold a connection (or, streamed, a model) for hours."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.started = asyncio.get_running_loop().time()
        self.received = 0

    async def read(self, content: StreamReader) -> bytes:
        idle = self.limits.body_idle
        if content.at_eof() or getattr(content, "_buffer", None):  # here already: no timer needed
            chunk = await content.readany()
            self.received += len(chunk)
            return chunk
        try:
            async with asyncio.timeout(idle):
                chunk = await content.readany()
        except TimeoutError:
            raise BodyTooSlowError(
                f"{SLOW_BODY}nothing received for {idle:g}s (limits.bodyIdle)"
            ) from None
        self.received += len(chunk)
        elapsed = asyncio.get_running_loop().time() - self.started
        rate = self.limits.body_min_rate
        if chunk and elapsed > idle and self.received < rate * elapsed:
            raise BodyTooSlowError(
                f"{SLOW_BODY}{self.received / elapsed:.0f} bytes/s on average, "
                f"below {rate:g} (limits.bodyMinRate)"
            )
        return chunk


def json_like(content_type: str) -> bool:
    """Bodies the daemon may parse as JSON: a JSON type, text, or none (llama-swap reads a body
    that starts with ``{`` as JSON whatever its type); these get ``limits.maxJsonBody``."""
    lowered = content_type.lower()
    return not lowered or "json" in lowered or lowered.startswith("text/")


@dataclass
class Body:
    """The part of a request body read so far, and the part still in the client's socket."""

    head: bytes
    rest: StreamReader | None = None
    rest_length: int = 0
    pace: Pace | None = field(default=None, repr=False)

    @property
    def whole(self) -> bool:
        return self.rest is None

    def length(self, head: bytes | None = None) -> int:
        """Bytes the upstream will receive: the (possibly rewritten) head plus the rest.

        Sent as its ``Content-Length``, so a streamed upload is not turned into a chunked one
        (not every upstream server accepts chunked request bodies)."""
        return len(self.head if head is None else head) + self.rest_length

    def payload(self, head: bytes | None = None) -> bytes | AsyncIterator[bytes]:
        """What to send upstream: the bytes, or the (possibly rewritten) head then the rest."""
        first = self.head if head is None else head
        if self.rest is None:
            return first
        return _chain(first, self.rest, self.rest_length, self.pace)


async def _chain(
    head: bytes, rest: StreamReader, length: int, pace: Pace | None
) -> AsyncIterator[bytes]:
    if head:
        yield head
    left = length
    while left > 0:
        chunk = await (pace.read(rest) if pace is not None else rest.readany())
        if not chunk:
            # The client promised more than it sent: the upstream sees the body cut short.
            raise ConnectionResetError("client closed the connection mid-body")
        left -= len(chunk)
        yield chunk


def streamable(content_type: str, query: Mapping[str, str]) -> str | None:
    """``"multipart"``, ``"raw"`` (model in the query, body opaque), or None (read it whole)."""
    lowered = content_type.lower()
    if lowered.startswith("multipart/form-data"):
        return "multipart"
    if (
        query.get("model")
        and lowered
        and "json" not in lowered
        and not lowered.startswith(("application/x-www-form-urlencoded", "text/"))
    ):
        return "raw"
    return None


async def read_body(
    content: StreamReader,
    content_type: str,
    content_length: int | None,
    query: Mapping[str, str],
    max_size: int,
    limits: Limits | None = None,
) -> Body:
    """Read as much of the body as routing needs; raise :class:`BodyTooLargeError` past the
    limit (``max_size``; ``limits.maxJsonBody`` for JSON-like bodies) and
    :class:`BodyTooSlowError` when the client trickles it."""
    limits = limits or Limits()
    pace = Pace(limits)
    if json_like(content_type) and limits.max_json_body < max_size:
        max_size = limits.max_json_body
        what = " (limits.maxJsonBody)"
    else:
        what = ""
    if content_length is not None and content_length > max_size:
        raise BodyTooLargeError(
            f"the body is {content_length} bytes; the limit is {max_size} bytes{what}"
        )
    kind = streamable(content_type, query) if content_length is not None else None
    if kind == "raw" and content_length:
        return Body(b"", content, content_length, pace)
    if kind == "multipart" and content_length:
        head = bytearray()
        while len(head) < min(content_length, HEAD_LIMIT):
            chunk = await pace.read(content)
            if not chunk:
                break
            head += chunk
            if multipart_field(content_type, bytes(head), "model") is not None:
                return Body(bytes(head), content, content_length - len(head), pace)
        return Body(await _read_all(content, max_size, pace, bytes(head)))
    return Body(await _read_all(content, max_size, pace, what=what))


async def _read_all(
    content: StreamReader, max_size: int, pace: Pace, head: bytes = b"", what: str = ""
) -> bytes:
    chunks = [head] if head else []
    size = len(head)
    while chunk := await pace.read(content):
        size += len(chunk)
        if size > max_size:
            raise BodyTooLargeError(f"the body exceeds the limit of {max_size} bytes{what}")
        chunks.append(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def paced(content: StreamReader, limits: Limits) -> AsyncIterator[bytes]:
    """The whole body as it arrives, within the pace limits (``/upstream`` passthrough)."""
    pace = Pace(limits)
    while chunk := await pace.read(content):
        yield chunk
