"""Upload bodies reach the upstream while the client is still sending them (issue 4).

The proof is observable, not inferred: the client sends the first part of an upload and stops;
the real fake upstream (a subprocess) reports through ``/debug/receiving`` how many body bytes
it has already received. A daemon that buffered the body would forward nothing until the client
finished, and the poll would time out.
"""

from __future__ import annotations

import asyncio
import hashlib
import json

import aiohttp
import pytest
from waiting import wait_until

from llamaswap.daemon.testing import fake_cmd, make_config, running_daemon

pytestmark = pytest.mark.daemon

BOUNDARY = "llamaswapboundary7"
FILE_BYTES = 4 * 1024 * 1024
FIRST_SLICE = 512 * 1024


def _multipart(model: str, payload: bytes) -> bytes:
    return (
        (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="model"\r\n\r\n{model}\r\n'
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n'
            "Content-Type: audio/wav\r\n\r\n"
        ).encode()
        + payload
        + f"\r\n--{BOUNDARY}--\r\n".encode()
    )


def _models() -> dict[str, dict[str, object]]:
    return {
        "alpha": {"cmd": fake_cmd(), "aliases": ["a"]},
        "beta": {"cmd": fake_cmd(), "useModelName": "upstream-beta"},
    }


async def _received_upstream(http: aiohttp.ClientSession, proxy: str) -> int:
    """Asked of the upstream directly: a request through the daemon would queue behind the
    upload under ``serial``."""
    async with http.get(f"{proxy}/debug/receiving") as r:
        return int((await r.json())["bytes"])


async def _received_at_least(http: aiohttp.ClientSession, proxy: str, count: int) -> int:
    """The bytes the upstream holds once they are ``count`` or more, else 0 (not yet)."""
    got = await _received_upstream(http, proxy)
    return got if got >= count else 0


async def _upstream_idle(http: aiohttp.ClientSession, proxy: str) -> bool:
    return await _received_upstream(http, proxy) == 0


async def _upload_in_two_halves(
    port: int, path: str, content_type: str, body: bytes, http: aiohttp.ClientSession, proxy: str
) -> tuple[int, dict[str, object], int]:
    """Send the head of ``body``, wait until the upstream holds part of it, then the rest.

    Returns (bytes the upstream had received while the client was paused, the response JSON,
    the response status)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    writer.write(head + body[:FIRST_SLICE])
    await writer.drain()
    seen = await wait_until(
        lambda: _received_at_least(http, proxy, FIRST_SLICE // 2),
        what="the upstream to get part of the upload while the client paused",
    )
    writer.write(body[FIRST_SLICE:])
    await writer.drain()
    status, payload = await asyncio.wait_for(_read_response(reader), timeout=20)
    writer.close()
    return seen, json.loads(payload), status


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """(status, body) of one HTTP/1.1 response with a Content-Length."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    body = await reader.readexactly(int(headers["content-length"]))
    return int(lines[0].split()[1]), body


async def test_multipart_upload_is_streamed_after_its_model_field() -> None:
    config = make_config(_models())
    payload = bytes(range(256)) * (FILE_BYTES // 256)
    body = _multipart("a", payload)
    async with running_daemon(config) as daemon, aiohttp.ClientSession() as http:
        base = f"http://127.0.0.1:{daemon.port}"
        async with http.get(base + "/upstream/alpha/health") as r:  # load alpha first
            assert r.status == 200
        seen, echo, status = await _upload_in_two_halves(
            daemon.port,
            "/v1/audio/transcriptions",
            f"multipart/form-data; boundary={BOUNDARY}",
            body,
            http,
            config.models["alpha"].proxy,
        )
        assert status == 200
        assert seen >= FIRST_SLICE // 2, "the upstream got nothing while the client paused"
        assert echo["model"] == "alpha" and echo["path"] == "/v1/audio/transcriptions"
        assert echo["body_bytes"] == len(body)
        assert echo["body_sha256"] == hashlib.sha256(body).hexdigest()
        assert echo["content_length"] == str(len(body)), "the upload reached it chunked"


async def test_streamed_multipart_gets_use_model_name_in_its_model_field() -> None:
    config = make_config(_models())
    payload = b"RIFF" + b"\x01" * (2 * FIRST_SLICE)
    async with running_daemon(config) as daemon, aiohttp.ClientSession() as http:
        base = f"http://127.0.0.1:{daemon.port}"
        async with http.get(base + "/upstream/beta/health") as r:
            assert r.status == 200
        seen, echo, status = await _upload_in_two_halves(
            daemon.port,
            "/v1/audio/transcriptions",
            f"multipart/form-data; boundary={BOUNDARY}",
            _multipart("beta", payload),
            http,
            config.models["beta"].proxy,
        )
        assert status == 200 and seen >= FIRST_SLICE // 2
        expected = _multipart("upstream-beta", payload)
        assert echo["body_bytes"] == len(expected)
        assert echo["body_sha256"] == hashlib.sha256(expected).hexdigest()
        assert echo["content_length"] == str(len(expected))


async def test_raw_body_with_query_model_is_streamed_from_the_first_byte() -> None:
    config = make_config(_models())
    body = bytes(range(251)) * (FILE_BYTES // 251)
    async with running_daemon(config) as daemon, aiohttp.ClientSession() as http:
        base = f"http://127.0.0.1:{daemon.port}"
        async with http.get(base + "/upstream/alpha/health") as r:
            assert r.status == 200
        seen, echo, status = await _upload_in_two_halves(
            daemon.port,
            "/v1/audio/transcriptions?model=a",
            "audio/wav",
            body,
            http,
            config.models["alpha"].proxy,
        )
        assert status == 200 and seen >= FIRST_SLICE // 2
        assert echo["query"] == "model=a"
        assert echo["body_sha256"] == hashlib.sha256(body).hexdigest()


async def test_streamed_upload_waits_for_a_load_and_arrives_whole() -> None:
    """The model is not running: the head waits in the queue, the rest in the client's socket."""
    config = make_config(_models())
    payload = b"\x00\x01" * FILE_BYTES
    body = _multipart("alpha", payload)
    async with running_daemon(config) as daemon, aiohttp.ClientSession() as http:
        base = f"http://127.0.0.1:{daemon.port}"
        async with http.post(
            base + "/v1/audio/transcriptions",
            data=body,
            headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"},
        ) as r:
            echo = await r.json()
        assert r.status == 200
        assert echo["body_sha256"] == hashlib.sha256(body).hexdigest()


async def test_declared_length_over_the_limit_is_refused_before_reading() -> None:
    config = make_config(_models())
    async with running_daemon(config, max_body=1024 * 1024) as daemon:
        reader, writer = await asyncio.open_connection("127.0.0.1", daemon.port)
        writer.write(
            b"POST /v1/audio/transcriptions?model=a HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: audio/wav\r\nContent-Length: 5000000\r\nConnection: close\r\n\r\n"
            b"RIFF"
        )
        await writer.drain()
        status, payload = await asyncio.wait_for(_read_response(reader), timeout=10)
        writer.close()
        assert status == 413
        message = json.loads(payload)["error"]["message"]
        assert "5000000" in message and "limit" in message


async def test_client_gone_mid_upload_frees_the_upstream_and_the_daemon_serves_on() -> None:
    config = make_config(_models())
    proxy = config.models["alpha"].proxy
    body = _multipart("alpha", b"\x07" * FILE_BYTES)
    async with running_daemon(config) as daemon, aiohttp.ClientSession() as http:
        base = f"http://127.0.0.1:{daemon.port}"
        async with http.get(base + "/upstream/alpha/health") as r:
            assert r.status == 200
        _reader, writer = await asyncio.open_connection("127.0.0.1", daemon.port)
        writer.write(
            (
                "POST /v1/audio/transcriptions HTTP/1.1\r\nHost: x\r\n"
                f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
                f"Content-Length: {len(body)}\r\n\r\n"
            ).encode()
            + body[:FIRST_SLICE]
        )
        await writer.drain()
        await wait_until(
            lambda: _received_at_least(http, proxy, FIRST_SLICE // 2),
            what="the upload to reach the upstream",
        )
        writer.transport.abort()  # the client vanishes mid-body
        await wait_until(
            lambda: _upstream_idle(http, proxy),
            what="the upstream to stop waiting for the body",
        )
        async with http.post(
            base + "/v1/chat/completions",
            json={
                "model": "alpha",
                "messages": [{"role": "user", "content": "hi"}],
                "max_tokens": 2,
            },
        ) as r:
            assert r.status == 200
        async with http.get(base + "/metrics") as r:
            metrics = await r.text()
        # Answered once, as a client that went away (499), not as an upstream failure.
        assert 'llamaswap_requests_total{model="alpha",status="499"} 1.0' in metrics
        assert 'status="502"' not in metrics
