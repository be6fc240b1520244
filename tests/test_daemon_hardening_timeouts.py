"""Issue 19: a stalled request must not pin its model (per-model ``timeouts``).

Real daemon, real fake upstreams. A hung upstream is a real SIGSTOPped process; a client that
stops reading is a real socket that never reads. Each test ends with another model (queued behind
the stalled one under ``serial``, which has a single slot) served, and the stall counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket

import aiohttp
import pytest

from llamaswap.daemon.testing import fake_cmd, make_config, running_daemon

pytestmark = pytest.mark.daemon

CHAT = "/v1/chat/completions"
BOUND = 30.0
"""Every wait here is bounded; the timeouts under test are 1 s, so this is a wide margin."""


async def _until(predicate: object, what: str) -> None:
    async def poll() -> None:
        while not predicate():  # type: ignore[operator]
            await asyncio.sleep(0.02)

    try:
        await asyncio.wait_for(poll(), BOUND)
    except TimeoutError:
        raise AssertionError(f"never happened: {what}") from None


def _models(**timeouts: float) -> dict[str, dict[str, object]]:
    return {
        "slow": {"cmd": fake_cmd(decode_tps=20, parallel=2), "timeouts": dict(timeouts)},
        "other": {"cmd": fake_cmd()},
    }


async def _metrics(http: aiohttp.ClientSession, base: str) -> str:
    async with http.get(base + "/metrics") as r:
        return await r.text()


async def test_sigstopped_upstream_mid_stream_is_cut_and_frees_the_model() -> None:
    config = make_config(_models(idle=1))
    async with running_daemon(config) as daemon, aiohttp.ClientSession() as http:
        base = f"http://127.0.0.1:{daemon.port}"
        body = {"model": "slow", "stream": True, "max_tokens": 10_000}
        async with http.post(base + CHAT, json=body) as r:
            assert r.status == 200
            first = await asyncio.wait_for(r.content.readuntil(b"\n\n"), BOUND)
            assert b"lorem" in first
            pid = daemon.runtime.processes.pid("slow")
            assert pid is not None
            os.kill(pid, signal.SIGSTOP)
            try:
                rest = await asyncio.wait_for(r.content.read(), BOUND)
                # Meanwhile (serial: one slot) the other model gets its turn once slow is freed.
                other = await asyncio.wait_for(
                    http.post(base + CHAT, json={"model": "other", "max_tokens": 2}), BOUND
                )
                assert other.status == 200
                other.release()
            finally:
                with contextlib.suppress(ProcessLookupError):  # evicted (SIGKILLed) meanwhile
                    os.kill(pid, signal.SIGCONT)
        assert b"timed out: the upstream sent nothing for 1s (timeouts.idle)" in rest
        assert b'"code": "gateway_timeout"' in rest
        assert daemon.runtime.host.in_flight("slow") == 0
        text = await _metrics(http, base)
        assert 'llamaswap_timeouts_total{bound="timeouts.idle",model="slow"} 1.0' in text
        assert 'llamaswap_requests_total{model="slow",status="504"} 1.0' in text


async def test_upstream_that_never_answers_gives_504_naming_response_header() -> None:
    config = make_config(_models(responseHeader=1))
    async with running_daemon(config) as daemon, aiohttp.ClientSession() as http:
        base = f"http://127.0.0.1:{daemon.port}"
        async with http.post(base + CHAT, json={"model": "slow", "max_tokens": 1}) as r:
            assert r.status == 200  # loaded and healthy
        pid = daemon.runtime.processes.pid("slow")
        assert pid is not None
        os.kill(pid, signal.SIGSTOP)
        try:
            async with http.post(base + CHAT, json={"model": "slow", "max_tokens": 1}) as r:
                status, payload = r.status, await r.json()
        finally:
            with contextlib.suppress(ProcessLookupError):  # evicted (SIGKILLed) meanwhile
                os.kill(pid, signal.SIGCONT)
        assert status == 504, payload
        assert payload["error"]["message"] == (
            "timed out: the upstream sent no response head within 1s (timeouts.responseHeader)"
        )
        async with http.post(base + CHAT, json={"model": "other", "max_tokens": 1}) as r:
            assert r.status == 200


async def test_client_that_stops_reading_is_cut_after_the_write_bound() -> None:
    models = {
        "slow": {"cmd": fake_cmd(decode_tps=1e6, parallel=2), "timeouts": {"write": 1}},
        "other": {"cmd": fake_cmd()},
    }
    config = make_config(models)
    async with running_daemon(config) as daemon, aiohttp.ClientSession() as http:
        base = f"http://127.0.0.1:{daemon.port}"
        body = json.dumps({"model": "slow", "stream": True, "max_tokens": 400_000}).encode()
        _reader, writer = await asyncio.open_connection("127.0.0.1", daemon.port)
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        writer.write(
            f"POST {CHAT} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        await writer.drain()
        try:
            await _until(lambda: daemon.runtime.host.in_flight("slow") == 1, "slow serving")
            # Never read: the daemon's writes block, then the write bound cuts the request.
            await _until(lambda: daemon.runtime.host.in_flight("slow") == 0, "slow freed")
            async with http.post(base + CHAT, json={"model": "other", "max_tokens": 1}) as r:
                assert r.status == 200
        finally:
            writer.close()
        text = await _metrics(http, base)
        assert 'llamaswap_timeouts_total{bound="timeouts.write",model="slow"} 1.0' in text


async def test_timeouts_parse_with_llama_swap_names_and_defaults() -> None:
    config = make_config(
        {"m": {"cmd": fake_cmd(), "timeouts": {"connect": 5, "responseHeader": 60, "idleConn": 9}}}
    )
    t = config.models["m"].timeouts
    assert (t.connect, t.keepalive, t.response_header, t.tls_handshake) == (5, 30, 60, 10)
    assert (t.expect_continue, t.idle_conn, t.idle, t.total, t.write) == (1, 9, 600, 0, 120)
    assert not [w for w in config.warnings if "timeouts" in w]
