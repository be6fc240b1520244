"""Relaying one request to an upstream and its response back (reference §2.7).

Small bodies with a ``Content-Length`` are read whole and answered in one write (the cheapest path
for JSON); everything else, event streams above all, is written through chunk by chunk as it
arrives, never buffered, with ``X-Accel-Buffering: no`` so an nginx in front does not buffer either.
If the upstream dies mid-stream the client gets a clear error: a 502 if nothing was sent yet, an
SSE ``error`` event for event streams, or a cut connection for other bodies (so a truncated body can
never look complete).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterable, Awaitable, Callable, Mapping

import aiohttp
from aiohttp import web
from multidict import CIMultiDict

from llamaswap.daemon.errors import envelope, error_response
from llamaswap.daemon.host import Ticket
from llamaswap.daemon.upstream_client import LeanClient

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


def request_headers(headers: Mapping[str, str]) -> CIMultiDict[str]:
    out: CIMultiDict[str] = CIMultiDict()
    for key, value in headers.items():
        if key.lower() not in _HOP_BY_HOP:
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


def _direct_sink(
    request: web.Request, tap: Callable[[bytes], None] | None
) -> Callable[[bytes], bool]:
    """Write upstream body data to the client from the socket callback (chunked framing).

    Used for streamed responses once their headers are out: one event costs one transport write
    and no task wake-up. It refuses (so the relay task writes, with back-pressure) when the
    client's send buffer is not nearly empty or the client is gone; order is kept because it is
    only offered data while nothing is queued for the task.
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

    return sink


def sse_error(status: int, message: str) -> bytes:
    return b"data: " + json.dumps(envelope(status, message)).encode() + b"\n\n"


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
) -> tuple[web.StreamResponse, str | None]:
    """Send the request upstream and relay the answer; also say why it failed, if it did.

    ``prepared``: a response already started by the loading stream; the upstream's chunks are
    appended to it (its status and headers are lost, as in llama-swap). ``tap``: sees every body
    chunk relayed (``serve --record`` reads the first byte and the ``usage`` off it).
    ``settle`` runs after an upstream failure and before the client hears of it: the daemon lets
    the core see a crashed process first, so the client's next request restarts it.
    ``lean``: the fast client for plain-http upstreams and in-memory bodies (aiohttp otherwise).
    """
    response: web.StreamResponse | None = prepared
    try:
        if lean is not None and LeanClient.supports(url) and not isinstance(body, AsyncIterable):
            upstream_lean = await lean.request(request.method, url, headers.items(), body)
            ticket.upstream = upstream_lean
            clean = False
            try:
                content_type = upstream_lean.headers.get("Content-Type", "")
                is_sse = content_type.startswith("text/event-stream")
                if response is None:
                    length = upstream_lean.content_length
                    if not is_sse and length is not None and length <= BUFFER_LIMIT:
                        data = await upstream_lean.read()
                        if tap is not None:
                            tap(data)
                        clean = True
                        return web.Response(
                            status=upstream_lean.status,
                            body=data,
                            headers=response_headers(upstream_lean.headers),
                        ), None
                    out_headers = response_headers(upstream_lean.headers)
                    if is_sse:
                        out_headers["X-Accel-Buffering"] = "no"
                    response = web.StreamResponse(status=upstream_lean.status, headers=out_headers)
                    await response.prepare(request)
                if response.headers.get("Transfer-Encoding") == "chunked":
                    upstream_lean.set_sink(_direct_sink(request, tap))
                while chunk := await upstream_lean.read_chunk():
                    if tap is not None:
                        tap(chunk)
                    await response.write(chunk)
                await response.write_eof()
                clean = True
                return response, None
            finally:
                upstream_lean.set_sink(None)
                if clean:
                    upstream_lean.release()
                else:
                    upstream_lean.close()
        async with session.request(
            request.method, url, data=body, headers=headers, allow_redirects=False
        ) as upstream:
            ticket.upstream = upstream
            content_type = upstream.headers.get("Content-Type", "")
            is_sse = content_type.startswith("text/event-stream")
            if response is None:
                length = upstream.content_length
                if not is_sse and length is not None and length <= BUFFER_LIMIT:
                    data = await upstream.read()
                    if tap is not None:
                        tap(data)
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
            async for chunk in upstream.content.iter_any():
                if tap is not None:
                    tap(chunk)
                await response.write(chunk)
            await response.write_eof()
            return response, None
    except (TimeoutError, aiohttp.ClientError, ConnectionError) as exc:
        if settle is not None:
            await settle()
        reason = ticket.abort_reason or f"upstream connection failed: {exc or type(exc).__name__}"
        if response is None:
            return error_response(request, 502, reason), reason
        if response.content_type == "text/event-stream" or prepared is not None:
            try:
                await response.write(sse_error(502, reason))
                await response.write_eof()
            except (ConnectionError, RuntimeError):
                pass
            return response, reason
        # A raw body cut short: close the connection so the client sees it incomplete.
        if request.transport is not None:
            request.transport.close()
        return response, reason
    finally:
        ticket.upstream = None
