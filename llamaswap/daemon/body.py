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

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass

from aiohttp import StreamReader

from llamaswap.daemon.extract import multipart_field

HEAD_LIMIT = 1 << 20
"""Bytes of a multipart body read while looking for its ``model`` field; past this (the field
comes after a large file) the body is read whole instead."""


class BodyTooLargeError(ValueError):
    """The declared or received body exceeds the daemon's limit (becomes a 413)."""


@dataclass
class Body:
    """The part of a request body read so far, and the part still in the client's socket."""

    head: bytes
    rest: StreamReader | None = None
    rest_length: int = 0

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
        return _chain(first, self.rest, self.rest_length)


async def _chain(head: bytes, rest: StreamReader, length: int) -> AsyncIterator[bytes]:
    if head:
        yield head
    left = length
    while left > 0:
        chunk = await rest.readany()
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
) -> Body:
    """Read as much of the body as routing needs; raise :class:`BodyTooLargeError` past ``max_size``."""
    if content_length is not None and content_length > max_size:
        raise BodyTooLargeError(
            f"the body is {content_length} bytes; the limit is {max_size} bytes"
        )
    kind = streamable(content_type, query) if content_length is not None else None
    if kind == "raw" and content_length:
        return Body(b"", content, content_length)
    if kind == "multipart" and content_length:
        head = bytearray()
        while len(head) < min(content_length, HEAD_LIMIT):
            chunk = await content.readany()
            if not chunk:
                break
            head += chunk
            if multipart_field(content_type, bytes(head), "model") is not None:
                return Body(bytes(head), content, content_length - len(head))
        return Body(await _read_all(content, max_size, bytes(head)))
    return Body(await _read_all(content, max_size))


async def _read_all(content: StreamReader, max_size: int, head: bytes = b"") -> bytes:
    chunks = [head] if head else []
    size = len(head)
    while chunk := await content.readany():
        size += len(chunk)
        if size > max_size:
            raise BodyTooLargeError(f"the body exceeds the limit of {max_size} bytes")
        chunks.append(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)
