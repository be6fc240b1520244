"""The lean upstream client against a real socket server that answers with scripted raw bytes,
delivered in arbitrary pieces: framing (length, chunked with extensions and trailers, close), 1xx,
keep-alive reuse, stale-connection retry, and errors."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from waiting import wait_until

from llamaswap.daemon.upstream_client import LeanClient, UpstreamError

pytestmark = pytest.mark.daemon

Script = Callable[[int], list[bytes] | None]
"""request number -> pieces to send (None: close the connection without answering)."""


@asynccontextmanager
async def raw_server(
    script: Script, close_after: bool = False
) -> AsyncIterator[tuple[int, list[bytes]]]:
    seen: list[bytes] = []
    count = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal count
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                body = await reader.readexactly(length) if length else b""
                seen.append(head + body)
                pieces = script(count)
                count += 1
                if pieces is None:
                    break
                for piece in pieces:
                    writer.write(piece)
                    await writer.drain()
                    await asyncio.sleep(0)  # one loop turn: each piece is its own read, no wait
                if close_after:
                    break
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield port, seen


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points) if b > a]


CHUNKED = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"6\r\ndata: \r\n"
    b"3;ext=1\r\nabc\r\n"
    b"10\r\n" + b"x" * 16 + b"\r\n"
    b"0\r\nX-Trailer: yes\r\n\r\n"
)
LENGTH = b"HTTP/1.1 201 Created\r\nContent-Length: 11\r\nX-A: 1\r\nX-A: 2\r\n\r\nhello world"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=12))
async def test_framing_survives_any_split(cuts: list[int]) -> None:
    responses = [CHUNKED, LENGTH, b"HTTP/1.1 100 Continue\r\n\r\n" + LENGTH]
    async with raw_server(lambda i: _split(responses[i % 3], cuts)) as (port, _):
        client = LeanClient()
        url = f"http://127.0.0.1:{port}/v1/x?y=1"
        r = await client.request("POST", url, [("Content-Type", "application/json")], b"{}")
        assert r.status == 200 and r.headers["Content-Type"] == "text/event-stream"
        assert await r.read() == b"data: abc" + b"x" * 16
        r.release()
        for _ in range(2):  # the same keep-alive connection is reused
            r = await client.request("GET", url, [], None)
            assert (r.status, r.content_length) == (201, 11)
            assert r.headers.getall("X-A") == ["1", "2"]
            assert await r.read() == b"hello world"
            r.release()
        assert sum(len(p) for p in client._pool.values()) == 1
        client.close()


async def test_request_bytes_and_close_delimited_body() -> None:
    body = b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end"
    async with raw_server(lambda i: [body], close_after=True) as (port, seen):
        client = LeanClient()
        r = await client.request(
            "POST", f"http://127.0.0.1:{port}/p?q=2", [("X-Key", "v")], b'{"a":1}'
        )
        assert await r.read() == b"until the end"
        r.release()
        assert not client._pool.get(("127.0.0.1", port))  # not reusable
        assert seen[0].startswith(b"POST /p?q=2 HTTP/1.1\r\nHost: 127.0.0.1:")
        assert b"X-Key: v\r\n" in seen[0] and b"Content-Length: 7\r\n" in seen[0]
        assert seen[0].endswith(b'\r\n\r\n{"a":1}')
        client.close()


async def test_stale_keep_alive_connection_is_retried_once() -> None:
    async with raw_server(lambda i: [LENGTH], close_after=True) as (port, seen):
        client = LeanClient()
        r = await client.request("GET", f"http://127.0.0.1:{port}/", [], None)
        assert await r.read() == b"hello world"
        r.release()  # pooled, but the server closes it right after answering
        pooled = client._pool[("127.0.0.1", port)]
        assert len(pooled) == 1
        await wait_until(
            lambda: all(conn.closed for conn in pooled), what="the server's close to reach the pool"
        )
        r = await client.request("GET", f"http://127.0.0.1:{port}/", [], None)
        assert await r.read() == b"hello world"
        r.release()
        assert len(seen) == 2
        client.close()


async def test_errors_are_upstream_errors() -> None:
    client = LeanClient()
    async with raw_server(lambda i: None) as (port, _):
        with pytest.raises(UpstreamError, match="closed the connection"):
            await client.request("GET", f"http://127.0.0.1:{port}/", [], None)
    async with raw_server(lambda i: [b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\npartial"]) as (
        port,
        _,
    ):
        r = await client.request("GET", f"http://127.0.0.1:{port}/", [], None)
        assert await r.read_chunk() == b"partial"
        r.close()
    async with raw_server(
        lambda i: [b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"]
    ) as (
        port,
        _,
    ):
        r = await client.request("GET", f"http://127.0.0.1:{port}/", [], None)
        with pytest.raises(UpstreamError, match="malformed"):
            await r.read()
        r.close()
    with pytest.raises(UpstreamError, match="cannot connect"):
        await client.request("GET", f"http://127.0.0.1:{port}/", [], None)
    client.close()
