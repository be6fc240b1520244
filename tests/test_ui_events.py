"""``/api/events``: llama-swap's wire format and message shapes, our own types, and bounded
per-client buffers (a client that never reads is dropped and told, the proxy never waits)."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from typing import Any

import aiohttp
import pytest

from llamaswap.daemon import events
from llamaswap.daemon.testing import fake_cmd, make_config, running_daemon

pytestmark = pytest.mark.daemon


async def _messages(response: aiohttp.ClientResponse) -> Any:
    """Yield (type, data) from an SSE body in llama-swap's framing."""
    buffer = b""
    async for chunk in response.content.iter_any():
        buffer += chunk
        while b"\n\n" in buffer:
            raw, buffer = buffer.split(b"\n\n", 1)
            if raw.startswith(b":"):
                continue
            head, data = raw.split(b"\n", 1)
            assert head == b"event:message" and data.startswith(b"data:")
            envelope = json.loads(data[5:])
            assert set(envelope) == {"type", "data"} and isinstance(envelope["data"], str)
            yield envelope["type"], json.loads(envelope["data"])


async def test_event_stream_speaks_llama_swaps_format_and_reports_a_swap() -> None:
    config = make_config({"alpha": {"cmd": fake_cmd(load_time=0.3)}, "beta": {"cmd": fake_cmd()}})
    async with running_daemon(config) as daemon, aiohttp.ClientSession() as http:
        base = f"http://127.0.0.1:{daemon.port}"
        async with http.get(base + "/api/events") as stream:
            assert stream.headers["Content-Type"] == "text/event-stream"
            messages = _messages(stream)
            seen: dict[str, list[Any]] = {}
            async for kind, data in messages:
                seen.setdefault(kind, []).append(data)
                if kind == "scheduler":
                    break  # the last of the initial batch
            assert {m["source"] for m in seen["logData"]} == {"proxy", "upstream"}
            models = seen["modelStatus"][0]
            assert [m["id"] for m in models] == ["alpha", "beta"]
            assert {"id", "name", "description", "state", "unlisted", "peerID"} <= set(models[0])
            assert seen["inflight"] == [{"operation": "snapshot", "requests": []}]

            request = asyncio.create_task(
                http.post(base + "/v1/chat/completions", json={"model": "alpha", "max_tokens": 4})
            )
            async for kind, data in messages:
                seen.setdefault(kind, []).append(data)
                ready = any(m[0]["state"] == "ready" for m in seen["modelStatus"])
                if "activity" in seen and ready:  # state-like types close each batch
                    break
            (await request).release()
            activity = seen["activity"][-1]
            assert isinstance(activity["id"], int) and activity["row"]["completion_tokens"] == 4
            states = [(m["model"], m["new"]) for m in seen["processState"]]
            assert states == [("alpha", "starting"), ("alpha", "ready")]
            assert [s["event"] for s in seen["swap"]] == ["started", "finished"]
            assert seen["swap"][0]["model"] == "alpha" and seen["swap"][1]["error"] is None
            assert any(q["depth"] == 1 for q in seen["queueDepth"])
            assert seen["scheduler"][-1]["scheduler"] == "serial"
            upserts = [m for m in seen["inflight"] if m["operation"] == "upsert"]
            assert upserts and upserts[0]["request"]["model"] == "alpha"
            assert "req_headers" not in upserts[0]["request"]  # headers can carry keys
            assert seen["inflight"][-1] == {
                "operation": "remove",
                "id": upserts[0]["request"]["id"],
            }


async def test_a_client_that_never_reads_is_dropped_and_told_while_readers_keep_up() -> None:
    config = make_config({"alpha": {"cmd": fake_cmd()}})
    async with running_daemon(config) as daemon, aiohttp.ClientSession() as http:
        hub = daemon.operator.events
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # fill up sooner
        sock.connect(("127.0.0.1", daemon.port))
        reader, writer = await asyncio.open_connection(sock=sock)
        writer.write(b"GET /api/events HTTP/1.1\r\nHost: x\r\n\r\n")
        await writer.drain()
        async with http.get(f"http://127.0.0.1:{daemon.port}/api/events") as good:
            received = 0

            async def read_good() -> None:
                nonlocal received
                async for chunk in good.content.iter_any():
                    received += len(chunk)

            reading = asyncio.create_task(read_good())
            deadline = time.monotonic() + 30
            while len(hub.clients) < 2:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.01)
            line = b"x" * 1000 + b"\n"
            bulk = {"filler": "y" * 100_000}
            largest = 0
            while hub.dropped_clients == 0:
                assert time.monotonic() < deadline, "the stuck client was never dropped"
                for _ in range(50):
                    daemon.logs.proxy.write(line)  # capped per batch: the live log stays small
                hub.publish("bulk", bulk)  # uncapped: what fills a client that does not read
                await asyncio.sleep(events.FLUSH_INTERVAL / 2)
                largest = max([largest, *(c.size for c in hub.clients)])
            assert largest <= events.CLIENT_BUFFER
            assert len(hub.clients) == 1  # the reader is still connected
            stuck = await asyncio.wait_for(reader.read(-1), 30)  # drains, then the server closes
            assert b'"type":"dropped"' in stuck
            assert hub.dropped_clients == 1
            reading.cancel()
            assert received > events.CLIENT_BUFFER
        writer.close()


async def test_hub_does_nothing_without_clients_and_folds_short_requests() -> None:
    hub = events.EventHub()
    hub.publish("activity", {"id": 1})
    hub.inflight_start("1", dict)
    hub.log("proxy", b"x")
    assert hub.encode() == b""

    class Fake:
        def offer(self, blob: bytes) -> bool:
            return True

    hub.clients.add(Fake())  # type: ignore[arg-type]
    hub.inflight_start("2", lambda: {"id": "2"})
    hub.inflight_end("2")  # started and ended within one batch: nothing to send
    hub.publish("modelStatus", [1])
    hub.publish("modelStatus", [2])  # state-like: only the latest value goes out
    blob = hub.encode().decode()
    assert "inflight" not in blob and blob.count("modelStatus") == 1 and "[2]" in blob
    if hub._timer is not None:
        hub._timer.cancel()
