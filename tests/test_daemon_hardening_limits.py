"""Issue 19: what one client connection may cost (slowloris, trickled bodies, absurd JSON).

Real daemon on a real socket; the attackers are raw sockets doing exactly what the issue found
(a header byte at a time, a body at 100 bytes/s, 17M empty objects), scaled down to stay quick.
"""

from __future__ import annotations

import asyncio
import logging
import resource

import aiohttp
import pytest

from llamaswap.config import Config
from llamaswap.daemon.testing import fake_cmd, make_config, running_daemon

pytestmark = pytest.mark.daemon

CHAT = "/v1/chat/completions"
BOUND = 30.0


def _config(**limits: object) -> Config:
    return make_config({"m": {"cmd": fake_cmd()}}, limits=limits)


async def _raw(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port)


async def test_a_request_head_dribbled_byte_by_byte_is_cut_at_the_header_timeout() -> None:
    async with running_daemon(_config(headerTimeout=0.5)) as daemon:
        reader, writer = await _raw(daemon.port)
        writer.write(b"GET /health HTTP/1.1\r\nHo")  # ... and never the rest
        answer = await asyncio.wait_for(reader.read(), BOUND)  # until the daemon closes it
        writer.close()
        assert answer.startswith(b"HTTP/1.1 408 ")
        # An idle connection that never sends a byte is closed the same way.
        reader, writer = await _raw(daemon.port)
        assert (await asyncio.wait_for(reader.read(), BOUND)).startswith(b"HTTP/1.1 408 ")
        writer.close()
        assert daemon.guard.too_slow == 2
        # A kept-alive connection that is merely idle between requests is not cut by it.
        async with aiohttp.ClientSession() as http:
            for _ in range(2):
                async with http.get(f"http://127.0.0.1:{daemon.port}/health") as r:
                    assert r.status == 200


async def test_connections_beyond_the_cap_are_refused_logged_once_and_the_daemon_stays_up(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="llamaswap")
    async with running_daemon(_config(maxConnections=16, headerTimeout=60)) as daemon:
        held = [await _raw(daemon.port) for _ in range(16)]
        await asyncio.wait_for(_until(lambda: daemon.guard.open == 16), BOUND)
        refused = [await _raw(daemon.port) for _ in range(5)]
        for reader, _ in refused:
            assert (await asyncio.wait_for(reader.read(), BOUND)).startswith(b"HTTP/1.1 503 ")
        cap_lines = [r for r in caplog.records if "connection cap reached" in r.getMessage()]
        assert len(cap_lines) == 1  # rate-limited: one line, not one per connection
        assert "limits.maxConnections 16" in cap_lines[0].getMessage()
        for _, writer in held + refused:
            writer.close()
        await asyncio.wait_for(_until(lambda: daemon.guard.open == 0), BOUND)
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{daemon.port}/health") as r,
        ):
            assert r.status == 200


async def _until(predicate: object) -> None:
    while not predicate():  # type: ignore[operator]
        await asyncio.sleep(0.02)


async def test_the_soft_descriptor_limit_is_raised_to_the_hard_limit_at_start_up() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(1024, hard), hard))
    try:
        async with running_daemon(_config()):
            now_soft, now_hard = resource.getrlimit(resource.RLIMIT_NOFILE)
            assert now_hard == hard
            assert now_soft == (hard if hard != resource.RLIM_INFINITY else 1 << 20)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


async def test_malformed_requests_log_one_line_not_a_traceback_each(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    async with running_daemon(_config()) as daemon:
        for _ in range(50):
            reader, writer = await _raw(daemon.port)
            writer.write(b"GET /\x00\x01 HTTP/1.1\r\nHost: x\r\n\r\n")
            assert (await asyncio.wait_for(reader.read(), BOUND))[8:13] == b" 400 "
            writer.close()
        assert daemon.guard.malformed == 50
    lines = [r for r in caplog.records if "malformed HTTP request" in r.getMessage()]
    assert 1 <= len(lines) <= 2 and all(r.exc_info is None for r in lines)
    assert not [r for r in caplog.records if r.exc_info and r.name.startswith("aiohttp")]


async def test_a_trickled_json_body_gets_408_and_never_reaches_the_scheduler() -> None:
    config = _config(bodyIdle=0.5, bodyMinRate=1000)
    async with running_daemon(config) as daemon:
        reader, writer = await _raw(daemon.port)
        body = b'{"model": "m", "pad": "' + b"x" * 20_000 + b'"}'
        writer.write(
            f"POST {CHAT} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n".encode()
        )

        async def trickle() -> None:
            for i in range(0, len(body), 10):  # 100 bytes/s
                writer.write(body[i : i + 10])
                await asyncio.sleep(0.1)

        feeding = asyncio.create_task(trickle())
        try:
            answer = await asyncio.wait_for(reader.read(), BOUND)
        finally:
            feeding.cancel()
            writer.close()
        assert answer.startswith(b"HTTP/1.1 408 ")
        assert b"below 1000 (limits.bodyMinRate)" in answer
        assert daemon.runtime.state("m").value == "stopped"  # type: ignore[union-attr]


async def test_a_json_bomb_is_refused_before_it_is_built() -> None:
    async with (
        running_daemon(_config(maxJsonContainers=1000)) as daemon,
        aiohttp.ClientSession() as http,
    ):
        base = f"http://127.0.0.1:{daemon.port}"
        bomb = b'{"model": "m", "x": [' + b",".join([b"{}"] * 500_000) + b"]}"
        async with http.post(
            base + CHAT, data=bomb, headers={"Content-Type": "application/json"}
        ) as r:
            assert r.status == 400
            message = (await r.json())["error"]["message"]
        assert message == (
            "JSON body has 500002 objects and arrays, more than 1000 (limits.maxJsonContainers)"
        )
        # Braces quoted inside strings (a prompt full of code) are not containers.
        code = b'{"model": "m", "max_tokens": 1, "prompt": "' + b"{[" * 5000 + b'"}'
        async with http.post(base + "/v1/completions", data=code) as r:
            assert r.status == 200


async def test_json_bodies_have_their_own_size_cap_uploads_keep_theirs() -> None:
    async with running_daemon(_config(maxJsonBody=4096)) as daemon, aiohttp.ClientSession() as http:
        base = f"http://127.0.0.1:{daemon.port}"
        big = b'{"model": "m", "pad": "' + b"x" * 8192 + b'"}'
        async with http.post(
            base + CHAT, data=big, headers={"Content-Type": "application/json"}
        ) as r:
            assert r.status == 413
            assert "(limits.maxJsonBody)" in (await r.json())["error"]["message"]
        form = aiohttp.FormData()
        form.add_field("model", "m")
        form.add_field("file", b"\0" * 8192, filename="a.wav", content_type="audio/wav")
        async with http.post(base + "/v1/audio/transcriptions", data=form) as r:
            assert r.status == 200


async def test_a_trickled_upload_streaming_to_its_model_is_cut_and_frees_the_model() -> None:
    async with running_daemon(_config(bodyIdle=0.5, bodyMinRate=1000)) as daemon:
        boundary = "b0undary"
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="model"\r\n\r\nm\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n'
            "Content-Type: audio/wav\r\n\r\n"
        ).encode()
        length = len(head) + 100_000
        reader, writer = await _raw(daemon.port)
        writer.write(
            f"POST /v1/audio/transcriptions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
            f"Content-Length: {length}\r\n\r\n".encode()
            + head
        )

        async def trickle() -> None:
            while True:
                writer.write(b"\0" * 10)  # 100 bytes/s
                await asyncio.sleep(0.1)

        feeding = asyncio.create_task(trickle())
        try:
            await asyncio.wait_for(_until(lambda: daemon.runtime.host.in_flight("m") == 1), BOUND)
            await asyncio.wait_for(_until(lambda: daemon.runtime.host.in_flight("m") == 0), BOUND)
            answer = await asyncio.wait_for(reader.read(), BOUND)
        finally:
            feeding.cancel()
            writer.close()
        assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
        assert b"limits.bodyMinRate" in answer
