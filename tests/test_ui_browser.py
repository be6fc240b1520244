"""The web UI in a real headless Chromium against a real daemon with real fake upstreams.

Every wait is on a condition (a DOM state, a daemon state), never on time.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from ui_browser import browser_page

from llamaswap.daemon.testing import fake_cmd, make_config, pid_alive, running_daemon
from llamaswap.record import EventLog, Recorder
from llamaswap.record.meta import spec_meta

pytestmark = [pytest.mark.daemon, pytest.mark.slow]

KEY = "sk-ui-test-key"


def _config(**top: Any) -> Any:
    models = {
        "alpha": {"cmd": fake_cmd(load_time=1.0, decode_tps=500.0)},
        "beta": {"cmd": fake_cmd(load_time=1.0, decode_tps=500.0)},
    }
    return make_config(models, scheduler="serial", **top)


def chat(model: str, max_tokens: int = 5) -> dict[str, Any]:
    return {
        "model": model,
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": max_tokens,
    }


async def _until(predicate: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.02)


async def test_models_page_shows_a_swap_live_and_the_timeline_grows() -> None:
    async with running_daemon(_config()) as daemon, aiohttp.ClientSession() as http:
        base = f"http://127.0.0.1:{daemon.port}"
        async with browser_page() as page:
            response = await page.goto(base + "/")
            assert response is not None and response.url.endswith("/ui/")
            alpha = 'tr[data-model="alpha"] .state'
            beta = 'tr[data-model="beta"] .state'
            await page.wait_for_selector(f"{alpha}.stopped")
            first = asyncio.create_task(
                http.post(base + "/v1/chat/completions", json=chat("alpha"))
            )
            await page.wait_for_selector(f"{alpha}.starting")
            await page.wait_for_selector(f"{alpha}.ready")
            (await first).release()
            second = asyncio.create_task(
                http.post(base + "/v1/chat/completions", json=chat("beta"))
            )
            await page.wait_for_selector(f"{beta}.starting")
            await page.wait_for_selector(f"{alpha}.stopped")
            await page.wait_for_selector(f"{beta}.ready")
            (await second).release()

            await page.goto(base + "/ui/#timeline")
            await page.wait_for_function(
                "Number(document.querySelector('#page-timeline').dataset.segments) >= 3"
            )
            before = int(await page.eval_on_selector("#page-timeline", "e => e.dataset.segments"))
            async with http.post(base + "/v1/chat/completions", json=chat("alpha")) as r:
                assert r.status == 200
            await page.wait_for_function(
                f"Number(document.querySelector('#page-timeline').dataset.segments) > {before}"
            )
            assert page.js_errors == []


async def test_load_and_unload_buttons_start_and_stop_the_process() -> None:
    async with running_daemon(_config()) as daemon, aiohttp.ClientSession() as http:
        base = f"http://127.0.0.1:{daemon.port}"
        async with browser_page() as page:
            await page.goto(base + "/ui/#models")
            await page.click('button.load[data-model="beta"]')
            await page.wait_for_selector('tr[data-model="beta"] .state.ready')
            async with http.get(base + "/running") as r:
                running = (await r.json())["running"]
            assert [m["model"] for m in running] == ["beta"]
            pid = running[0]["pid"]
            assert pid_alive(pid)
            await page.click('button.unload[data-model="beta"]')
            await page.wait_for_selector('tr[data-model="beta"] .state.stopped')
            async with http.get(base + "/running") as r:
                assert (await r.json())["running"] == []
            await _until(lambda: not pid_alive(pid))
            assert page.js_errors == []


async def test_a_finished_request_appears_in_activity_with_its_tokens() -> None:
    async with running_daemon(_config()) as daemon, aiohttp.ClientSession() as http:
        base = f"http://127.0.0.1:{daemon.port}"
        async with browser_page() as page:
            await page.goto(base + "/ui/#activity")
            await page.wait_for_selector("#conn.live")
            async with http.post(base + "/v1/chat/completions", json=chat("alpha", 7)) as r:
                assert r.status == 200
            row = page.locator("#activity-table tbody tr", has_text="alpha").first
            await row.wait_for()
            assert await row.locator("td.completion").inner_text() == "7"
            assert (await row.locator("td.prompt").inner_text()).isdigit()
            async with http.post(base + "/v1/chat/completions", json={"model": "nope"}) as r:
                assert r.status == 404
            await page.locator("#activity-table tbody tr td.status-bad", has_text="404").wait_for()
            await page.select_option("#activity-filters [name=model]", "alpha")
            await page.click("#activity-filters button[type=submit]")
            await page.wait_for_function(
                "document.querySelectorAll('#activity-table tbody tr').length === 1"
            )
            await page.wait_for_selector("#activity-stats .card")
            assert page.js_errors == []


async def test_what_if_replays_recorded_traffic_under_another_scheduler(tmp_path: Path) -> None:
    config = _config()
    loop = asyncio.get_running_loop()
    recorder = Recorder(
        EventLog(tmp_path / "events.jsonl", threaded=False),
        loop.time,
        {"host": "daemon", **spec_meta(config.routing_spec())},
    )
    async with running_daemon(config, recorder=recorder) as daemon, aiohttp.ClientSession() as http:
        base = f"http://127.0.0.1:{daemon.port}"
        for model in ("alpha", "beta", "alpha", "alpha", "beta"):
            async with http.post(base + "/v1/chat/completions", json=chat(model)) as r:
                assert r.status == 200
        async with browser_page() as page:
            await page.goto(base + "/ui/#whatif")
            await page.wait_for_selector("#whatif-run:not([disabled])")
            await page.select_option("#whatif-form [name=scheduler]", "fifo")
            await page.click("#whatif-run")
            header = page.locator("#whatif-table thead")
            await header.locator("th", has_text="simulated fifo").wait_for(timeout=120_000)
            assert await header.locator("th", has_text="recorded (serial)").count() == 1
            completed = page.locator("#whatif-table tbody tr", has_text="completed")
            cells = await completed.locator("td.num").all_inner_texts()
            assert cells[0] == "5" and all(c.isdigit() for c in cells)
            assert page.js_errors == []


async def test_with_api_keys_the_ui_refuses_without_a_key_and_signs_in_with_one() -> None:
    async with running_daemon(_config(apiKeys=[KEY])) as daemon, aiohttp.ClientSession() as http:
        base = f"http://127.0.0.1:{daemon.port}"
        for path in ("/api/events", "/api/activity", "/ui/assets/app.js", "/api/models/state"):
            async with http.get(base + path) as r:
                assert r.status == 401, path
        async with browser_page() as page:
            response = await page.goto(base + "/ui/")
            assert response is not None and response.status == 401
            assert await page.locator("#models-table").count() == 0
            await page.fill("input[name=key]", "wrong")
            await page.click("button[type=submit]")
            await page.wait_for_selector("p.error")
            await page.fill("input[name=key]", KEY)
            await page.click("button[type=submit]")
            await page.wait_for_selector('tr[data-model="alpha"] .state.stopped')
            await page.wait_for_selector("#conn.live")  # the event stream is authorized too
            cookies = await page.context.cookies()
            assert all(KEY not in c["value"] for c in cookies)
            assert page.js_errors == []
