"""Faults through the real daemon: crashes, failed starts, health timeouts, disconnects, TTL races.

Each test ends with every request answered once and the daemon still serving.
"""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp
import openai
import pytest
from waiting import wait_until

from llamaswap.core.process import ProcessState
from llamaswap.daemon.testing import fake_cmd, make_config, pid_alive, running_daemon

pytestmark = pytest.mark.daemon

CHAT = "/v1/chat/completions"


async def _post(http: aiohttp.ClientSession, url: str, body: dict[str, object]) -> tuple[int, str]:
    async with http.post(url, json=body) as r:
        return r.status, await r.text()


async def _running(http: aiohttp.ClientSession, base: str) -> list[dict[str, object]]:
    async with http.get(base + "/running") as r:
        running: list[dict[str, object]] = (await r.json())["running"]
        return running


async def test_upstream_crash_mid_stream_fails_clearly_and_next_request_restarts_it() -> None:
    models = {"flaky": {"cmd": fake_cmd(decode_tps=200, extra="--crash-after 1")}}
    config = make_config(models)
    async with running_daemon(config) as daemon, aiohttp.ClientSession() as http:
        base = f"http://127.0.0.1:{daemon.port}"
        status, _ = await _post(http, base + CHAT, {"model": "flaky", "max_tokens": 2})
        assert status == 200
        first_pid = (await _running(http, base))[0]["pid"]

        client = openai.AsyncOpenAI(base_url=base + "/v1", api_key="x", max_retries=0)
        stream = await client.chat.completions.create(
            model="flaky", messages=[{"role": "user", "content": "x"}], max_tokens=50, stream=True
        )
        got: list[str] = []
        with pytest.raises(openai.APIError) as info:
            async for chunk in stream:
                got.append(chunk.choices[0].delta.content or "")
        assert got == ["lorem "]  # one token, then the process died
        assert "upstream" in str(info.value.message)

        # Non-streaming request in flight when it crashes again later: a clean 502 envelope.
        status, text = await _post(http, base + CHAT, {"model": "flaky", "max_tokens": 2})
        assert status == 200, text  # restarted: generation 2 serves its first request fine
        second_pid = (await _running(http, base))[0]["pid"]
        assert second_pid != first_pid and not pid_alive(int(str(first_pid)))
        status, text = await _post(http, base + CHAT, {"model": "flaky", "max_tokens": 2})
        assert status == 502
        assert '"src": "llamaswap"' in text and "bad_gateway" in text
        status, _ = await _post(http, base + CHAT, {"model": "flaky", "max_tokens": 2})
        assert status == 200
        await client.close()
        async with http.get(base + "/metrics") as r:
            assert 'llamaswap_requests_total{model="flaky",status="502"} 2.0' in await r.text()


async def test_upstream_that_fails_to_start_gives_502_and_others_still_work() -> None:
    models = {
        "broken": {"cmd": fake_cmd(load_time=0.1, extra="--fail-start")},
        "missing": {"cmd": "/nonexistent/llama-server --port ${PORT}"},
        "good": {"cmd": fake_cmd()},
    }
    config = make_config(models)
    async with running_daemon(config) as daemon, aiohttp.ClientSession() as http:
        base = f"http://127.0.0.1:{daemon.port}"
        status, text = await _post(http, base + CHAT, {"model": "broken"})
        assert status == 502
        assert "exited prematurely (code 1)" in text
        # The reason quotes the process's own last words, so the operator sees why it died.
        assert "failed to load model (--fail-start)" in text
        status, text = await _post(http, base + CHAT, {"model": "missing"})
        assert status == 502
        assert "failed to start command" in text
        status, _ = await _post(http, base + CHAT, {"model": "good", "max_tokens": 1})
        assert status == 200
        async with http.get(base + "/logs/stream/broken") as r:
            line = await asyncio.wait_for(r.content.readuntil(b"(--fail-start)\n"), 5)
            assert b"failed to load model" in line


async def test_health_check_that_never_passes_times_out_and_the_process_is_killed() -> None:
    models = {"stuck": {"cmd": fake_cmd(load_time=1000)}, "good": {"cmd": fake_cmd()}}
    config = make_config(models, health_check_timeout=1.0)
    async with running_daemon(config) as daemon, aiohttp.ClientSession() as http:
        base = f"http://127.0.0.1:{daemon.port}"
        started = time.monotonic()
        task = asyncio.create_task(_post(http, base + CHAT, {"model": "stuck"}))
        pid = await wait_until(
            lambda: daemon.runtime.processes.pid("stuck"), what="the stuck upstream to spawn"
        )
        assert pid is not None and pid_alive(pid)
        status, text = await task
        assert status == 502 and "health check timed out after 1s" in text
        # The timeout itself is observed in the answer and the log, not in a wall-clock window;
        # the one-sided bound cannot flake (a timer never fires early).
        assert time.monotonic() - started > 0.9
        assert "stuck: starting -> stopping" in daemon.logs.proxy.history().decode()
        await wait_until(lambda: not pid_alive(pid), 7, what="the stuck upstream to be killed")
        assert not pid_alive(pid)
        status, _ = await _post(http, base + CHAT, {"model": "good", "max_tokens": 1})
        assert status == 200


async def test_client_disconnect_while_queued_triggers_no_load() -> None:
    models = {
        "busy": {"cmd": fake_cmd(decode_tps=20, parallel=1)},
        "other": {"cmd": fake_cmd()},
    }
    config = make_config(models, scheduler="serial")
    async with running_daemon(config) as daemon, aiohttp.ClientSession() as http:
        base = f"http://127.0.0.1:{daemon.port}"
        host = daemon.runtime.host
        long = asyncio.create_task(_post(http, base + CHAT, {"model": "busy", "max_tokens": 30}))
        await wait_until(lambda: host.in_flight("busy") == 1, what="busy to be loaded and serving")
        leaving = asyncio.create_task(_post(http, base + CHAT, {"model": "other"}))
        await wait_until(lambda: host.waiting() == 1, what="the other request to queue")
        assert daemon.runtime.host.waiting() == 1
        leaving.cancel()  # the client goes away while queued behind "busy"
        with pytest.raises(asyncio.CancelledError):
            await leaving
        status, _ = await long
        assert status == 200
        # busy's ServeDone is where the core would start a load for a request still counted as
        # waiting; the decision is synchronous, so once it is processed there is nothing to wait for.
        await wait_until(lambda: host.in_flight() == 0, what="busy's request to be done")
        assert daemon.runtime.router.processes["other"].generation == 0  # never spawned
        assert daemon.runtime.host.waiting() == 0
        assert [e["model"] for e in await _running(http, base)] == ["busy"]
        status, _ = await _post(http, base + CHAT, {"model": "other", "max_tokens": 1})
        assert status == 200


@pytest.mark.parametrize("scheduler", ["serial", "fifo", "batch-aging"])
async def test_client_disconnect_while_its_model_loads(scheduler: str) -> None:
    """The core's policy, under every scheduler: a load nobody waits for finishes unless another
    model is waiting, in which case it is aborted and the next model starts at once."""
    models = {"heavy": {"cmd": fake_cmd(load_time=1.2)}, "next": {"cmd": fake_cmd()}}
    config = make_config(models, scheduler=scheduler)
    async with running_daemon(config) as daemon, aiohttp.ClientSession() as http:
        base = f"http://127.0.0.1:{daemon.port}"
        host = daemon.runtime.host
        # Alone: the cancelled request leaves, the load completes, nothing is served.
        leaving = asyncio.create_task(_post(http, base + CHAT, {"model": "heavy"}))
        await wait_until(
            lambda: daemon.runtime.processes.pid("heavy"), what="heavy's first load to spawn"
        )
        assert daemon.runtime.processes.pid("heavy") is not None
        leaving.cancel()
        with pytest.raises(asyncio.CancelledError):
            await leaving
        await wait_until(lambda: host.waiting() == 0, what="the cancel to reach the core")
        assert host.waiting() == 0 and host.in_flight() == 0
        await wait_until(
            lambda: daemon.runtime.state("heavy").value == "ready",
            5,
            what="the abandoned load to finish anyway",
            seen=lambda: daemon.runtime.state("heavy"),
        )
        assert daemon.runtime.state("heavy").value == "ready"
        await _post(http, base + "/api/models/unload", {})

        # With another model waiting behind it, the abandoned load is aborted at once.
        leaving = asyncio.create_task(_post(http, base + CHAT, {"model": "heavy"}))
        pid = await wait_until(
            lambda: daemon.runtime.processes.pid("heavy"), what="heavy's second load to spawn"
        )
        assert pid is not None
        behind = asyncio.create_task(_post(http, base + CHAT, {"model": "next", "max_tokens": 1}))
        await wait_until(lambda: host.waiting() == 2, what="next to queue behind heavy's load")
        assert daemon.runtime.state("heavy") is ProcessState.STARTING
        leaving.cancel()
        with pytest.raises(asyncio.CancelledError):
            await leaving
        status, _ = await behind
        assert status == 200
        assert not pid_alive(pid)
        # heavy's second load was aborted before it became ready: only the first one got there.
        assert daemon.logs.proxy.history().decode().count("heavy: starting -> ready") == 1
        assert host.waiting() == 0 and host.in_flight() == 0
        status, _ = await _post(http, base + CHAT, {"model": "heavy", "max_tokens": 1})
        assert status == 200


async def test_ttl_unload_racing_new_requests() -> None:
    models = {"short": {"cmd": fake_cmd(load_time=0.0), "ttl": 1}}
    config = make_config(models)
    async with running_daemon(config) as daemon, aiohttp.ClientSession() as http:
        base = f"http://127.0.0.1:{daemon.port}"
        statuses: list[int] = []
        generations: set[int] = set()
        for delay in (0.95, 0.99, 1.0, 1.02, 1.05, 1.2):
            status, _ = await _post(http, base + CHAT, {"model": "short", "max_tokens": 1})
            statuses.append(status)
            generations.add(daemon.runtime.router.processes["short"].generation)
            # Time passing is the point: each request lands just before, at or after the 1 s TTL
            # of the previous one (bounded: 6 sleeps, 6.2 s). That unloads really raced these
            # requests is observed below: they met at least one restart.
            await asyncio.sleep(delay)
        status, _ = await _post(http, base + CHAT, {"model": "short", "max_tokens": 1})
        statuses.append(status)
        assert statuses == [200] * 7
        assert len(generations) >= 2  # some of those requests met a TTL unload and restarted it
        assert daemon.runtime.host.in_flight() == 0


async def test_slow_client_on_a_stream_gets_everything_while_others_are_served() -> None:
    models = {"fast": {"cmd": fake_cmd(decode_tps=5000, parallel=4)}}
    config = make_config(models)
    async with running_daemon(config) as daemon, aiohttp.ClientSession() as http:
        base = f"http://127.0.0.1:{daemon.port}"
        body = {"model": "fast", "max_tokens": 3000, "stream": True}
        async with http.post(base + CHAT, json=body) as r:
            assert r.headers["X-Accel-Buffering"] == "no"
            events = 0
            words: list[str] = []
            async for line in r.content:
                if line.startswith(b"data: {"):
                    events += 1
                    choice = json.loads(line[len(b"data: ") :])["choices"][0]
                    words.append(choice["delta"].get("content", ""))
                if events % 500 == 0:
                    # A slow reader (time passing is the point; 6 pauses, 1.2 s in all): the
                    # relay meets TCP back-pressure while other requests must still be served.
                    await asyncio.sleep(0.2)
                    status, _ = await _post(http, base + CHAT, {"model": "fast", "max_tokens": 1})
                    assert status == 200
        assert events == 3001  # 3000 tokens + the final usage chunk
        cycle = [
            "lorem ",
            "ipsum ",
            "dolor ",
            "sit ",
            "amet ",
            "consectetur ",
            "adipiscing ",
            "elit ",
        ]
        assert words[:-1] == [cycle[i % 8] for i in range(3000)]  # complete and in order
        assert daemon.runtime.host.in_flight() == 0


async def test_loading_stream_that_fails_ends_with_an_error_event() -> None:
    """The 200 of a loading stream is already sent when the load fails: the error follows in-band."""
    models = {
        "doomed": {"cmd": fake_cmd(load_time=0.9, extra="--fail-start"), "sendLoadingState": True}
    }
    config = make_config(models)
    async with running_daemon(config) as daemon, aiohttp.ClientSession() as http:
        base = f"http://127.0.0.1:{daemon.port}"
        body = {"model": "doomed", "stream": True, "messages": []}
        async with http.post(base + CHAT, json=body) as r:
            assert r.status == 200
            text = await r.text()
        assert "llamaswap loading model: doomed" in text
        last = [line for line in text.split("\n\n") if line.startswith("data: ")][-1]
        error = json.loads(last[len("data: ") :])
        assert error["src"] == "llamaswap" and error["error"]["code"] == "bad_gateway"
        assert "exited prematurely" in error["error"]["message"]
        assert daemon.runtime.host.waiting() == 0 and daemon.runtime.host.in_flight() == 0


async def test_unload_while_a_request_waits_for_the_load_answers_503() -> None:
    models = {"slowload": {"cmd": fake_cmd(load_time=1.5)}}
    config = make_config(models)
    async with running_daemon(config) as daemon, aiohttp.ClientSession() as http:
        base = f"http://127.0.0.1:{daemon.port}"
        waiting = asyncio.create_task(_post(http, base + CHAT, {"model": "slowload"}))
        await wait_until(
            lambda: daemon.runtime.state("slowload") is ProcessState.STARTING,
            what="the request to be waiting for slowload's load",
            seen=lambda: daemon.runtime.state("slowload"),
        )
        async with http.post(base + "/api/models/unload/slowload") as r:
            assert r.status == 200
        status, text = await waiting
        assert status == 503, text
        assert json.loads(text)["error"]["code"] == "service_unavailable"
        status, _ = await _post(http, base + CHAT, {"model": "slowload", "max_tokens": 1})
        assert status == 200
