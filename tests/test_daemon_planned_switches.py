"""batch-aging's planned switches run unchanged in the daemon: with ``slots`` the upstream never
gets more than its slots, the rest wait in the scheduler, and a late model is loaded on plan."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import aiohttp
import pytest
from waiting import sample_until_done

from llamaswap.config import Config
from llamaswap.daemon.testing import fake_cmd, make_config, running_daemon

pytestmark = pytest.mark.daemon

CHAT = "/v1/chat/completions"


def _batch_aging_config(models: dict[str, Any], settings: dict[str, Any]) -> Config:
    routing = {"scheduler": {"use": "batch-aging", "settings": {"batch-aging": settings}}}
    return make_config(models, routing=routing)


def _gauge(metrics: str, name: str, model: str | None = None) -> float:
    label = "" if model is None else f'{{model="{model}"}}'
    match = re.search(rf"^{name}{re.escape(label)} (\S+)$", metrics, re.M)
    return float(match.group(1)) if match else 0.0


async def _peaks(settings: dict[str, Any], requests: int = 4) -> tuple[float, float, list[int]]:
    """Send ``requests`` at once to model A (upstream has 4 slots, ~0.25 s per request); the most
    A requests the upstream itself ever held at once (its own count, read through
    ``/upstream/A/...``), the deepest scheduler queue seen, and the statuses."""
    models = {"A": {"cmd": fake_cmd(load_time=0.1, decode_tps=40)}, "B": {"cmd": fake_cmd()}}
    config = _batch_aging_config(models, settings)
    async with running_daemon(config) as daemon, aiohttp.ClientSession() as http:
        base = f"http://127.0.0.1:{daemon.port}"

        async def queue_depth() -> float:
            async with http.get(base + "/metrics") as r:
                return _gauge(await r.text(), "llamaswap_queue_depth")

        async def one() -> int:
            async with http.post(base + CHAT, json={"model": "A", "max_tokens": 10}) as r:
                await r.read()
                return r.status

        statuses, depths = await sample_until_done(
            asyncio.gather(*(one() for _ in range(requests))), queue_depth
        )
        queued = max(depths)
        async with http.get(base + "/upstream/A/debug/concurrency") as r:
            peak = float((await r.json())["peak"])
    return peak, queued, list(statuses)


async def test_slots_hold_the_excess_in_the_scheduler() -> None:
    in_flight, queued, statuses = await _peaks({"slots": 1, "minResident": 0})
    assert statuses == [200] * 4
    assert in_flight == 1, "never more than one request at the upstream"
    assert queued >= 2, "the others waited in the scheduler, where a switch can overtake them"


async def test_without_slots_the_upstream_gets_the_whole_batch() -> None:
    in_flight, _, statuses = await _peaks({"minResident": 0})
    assert statuses == [200] * 4
    assert in_flight >= 2


async def _stream_with_one_other(settings: dict[str, Any]) -> list[str]:
    """Model A gets a request every 0.2 s for 3 s (one slot takes ~0.25 s each, so A never runs
    dry); one B request arrives at 0.6 s. Returns the completion order."""
    models = {
        "A": {"cmd": fake_cmd(load_time=0.1, decode_tps=40, parallel=1)},
        "B": {"cmd": fake_cmd(load_time=0.1, decode_tps=1000)},
    }
    config = _batch_aging_config(models, settings)
    async with running_daemon(config) as daemon, aiohttp.ClientSession() as http:
        base = f"http://127.0.0.1:{daemon.port}"
        order: list[str] = []

        async def one(model: str, delay: float) -> None:
            # The arrival times are the workload itself (a stream every 0.2 s for 3 s, B at
            # 0.6 s): time passing is the point. What the test asserts is the completion order.
            await asyncio.sleep(delay)
            async with http.post(base + CHAT, json={"model": model, "max_tokens": 10}) as r:
                assert r.status == 200
                await r.read()
            order.append(model)

        await asyncio.gather(*(one("A", 0.2 * i) for i in range(15)), one("B", 0.6))
    assert len(order) == 16
    return order


async def test_a_waiting_model_is_loaded_on_plan_while_the_resident_still_has_work() -> None:
    """Planned: B must start within maxWait (1 s) of its arrival, so A yields mid-stream, and
    earlier than the same policy without ``slots`` at the same maxWait, which has already handed
    A's upstream every request that arrived before B became urgent."""
    settings = {"maxWait": 1.0, "minResident": 0, "loadCost": {"A": 0.3, "B": 0.3}}
    planned = await _stream_with_one_other({"slots": 1, **settings})
    unplanned = await _stream_with_one_other(settings)
    assert planned.index("B") <= 10, f"B waited for (nearly) all of A's stream: {planned}"
    assert planned.index("B") < unplanned.index("B"), (planned, unplanned)


async def test_without_slots_the_stream_keeps_the_gpu_until_max_wait_is_long_past() -> None:
    """The contrast: handing A's upstream every request, the same B waits behind A's queue."""
    order = await _stream_with_one_other(
        {"maxWait": 30.0, "minResident": 0, "switchRatio": 0, "loadCost": {"A": 0.3, "B": 0.3}}
    )
    assert order.index("B") >= 12, order


async def test_api_scheduler_shows_the_policy_state_for_operators() -> None:
    models = {"A": {"cmd": fake_cmd(load_time=0.1, decode_tps=40)}, "B": {"cmd": fake_cmd()}}
    config = _batch_aging_config(models, {"slots": 1, "maxWait": 5.0})
    async with running_daemon(config) as daemon, aiohttp.ClientSession() as http:
        base = f"http://127.0.0.1:{daemon.port}"

        async def one() -> None:
            async with http.post(base + CHAT, json={"model": "A", "max_tokens": 10}) as r:
                assert r.status == 200
                await r.read()

        async def scheduler_state() -> dict[str, Any]:
            async with http.get(base + "/api/scheduler") as r:
                assert r.status == 200
                body: dict[str, Any] = await r.json()
                return body

        _, samples = await sample_until_done(
            asyncio.gather(*(one() for _ in range(3))), scheduler_state
        )
        seen = [sample for sample in samples if isinstance(sample, dict)]
        assert len(seen) == len(samples)
    assert {body["scheduler"] for body in seen} == {"batch-aging"}
    states = [body["state"] for body in seen]
    assert all(state["plan_limit"] >= 5.0 for state in states)
    assert all(sum(state["in_flight"].values()) <= 1 for state in states)
    held = [s for s in states if s["in_flight"] == {"A": 1} and s["queued"] == 2]
    assert held, "one request at the upstream while the scheduler held the other two"
    assert "load_estimate" in held[0] and "urgent" in held[0]
