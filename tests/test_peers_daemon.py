"""Three real daemons on 127.0.0.1: two "boxes" with fake upstreams, one front with ``peers``.

Everything is real: config parser, daemons on sockets, fake-upstream processes, the openai SDK.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import openai
import pytest
from waiting import wait_until

from llamaswap.config import Config, parse_config
from llamaswap.daemon.server import Daemon
from llamaswap.daemon.testing import fake_cmd, make_config, running_daemon

pytestmark = pytest.mark.daemon

BOX_KEY = "sk-box1"


def _box(*names: str, **top: Any) -> Config:
    return make_config(
        {n: {"cmd": fake_cmd(decode_tps=40.0)} for n in names}, scheduler="fifo", **top
    )


def _front(box1: int, box2: int, **extra: Any) -> Config:
    data: dict[str, Any] = {
        "models": {"local": {"cmd": fake_cmd(), "proxy": "http://127.0.0.1:${PORT}"}},
        "startPort": make_config({"x": {"cmd": fake_cmd()}}).start_port,
        "peers": {
            "box1": {
                "proxy": f"http://127.0.0.1:{box1}",
                "models": ["m1", "chat"],
                "apiKey": BOX_KEY,
                "filters": {"setParamsByID": {"box1/chat": {"max_tokens": 3}}},
            },
            "box2": {"proxy": f"http://127.0.0.1:{box2}", "models": ["m2", "chat"]},
        },
        **extra,
    }
    return parse_config(data)


@contextlib.asynccontextmanager
async def _cluster() -> AsyncIterator[tuple[Daemon, Daemon, Daemon, str]]:
    async with (
        running_daemon(_box("m1", "chat", apiKeys=[BOX_KEY])) as box1,
        running_daemon(_box("m2", "chat")) as box2,
        running_daemon(_front(box1.port, box2.port)) as front,
    ):
        yield box1, box2, front, f"http://127.0.0.1:{front.port}"


async def _chat(
    session: aiohttp.ClientSession, url: str, model: str, **body: Any
) -> tuple[int, dict[str, Any]]:
    payload = {"model": model, "messages": [{"role": "user", "content": "hi"}], **body}
    async with session.post(f"{url}/v1/chat/completions", json=payload) as resp:
        return resp.status, await resp.json(content_type=None)


def _served(daemon: Daemon) -> dict[str, int]:
    """Requests each model of ``daemon`` answered (its own per-model counters)."""
    text = daemon.metrics.render().decode()
    out: dict[str, int] = {}
    for line in text.splitlines():
        if line.startswith("llamaswap_requests_total{") and 'status="200"' in line:
            model = line.split('model="', 1)[1].split('"', 1)[0]
            out[model] = out.get(model, 0) + int(float(line.rsplit(" ", 1)[1]))
    return out


async def test_every_model_answered_once_through_the_front() -> None:
    async with _cluster() as (box1, box2, _front_d, url), aiohttp.ClientSession() as session:
        routed = {
            "local": "local",
            "m1": "m1",  # bare, unique: box1
            "box1/m1": "m1",
            "m2": "m2",
            "box2/m2": "m2",
            "box1/chat": "chat",
            "box2/chat": "chat",
        }
        for name, upstream_model in routed.items():
            status, body = await _chat(session, url, name, max_tokens=2)
            assert status == 200, (name, body)
            assert body["model"] == upstream_model, name  # the peer got its own id
        status, body = await _chat(session, url, "chat")  # two peers list it: not a bare name
        assert status == 404 and "'chat' is not configured" in body["error"]["message"]
        assert _served(box1) == {"m1": 2, "chat": 1}
        assert _served(box2) == {"m2": 2, "chat": 1}
        # setParamsByID keyed by the name the client used: box1/chat answers 3 tokens
        _, body = await _chat(session, url, "box1/chat")
        assert body["usage"]["completion_tokens"] == 3

        async with session.get(f"{url}/v1/models") as resp:
            listed = {m["id"]: m for m in (await resp.json())["data"]}
        assert sorted(listed) == ["box1/chat", "box1/m1", "box2/chat", "box2/m2", "local"]
        assert listed["box2/m2"]["meta"]["llamaswap"] == {"type": "peer", "peerID": "box2"}
        assert listed["box2/m2"]["name"] == "box2: m2"

        # /upstream/<peer model>/<rest>: the rest goes to the peer as is (here: box2's own listing)
        async with session.get(f"{url}/upstream/box2/m2/v1/models") as resp:
            assert resp.status == 200
            assert [m["id"] for m in (await resp.json())["data"]] == ["chat", "m2"]
        async with session.get(f"{url}/upstream/m1", allow_redirects=False) as resp:
            assert resp.status == 301 and resp.headers["Location"] == "/upstream/m1/"


async def test_peer_api_key_is_injected_and_client_key_replaced() -> None:
    async with _cluster() as (box1, _box2, _front_d, url), aiohttp.ClientSession() as session:
        # the client presents no key (or a wrong one): the front sends box1's own key
        payload = {"model": "m1", "messages": [{"role": "user", "content": "hi"}]}
        headers = {"Authorization": "Bearer wrong"}
        async with session.post(f"{url}/v1/chat/completions", json=payload, headers=headers) as r:
            assert r.status == 200
        async with session.post(
            f"http://127.0.0.1:{box1.port}/v1/chat/completions", json=payload, headers=headers
        ) as r:
            assert r.status == 401  # box1 really checks keys


async def test_stream_is_relayed_unbuffered() -> None:
    async with _cluster() as (_b1, _b2, _f, url), aiohttp.ClientSession() as session:
        payload = {
            "model": "box2/m2",
            "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": 20,
            "stream": True,
        }
        arrivals: list[float] = []
        async with session.post(f"{url}/v1/chat/completions", json=payload) as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"].startswith("text/event-stream")
            assert resp.headers["X-Accel-Buffering"] == "no"
            async for line in resp.content:
                if line.startswith(b"data: {"):
                    arrivals.append(time.monotonic())
        assert len(arrivals) >= 20
        # 20 tokens at 40 tokens/s take ~0.5 s upstream: relayed as produced, the first event
        # reaches the client well before the last (a buffered relay delivers them together)
        assert arrivals[-1] - arrivals[0] > 0.25


async def test_openai_sdk_through_a_peer() -> None:
    async with _cluster() as (_b1, _b2, _f, url):
        client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="none")
        chat = await client.chat.completions.create(
            model="box1/m1", messages=[{"role": "user", "content": "hello"}], max_tokens=5
        )
        assert chat.model == "m1"
        assert chat.choices[0].message.content == "lorem ipsum dolor sit amet "
        stream = await client.chat.completions.create(
            model="m2", messages=[{"role": "user", "content": "hello"}], max_tokens=4, stream=True
        )
        parts = [
            c.choices[0].delta.content
            async for c in stream
            if c.choices and c.choices[0].delta.content
        ]
        assert parts == ["lorem ", "ipsum ", "dolor ", "sit "]
        completion = await client.completions.create(model="box2/m2", prompt="x", max_tokens=2)
        assert completion.choices[0].text == "lorem ipsum "
        embedding = await client.embeddings.create(model="box1/m1", input=["a"])
        assert len(embedding.data) == 1
        listed = [m.id async for m in client.models.list()]
        assert "box1/m1" in listed and "local" in listed
        await client.close()


async def test_a_box_killed_mid_run_gives_clear_errors_and_comes_back() -> None:
    async with (
        running_daemon(_box("m1", "chat", apiKeys=[BOX_KEY])) as box1,
        running_daemon(_box("m2", "chat")) as box2,
        running_daemon(_front(box1.port, box2.port)) as front,
        aiohttp.ClientSession() as session,
    ):
        url = f"http://127.0.0.1:{front.port}"
        port2 = box2.port
        assert (await _chat(session, url, "m2"))[0] == 200
        await box2.stop()
        status, body = await _chat(session, url, "m2")
        assert status == 502
        message = body["error"]["message"]
        assert message.startswith("peer box2: proxy error") and str(port2) in message
        for name in ("local", "m1", "box1/chat"):  # the rest keep serving
            assert (await _chat(session, url, name))[0] == 200, name
        revived = Daemon(box2.config, drain_timeout=5.0)
        await revived.start("127.0.0.1", port2)
        try:

            async def answers() -> bool:
                return (await _chat(session, url, "box2/m2"))[0] == 200

            await wait_until(answers, what="box2/m2 answered again after box2 came back")
        finally:
            await revived.stop()


@contextlib.asynccontextmanager
async def _bad_peer(reply: bytes | None) -> AsyncIterator[int]:
    """A TCP server that answers ``reply`` (then closes) or, for None, reads and never answers."""
    held: list[asyncio.StreamWriter] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(65536)
        if reply is None:
            held.append(writer)
            return
        writer.write(reply)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_slow_peer_gives_504_and_garbage_502_naming_the_peer() -> None:
    async with (
        _bad_peer(None) as slow_port,
        _bad_peer(b"this is not http\r\n\r\n") as garbage_port,
    ):
        config = parse_config(
            {
                "models": {},
                "peers": {
                    "slow": {
                        "proxy": f"http://127.0.0.1:{slow_port}",
                        "models": ["s"],
                        "timeouts": {"responseHeader": 1},
                    },
                    "junk": {"proxy": f"http://127.0.0.1:{garbage_port}", "models": ["j"]},
                },
            }
        )
        async with running_daemon(config) as front, aiohttp.ClientSession() as session:
            url = f"http://127.0.0.1:{front.port}"
            status, body = await _chat(session, url, "s")
            assert status == 504
            assert body["error"]["message"] == (
                f"peer slow: no response from http://127.0.0.1:{slow_port} within 1s"
            )
            status, body = await _chat(session, url, "junk/j")
            assert status == 502
            assert body["error"]["message"].startswith("peer junk: proxy error")


async def test_spillover_selector_moves_load_to_the_second_box() -> None:
    """``pool`` spills to box2 once box1 holds ``spillover: 2`` of its requests; counts drain."""
    async with (
        running_daemon(_box("w")) as box1,
        running_daemon(_box("w")) as box2,
    ):
        front_config = parse_config(
            {
                "models": {},
                "peers": {
                    "box1": {"proxy": f"http://127.0.0.1:{box1.port}", "models": ["w"]},
                    "box2": {"proxy": f"http://127.0.0.1:{box2.port}", "models": ["w"]},
                },
                "selectors": {
                    "pool": {
                        "strategy": "spillover",
                        "targets": ["box1/w", "box2/w"],
                        "settings": {"spillover": 2},
                    }
                },
            }
        )
        async with running_daemon(front_config) as front, aiohttp.ClientSession() as session:
            url = f"http://127.0.0.1:{front.port}/v1/chat/completions"
            selectors = front.runtime.selectors
            payload = {
                "model": "pool",
                "messages": [{"role": "user", "content": "hi"}],
                "max_tokens": 120,  # 3 s at 40 tokens/s: all three overlap
                "stream": True,
            }
            streams: list[aiohttp.ClientResponse] = []
            expected = [(1, 0), (2, 0), (2, 1)]
            try:
                for counts in expected:
                    resp = await session.post(url, json=payload)
                    assert resp.status == 200
                    await resp.content.readline()  # the first event: it is being served
                    streams.append(resp)
                    seen = (
                        selectors.in_flight("pool", "box1/w"),
                        selectors.in_flight("pool", "box2/w"),
                    )
                    assert seen == counts
                for resp in streams:
                    await resp.read()
            finally:
                for resp in streams:
                    resp.release()

            def drained() -> bool:
                return (
                    selectors.in_flight("pool", "box1/w")
                    == selectors.in_flight("pool", "box2/w")
                    == 0
                )

            await wait_until(drained, what="spillover counts back to zero")
            assert _served(box1) == {"w": 2}
            assert _served(box2) == {"w": 1}
            # pool is not a model the boxes know: the front rewrote it to the peer's own id
            status, body = await _chat(session, f"http://127.0.0.1:{front.port}", "pool")
            assert status == 200 and body["model"] == "w"


async def test_shutdown_waits_for_an_in_flight_peer_request() -> None:
    """llama-swap's peer shutdown: new requests refused, the one in flight finishes (drain)."""
    async with (
        running_daemon(_box("w")) as box,
        aiohttp.ClientSession() as session,
    ):
        config = parse_config(
            {
                "models": {},
                "peers": {"box": {"proxy": f"http://127.0.0.1:{box.port}", "models": ["w"]}},
            }
        )
        front = Daemon(config, drain_timeout=10.0)
        await front.start("127.0.0.1", 0)
        url = f"http://127.0.0.1:{front.port}/v1/chat/completions"
        payload = {"model": "w", "messages": [{"role": "user", "content": "hi"}]}
        resp = await session.post(url, json={**payload, "max_tokens": 40, "stream": True})
        assert resp.status == 200
        await resp.content.readline()  # being served by the box
        stopping = asyncio.create_task(front.stop())
        await wait_until(lambda: front.draining, what="the front draining")
        body = await resp.read()
        assert body.rstrip().endswith(b"data: [DONE]")  # relayed to its end
        resp.release()
        await stopping
        assert _served(front) == {"box/w": 1}
