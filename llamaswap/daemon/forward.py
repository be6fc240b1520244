"""Relaying one request to an upstream and its response back (reference §2.7).

Small bodies with a ``Content-Length`` are read whole and answered in one write (the cheapest path
for JSON); everything else, event streams above all, is written through chunk by chunk as it
arrives, never buffered, with ``X-Accel-Buffering: no`` so an nginx in front does not buffer either.
If the upstream dies mid-stream the client gets a clear error: a 502 if nothing was sent yet, an
SSE ``error`` event for event streams, or a cut connection for other bodies (so a truncated body can
never look complete).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterable, Awaitable, Callable, Mapping
from typing import Protocol

import aiohttp
from aiohttp import web
from multidict import CIMultiDict

from llamaswap.config.limits import Timeouts
from llamaswap.daemon.body import SLOW_BODY, BodyTooSlowError
from llamaswap.daemon.deadlines import TIMED_OUT, RelayWatch
from llamaswap.daemon.errors import envelope, error_response
from llamaswap.daemon.host import Ticket
from llamaswap.daemon.upstream_client import LeanClient

NO_TIMEOUTS = Timeouts(connect=10.0, idle=0.0, write=0.0)
"""For callers that pass none (the model's ``timeouts`` normally come from its config)."""
ERROR_WRITE_TIMEOUT = 1.0
"""Bound on writing the final error event to a client after a failure."""
BUFFER_LIMIT = 1 << 20
"""Largest ``Content-Length`` answered in one write; longer bodies are streamed."""

_HOP_BY_HOP = frozenset(
    h.lower()
    for h in (
        "Connection",
        "Keep-Alive",
        "Proxy-Authenticate",
        "Proxy-Authorization",
        "TE",
        "Trailer",
        "Trailers",
        "Transfer-Encoding",
        "Upgrade",
        "Host",
        "Content-Length",
        "Expect",  # answered by our own server; the body is sent upstream in one go
    )
)


CREDENTIALS = frozenset(("authorization", "x-api-key", "cookie"))
"""What a client presents to the daemon, not to the model: an upstream that is not what it seems
(a leftover process on the model's port) must not collect the daemon's keys. Forwarded only with
``security.forwardCredentials: true``."""


def request_headers(
    headers: Mapping[str, str], forward_credentials: bool = False
) -> CIMultiDict[str]:
    out: CIMultiDict[str] = CIMultiDict()
    for key, value in headers.items():
        lowered = key.lower()
        if lowered not in _HOP_BY_HOP and (forward_credentials or lowered not in CREDENTIALS):
            out.add(key, value)
    return out


def response_headers(headers: Mapping[str, str]) -> CIMultiDict[str]:
    out: CIMultiDict[str] = CIMultiDict()
    for key, value in headers.items():
        if key.lower() not in _HOP_BY_HOP:
            out.add(key, value)
    return out


def make_session() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=30, enable_cleanup_closed=True),
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
        auto_decompress=False,
        skip_auto_headers=("User-Agent", "Accept-Encoding"),
        cookie_jar=aiohttp.DummyCookieJar(),
    )


DIRECT_WRITE_LIMIT = 64 * 1024


Sink = Callable[[bytes], bool]


def _direct_sinks(
    request: web.Request, tap: Callable[[bytes], None] | None
) -> tuple[Sink, Sink | None]:
    """Write upstream body data to the client from the socket callback (chunked framing).

    Used for streamed responses once their headers are out: one event costs one transport write
    and no task wake-up. Both refuse (so the relay task writes, with back-pressure) when the
    client's send buffer is not nearly empty or the client is gone; order is kept because they
    are only offered data while nothing is queued for the task. The first frames data itself;
    the second (not with a ``tap``, which needs de-chunked data) forwards whole chunk frames of a
    chunked upstream body exactly as received, saving the de-chunking and re-framing copies.
    """
    transport = request.transport

    def sink(data: bytes) -> bool:
        if (
            transport is None
            or transport.is_closing()
            or transport.get_write_buffer_size() > DIRECT_WRITE_LIMIT
        ):
            return False
        if tap is not None:
            tap(data)
        transport.write(b"%x\r\n%b\r\n" % (len(data), data))
        return True

    def framed(frames: bytes) -> bool:
        if (
            transport is None
            or transport.is_closing()
            or transport.get_write_buffer_size() > DIRECT_WRITE_LIMIT
        ):
            return False
        transport.write(frames)
        return True

    return sink, (framed if tap is None else None)


def _cause(exc: BaseException, kind: type[BaseException]) -> BaseException | None:
    """``exc`` or the exception it was raised from, if either is a ``kind``."""
    seen = 0
    current: BaseException | None = exc
    while current is not None and seen < 8:
        if isinstance(current, kind):
            return current
        current = current.__cause__ or current.__context__
        seen += 1
    return None


CLIENT_GONE = "client disconnected"


def failed_status(reason: str) -> int:
    """The status a failed relay is counted under: 499 when the client left, 408 for its too
    slow upload, 504 for a passed timeout, else 502."""
    if reason == CLIENT_GONE:
        return 499
    if reason.startswith(SLOW_BODY):
        return 408
    return 504 if reason.startswith(TIMED_OUT) else 502


def sse_error(status: int, message: str) -> bytes:
    return b"data: " + json.dumps(envelope(status, message)).encode() + b"\n\n"


class UpstreamBody(Protocol):
    """What the relay loop needs from an upstream response, whichever client produced it.

    ``read_chunk``: everything received since the last call, b"" at the end of the body;
    ``read``: the whole (rest of the) body;
    ``finished``: nothing more will come (so the last piece can go out with the end of the body).
    ``set_sink``: optional fast paths (see :func:`_direct_sinks`); a client may ignore them.
    ``close``: abort (drop the connection); ``release``: done cleanly (it may be pooled).
    ``close`` is also what ``abort_serving`` calls on ``ticket.upstream``.
    """

    @property
    def status(self) -> int: ...

    @property
    def headers(self) -> Mapping[str, str]: ...

    @property
    def content_length(self) -> int | None: ...

    async def read_chunk(self) -> bytes: ...

    async def read(self) -> bytes: ...

    @property
    def finished(self) -> bool: ...

    def set_sink(self, sink: Sink | None, framed: Sink | None = None) -> None: ...

    def close(self) -> None: ...

    def release(self) -> None: ...


class _AiohttpBody:
    """aiohttp's client response behind :class:`UpstreamBody` (https, streamed request bodies)."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response
        self.status = response.status
        self.headers: Mapping[str, str] = response.headers
        self.content_length = response.content_length

    async def read_chunk(self) -> bytes:
        return await self._response.content.readany()

    async def read(self) -> bytes:
        return await self._response.read()

    @property
    def finished(self) -> bool:
        return self._response.content.at_eof()

    def set_sink(self, sink: Sink | None, framed: Sink | None = None) -> None:
        pass  # aiohttp feeds its own StreamReader: the relay task writes every chunk

    def close(self) -> None:
        self._response.close()

    def release(self) -> None:
        self._response.release()


async def _open(
    request: web.Request,
    session: aiohttp.ClientSession,
    lean: LeanClient | None,
    url: str,
    body: bytes | AsyncIterable[bytes] | None,
    headers: CIMultiDict[str],
    connect_timeout: float = 0.0,
) -> UpstreamBody:
    """Send the request upstream and return its response once the head is in.

    The lean client serves plain-http upstreams with in-memory bodies (the hot path); aiohttp
    everything else.
    """
    if lean is not None and LeanClient.supports(url) and not isinstance(body, AsyncIterable):
        return await lean.request(
            request.method, url, headers.items(), body, connect_timeout=connect_timeout
        )
    response = await session.request(
        request.method,
        url,
        data=body,
        headers=headers,
        allow_redirects=False,
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=connect_timeout or None),
    )
    return _AiohttpBody(response)


async def relay(
    request: web.Request,
    session: aiohttp.ClientSession,
    ticket: Ticket,
    url: str,
    body: bytes | AsyncIterable[bytes] | None,
    headers: CIMultiDict[str],
    prepared: web.StreamResponse | None = None,
    *,
    tap: Callable[[bytes], None] | None = None,
    settle: Callable[[], Awaitable[None]] | None = None,
    lean: LeanClient | None = None,
    timeouts: Timeouts = NO_TIMEOUTS,
) -> tuple[web.StreamResponse, str | None]:
    """Send the request upstream and relay the answer; also say why it failed, if it did.

    ``prepared``: a response already started by the loading stream; the upstream's chunks are
    appended to it (its status and headers are lost, as in llama-swap). ``tap``: sees every body
    chunk relayed (``serve --record`` reads the first byte and the ``usage`` off it).
    ``settle`` runs after an upstream failure and before the client hears of it: the daemon lets
    the core see a crashed process first, so the client's next request restarts it.
    ``lean``: the fast client for plain-http upstreams and in-memory bodies (aiohttp otherwise).
    ``timeouts``: the model's bounds (:mod:`llamaswap.daemon.deadlines`); one passed gives a 504
    (or an SSE error event, or a cut body) whose message names the config key.
    """
    response: web.StreamResponse | None = prepared
    watch: RelayWatch | None = None
    try:
        async with asyncio.timeout(None) as scope:
            watch = RelayWatch(scope, timeouts)
            upstream = await _open(request, session, lean, url, body, headers, timeouts.connect)
            watch.head_seen = True
            watch.touch()
            ticket.upstream = upstream
            clean = False
            try:
                is_sse = upstream.headers.get("Content-Type", "").startswith("text/event-stream")
                if response is None:
                    length = upstream.content_length
                    if not is_sse and length is not None and length <= BUFFER_LIMIT:
                        data = await upstream.read()
                        if tap is not None:
                            tap(data)
                        clean = True
                        return web.Response(
                            status=upstream.status,
                            body=data,
                            headers=response_headers(upstream.headers),
                        ), None
                    out_headers = response_headers(upstream.headers)
                    if is_sse:
                        out_headers["X-Accel-Buffering"] = "no"
                    response = web.StreamResponse(status=upstream.status, headers=out_headers)
                    await response.prepare(request)
                if response.headers.get("Transfer-Encoding") == "chunked":
                    sink, framed = _direct_sinks(request, tap)
                    upstream.set_sink(watch.wrap(sink), watch.wrap(framed))
                loop = asyncio.get_running_loop()
                while chunk := await upstream.read_chunk():
                    if tap is not None:
                        tap(chunk)
                    watch.writing_since = loop.time()
                    if upstream.finished:  # the last piece and the end of the body in one write
                        await response.write_eof(chunk)
                        break
                    await response.write(chunk)
                    watch.writing_since = None
                    watch.last_data = loop.time()
                else:
                    watch.writing_since = loop.time()
                    await response.write_eof()
                clean = True
                return response, None
            finally:
                watch.stop()
                upstream.set_sink(None)
                if clean:
                    upstream.release()
                else:
                    upstream.close()
    except (TimeoutError, aiohttp.ClientError, ConnectionError) as exc:
        timed_out = watch is not None and watch.expired is not None
        if watch is not None:
            watch.stop()
        if settle is not None and not timed_out:
            await settle()
        if response is not None and (request.transport is None or request.transport.is_closing()):
            # The client went away (a write to it failed before aiohttp cancelled the handler):
            # a 499 like any other disconnect, not an upstream failure.
            return response, CLIENT_GONE
        slow_body = _cause(exc, BodyTooSlowError)
        if slow_body is not None:  # the client's upload, not the upstream, failed
            if request.transport is not None and response is not None:
                request.transport.close()
            return error_response(
                request, 408, str(slow_body), headers={"Connection": "close"}
            ), str(slow_body)
        if timed_out:
            assert watch is not None
            reason = watch.describe()
        else:
            reason = (
                ticket.abort_reason or f"upstream connection failed: {exc or type(exc).__name__}"
            )
        if response is None:
            return error_response(request, 504 if timed_out else 502, reason), reason
        if watch is not None and watch.expired == "write":
            pass  # the client is not reading: writing it an error would block again
        elif response.content_type == "text/event-stream" or prepared is not None:
            try:
                async with asyncio.timeout(ERROR_WRITE_TIMEOUT):
                    await response.write(sse_error(504 if timed_out else 502, reason))
                    await response.write_eof()
            except (ConnectionError, RuntimeError, TimeoutError):
                pass
            return response, reason
        # A raw body cut short: close the connection so the client sees it incomplete.
        if request.transport is not None:
            request.transport.close()
        return response, reason
    finally:
        ticket.upstream = None
