"""Schedulers observable through the API, and load: thousands of requests, nothing lost or leaked."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import time
from collections.abc import Iterator

import aiohttp
import pytest
from waiting import wait_until

from llamaswap.daemon.server import Daemon
from llamaswap.daemon.testing import fake_cmd, make_config, running_daemon

pytestmark = pytest.mark.daemon

CHAT = "/v1/chat/completions"


def _fake_upstreams_on(ports: set[int]) -> list[int]:
    """PIDs of live fake upstream processes listening on one of ``ports`` (process table scan)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
            with open(f"/proc/{entry}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state in ("Z", "X") or b"llamaswap.daemon.fake_upstream" not in argv:
            continue
        if b"--port" in argv and int(argv[argv.index(b"--port") + 1]) in ports:
            found.append(int(entry))
    return found


class ResidentModels(logging.Handler):
    """The most models ever resident at once, from every process state change the host logs.

    Exact, unlike sampling ``/running``: each transition is seen synchronously, in the core's
    order, so even a two-model overlap of a millisecond counts.
    """

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.state: dict[str, str] = {}
        self.most = 0
        self.changes = 0

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg != "%s: %s -> %s (%s)" or not isinstance(record.args, tuple):
            return
        model, _old, new, _reason = record.args
        self.state[str(model)] = str(new)
        self.changes += 1
        resident = [m for m, s in self.state.items() if s not in ("stopped", "shutdown")]
        self.most = max(self.most, len(resident))


@contextlib.contextmanager
def _resident_models() -> Iterator[ResidentModels]:
    observer = ResidentModels()
    host_log = logging.getLogger("llamaswap.host")
    host_log.addHandler(observer)
    try:
        yield observer
    finally:
        host_log.removeHandler(observer)


def _registered(daemon: Daemon) -> int:
    """Requests the core has seen: waiting, being served, or answered (each counted once)."""
    host = daemon.runtime.host
    answered = sum(
        float(n)
        for n in re.findall(r"^llamaswap_requests_total\{.*\} (\S+)$", _metrics(daemon), re.M)
    )
    return host.waiting() + host.in_flight() + int(answered)


def _metrics(daemon: Daemon) -> str:
    return daemon.metrics.render().decode()


async def _arrivals(scheduler: str) -> tuple[list[str], int, int]:
    """Send A B C A B C to cold models, each once the core has seen the one before (so they
    arrive in this order during A's load); completion order, loads, most models resident."""
    models = {m: {"cmd": fake_cmd(load_time=0.1, decode_tps=200)} for m in "ABC"}
    config = make_config(models, scheduler=scheduler)
    async with running_daemon(config) as daemon, aiohttp.ClientSession() as http:
        base = f"http://127.0.0.1:{daemon.port}"
        done: list[str] = []

        async def one(i: int, model: str) -> None:
            await wait_until(lambda: _registered(daemon) >= i, what=f"request {i - 1} to arrive")
            async with http.post(base + CHAT, json={"model": model, "max_tokens": 4}) as r:
                assert r.status == 200
                await r.read()
            done.append(f"{model}{i}")

        with _resident_models() as resident:
            await asyncio.gather(*(one(i, m) for i, m in enumerate("ABCABC")))
        assert resident.changes > 0  # the observer saw the swaps
        loads = sum(p.generation for p in daemon.runtime.router.processes.values())
        return done, loads, resident.most


async def test_serial_completes_in_arrival_order_with_one_model_resident() -> None:
    done, loads, most = await _arrivals("serial")
    assert done == ["A0", "B1", "C2", "A3", "B4", "C5"]
    assert loads == 6
    assert most == 1


async def test_fifo_batches_same_model_requests() -> None:
    done, loads, _ = await _arrivals("fifo")
    assert done == ["A0", "A3", "B1", "B4", "C2", "C5"]
    assert loads == 3


@pytest.mark.slow
@pytest.mark.parametrize("scheduler", ["serial", "fifo"])
async def test_load_2000_requests_64_clients_3_models(scheduler: str) -> None:
    total, clients = 2000, 64
    names = ["red", "green", "blue"]
    models = {
        m: {"cmd": fake_cmd(load_time=0.0, decode_tps=20000, parallel=64), "concurrencyLimit": 100}
        for m in names
    }
    config = make_config(models, scheduler=scheduler)
    ports = {m.port for m in config.models.values() if m.port is not None}
    answers: dict[int, int] = {}
    statuses: dict[int, int] = {}

    def model_of(i: int) -> str:
        if i % 250 == 125:
            return names[(i // 250) % 3]  # an interloper now and then forces extra swaps
        return names[min(2, i * 3 // total)]

    async with running_daemon(config) as daemon:
        base = f"http://127.0.0.1:{daemon.port}"
        counter = iter(range(total))
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(
            timeout=timeout, connector=aiohttp.TCPConnector(limit=clients + 2)
        ) as http:

            async def client() -> None:
                for i in counter:
                    body = {"model": model_of(i), "max_tokens": 1 + i % 3, "stream": i % 4 == 0}
                    async with http.post(base + CHAT, json=body) as r:
                        text = await r.text()
                    answers[i] = answers.get(i, 0) + 1
                    statuses[i] = r.status
                    if r.status == 200 and not body["stream"]:
                        assert f'"completion_tokens": {1 + i % 3}' in text
                    elif r.status == 200:
                        assert text.endswith("data: [DONE]\n\n")

            started = time.monotonic()
            with _resident_models() as resident:
                await asyncio.wait_for(asyncio.gather(*(client() for _ in range(clients))), 120)
            elapsed = time.monotonic() - started
        host = daemon.runtime.host
        assert host.in_flight() == 0 and host.waiting() == 0
        loads = sum(p.generation for p in daemon.runtime.router.processes.values())
    print(f"{scheduler}: {total} requests in {elapsed:.1f}s, {loads} loads")
    assert sorted(answers) == list(range(total))
    assert set(answers.values()) == {1}
    assert set(statuses.values()) == {200}
    assert resident.changes > 0  # the observer saw the swaps
    assert resident.most == 1  # one default exclusive group: never two models at once
    assert _fake_upstreams_on(ports) == []
