"""The relay loop (``forward.relay``) over both upstream clients, on real sockets.

A scripted raw upstream (asyncio streams) sits behind a small real aiohttp server whose handler
calls ``relay`` with the lean client or with aiohttp's client (``lean=None``), so the one relay
loop is exercised over both readers: whole bodies, streamed events that must never be buffered,
upstream deaths mid-body, client disconnects mid-stream and a client that does not read.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest
from aiohttp import web
from waiting import wait_until

from llamaswap.core.request import Request
from llamaswap.daemon.forward import make_session, relay, request_headers
from llamaswap.daemon.host import Ticket
from llamaswap.daemon.upstream_client import LeanClient

pytestmark = pytest.mark.daemon

Upstream = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]

SSE_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n"
    b"Connection: keep-alive\r\n\r\n"
)


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(data), data)


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    return head + (await reader.readexactly(length) if length else b"")


class Relay:
    """The proxy under test: every request is relayed to ``upstream_port``."""

    def __init__(self, upstream_port: int, lean: bool) -> None:
        self.upstream_port = upstream_port
        self.lean = LeanClient() if lean else None
        self.session = make_session()
        self.results: list[tuple[int, str | None]] = []
        """(status, error) of every relay() that returned: each request is answered once."""
        self.cancelled = 0

    async def settled(self, count: int = 1) -> None:
        """Wait until ``count`` handlers ended (the client may see the end of a body first)."""
        await wait_until(
            lambda: len(self.results) + self.cancelled >= count,
            what=f"{count} relay handler(s) to end",
            seen=lambda: (self.results, self.cancelled),
        )

    async def handle(self, request: web.Request) -> web.StreamResponse:
        loop = asyncio.get_running_loop()
        ticket = Ticket(Request("r", "m", loop.time()), loop.create_future())
        body = await request.read()
        try:
            response, error = await relay(
                request,
                self.session,
                ticket,
                f"http://127.0.0.1:{self.upstream_port}{request.raw_path}",
                body,
                request_headers(request.headers),
                lean=self.lean,
            )
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        self.results.append((response.status, error))
        return response


@contextlib.asynccontextmanager
async def proxy(upstream: Upstream, lean: bool) -> AsyncIterator[tuple[str, Relay]]:
    server = await asyncio.start_server(upstream, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    relay_app = Relay(port, lean)
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", relay_app.handle)
    runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    site_port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        async with server:
            yield f"http://127.0.0.1:{site_port}", relay_app
    finally:
        await runner.cleanup()
        await relay_app.session.close()
        if relay_app.lean is not None:
            relay_app.lean.close()


BOTH = pytest.mark.parametrize("lean", [True, False], ids=["lean", "aiohttp"])


@BOTH
async def test_whole_body_keeps_status_and_end_to_end_headers(lean: bool) -> None:
    seen: list[bytes] = []

    async def upstream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await read_request(reader))
        writer.write(
            b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nX-Up: 1\r\n"
            b'Keep-Alive: timeout=5\r\nContent-Length: 9\r\n\r\n{"a": 1}\n'
        )
        await writer.drain()
        await reader.read()  # keep-alive: wait for the proxy to close or reuse
        writer.close()

    async with (
        proxy(upstream, lean) as (base, relay_app),
        aiohttp.ClientSession() as http,
        http.post(base + "/v1/x?q=1", data=b'{"m":1}', headers={"X-In": "2"}) as r,
    ):
        assert (r.status, await r.read()) == (201, b'{"a": 1}\n')
        assert r.headers["X-Up"] == "1" and "Keep-Alive" not in r.headers
        await relay_app.settled()
    assert seen[0].startswith(b"POST /v1/x?q=1 HTTP/1.1\r\n")
    assert b"X-In: 2\r\n" in seen[0] and seen[0].endswith(b'{"m":1}')
    assert relay_app.results == [(201, None)]


@BOTH
async def test_each_event_is_forwarded_before_the_next_one_is_sent(lean: bool) -> None:
    """The upstream sends event n+1 only once the client has event n: any buffering deadlocks."""
    received: list[asyncio.Event] = [asyncio.Event() for _ in range(20)]

    async def upstream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(SSE_HEAD)
        for i in range(20):
            writer.write(chunk(b"data: %d\n\n" % i))
            await writer.drain()
            await received[i].wait()
        writer.write(chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n")
        await writer.drain()
        await reader.read()
        writer.close()

    async with (
        proxy(upstream, lean) as (base, relay_app),
        aiohttp.ClientSession() as http,
        http.post(base + "/v1/chat/completions", data=b"{}") as r,
    ):
        assert r.headers["X-Accel-Buffering"] == "no"
        events: list[bytes] = []
        buffer = b""
        async with asyncio.timeout(10):
            while chunk_ := await r.content.readany():
                buffer += chunk_
                while b"\n\n" in buffer:
                    event, buffer = buffer.split(b"\n\n", 1)
                    events.append(event)
                    if event != b"data: [DONE]":
                        received[int(event[6:])].set()
        await relay_app.settled()
    assert events == [b"data: %d" % i for i in range(20)] + [b"data: [DONE]"]
    assert relay_app.results == [(200, None)]


@BOTH
async def test_upstream_death_mid_stream_ends_with_an_sse_error_event(lean: bool) -> None:
    delivered = asyncio.Event()

    async def upstream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(SSE_HEAD + chunk(b"data: 1\n\n"))
        await writer.drain()
        await delivered.wait()  # dies once the client holds the first event: mid-stream
        writer.transport.abort()

    async with (
        proxy(upstream, lean) as (base, relay_app),
        aiohttp.ClientSession() as http,
        http.post(base + "/", data=b"{}") as r,
    ):
        first = await asyncio.wait_for(r.content.readuntil(b"\n\n"), 10)
        delivered.set()
        text = (first + await r.read()).decode()
        await relay_app.settled()
    assert text.startswith("data: 1\n\ndata: {")
    assert "upstream" in text and text.endswith("\n\n")
    [(status, error)] = relay_app.results
    assert status == 200 and error is not None


@BOTH
async def test_upstream_death_mid_raw_body_cuts_the_client_connection(lean: bool) -> None:
    async def upstream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n" + chunk(b"x" * 100)
        )
        await writer.drain()
        await delivered.wait()  # dies once the client holds the first bytes: mid-body
        writer.transport.abort()

    delivered = asyncio.Event()
    async with (
        proxy(upstream, lean) as (base, relay_app),
        aiohttp.ClientSession() as http,
        http.get(base + "/file") as r,
    ):
        assert await asyncio.wait_for(r.content.readexactly(100), 10) == b"x" * 100
        delivered.set()
        with pytest.raises(aiohttp.ClientPayloadError):
            await r.read()  # a truncated body never looks complete
    assert len(relay_app.results) == 1 and relay_app.results[0][1] is not None


@BOTH
async def test_client_disconnect_mid_stream_closes_the_upstream_connection(lean: bool) -> None:
    upstream_closed = asyncio.Event()
    first_sent = asyncio.Event()

    async def upstream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(SSE_HEAD + chunk(b"data: 1\n\n"))
        await writer.drain()
        first_sent.set()
        try:
            while await reader.read(1024):  # nothing more comes from the proxy; EOF on close
                pass
        except ConnectionError:
            pass
        upstream_closed.set()
        writer.close()

    async with proxy(upstream, lean) as (base, relay_app):
        reader, writer = await asyncio.open_connection(*base[len("http://") :].split(":"))
        writer.write(b"POST /s HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
        await writer.drain()
        async with asyncio.timeout(10):
            data = b""
            while b"data: 1" not in data:
                data += await reader.read(1024)
            await first_sent.wait()
            writer.transport.abort()  # the client goes away mid-stream
            await upstream_closed.wait()
        await relay_app.settled()
    assert relay_app.cancelled + len(relay_app.results) == 1  # the handler ended exactly once


@BOTH
async def test_a_client_that_does_not_read_stops_the_upstream_reads(lean: bool) -> None:
    """Back-pressure: the proxy pauses reading the upstream instead of buffering without bound."""
    pieces, size = 1000, 65000  # 65 MB of events
    written = 0
    stalled = asyncio.Event()

    async def upstream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal written
        await read_request(reader)
        writer.write(SSE_HEAD)
        piece = chunk(b"data: " + b"x" * size + b"\n\n")
        try:
            for _ in range(pieces):
                writer.write(piece)
                try:
                    await asyncio.wait_for(writer.drain(), 1.0)
                except TimeoutError:
                    stalled.set()  # the proxy stopped reading: as it should
                    await writer.drain()
                written += len(piece)
            writer.write(b"0\r\n\r\n")
            await writer.drain()
            await reader.read()
        except ConnectionError:
            pass
        finally:
            writer.close()

    async with proxy(upstream, lean) as (base, relay_app):
        reader, writer = await asyncio.open_connection(*base[len("http://") :].split(":"))
        writer.write(b"POST /s HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
        await writer.drain()
        async with asyncio.timeout(30):
            await stalled.wait()
        # Kernel socket buffers (both hops) plus the proxy's own bounded buffers: far below 65 MB.
        assert written < 24 << 20, written
        got = 0
        async with asyncio.timeout(60):  # reading again lets the whole body through
            while got < pieces * size:
                data = await reader.read(1 << 20)
                assert data
                got += data.count(b"x")
            while not relay_app.results:
                assert await reader.read(1 << 20)
        writer.transport.abort()
    assert relay_app.results == [(200, None)]
