"""Regenerate the screenshots in docs/ui.md: a real daemon with fake upstreams, some traffic,
and each page in headless Chromium (the browser tests' launcher).

    .venv/bin/python docs/ui_screenshots.py
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from ui_browser import browser_page  # noqa: E402

from llamaswap.daemon.testing import fake_cmd, make_config, running_daemon  # noqa: E402
from llamaswap.record import EventLog, Recorder  # noqa: E402
from llamaswap.record.meta import spec_meta  # noqa: E402

OUT = ROOT / "docs" / "figures"
PAGES = ("models", "activity", "timeline", "scheduler", "logs", "whatif", "chat")


async def main() -> None:
    models = {
        "small": {"cmd": fake_cmd(load_time=0.8, decode_tps=200), "name": "Small fake model"},
        "medium": {"cmd": fake_cmd(load_time=1.5, decode_tps=60, parallel=2), "ttl": 300},
        "embed": {"cmd": fake_cmd(load_time=0.4, prefill_tps=20000)},
    }
    config = make_config(models, scheduler="batch-aging")
    loop = asyncio.get_running_loop()
    with tempfile.TemporaryDirectory() as tmp:
        recorder = Recorder(
            EventLog(Path(tmp) / "events.jsonl"),
            loop.time,
            {"host": "daemon", **spec_meta(config.routing_spec())},
        )
        async with running_daemon(config, recorder=recorder) as daemon:
            base = f"http://127.0.0.1:{daemon.port}"
            async with aiohttp.ClientSession() as http, browser_page(1280, 820) as page:
                await page.goto(base + "/ui/#timeline")

                async def chat(model: str, tokens: int, stream: bool = False) -> None:
                    body = {
                        "model": model,
                        "messages": [{"role": "user", "content": "hi"}],
                        "max_tokens": tokens,
                        "stream": stream,
                    }
                    async with http.post(base + "/v1/chat/completions", json=body) as r:
                        await r.read()

                for burst in (
                    ("small", 6),
                    ("medium", 4),
                    ("small", 3),
                    ("embed", 2),
                    ("medium", 5),
                ):
                    model, count = burst
                    await asyncio.gather(
                        *[chat(model, 8 + 4 * i, stream=i % 2 == 1) for i in range(count)]
                    )
                async with http.post(base + "/v1/chat/completions", json={"model": "nope"}) as r:
                    await r.read()
                waiting: list[asyncio.Task[None]] = []
                OUT.mkdir(parents=True, exist_ok=True)
                for name in PAGES:
                    await page.goto(f"{base}/ui/#{name}")
                    await page.wait_for_selector("#conn.live")
                    if name in ("scheduler", "timeline"):  # a queue across models, live
                        waiting += [
                            asyncio.create_task(chat(m, 60))
                            for m in ("medium", "small", "embed", "small", "medium", "small")
                        ]
                        await page.wait_for_timeout(700)
                    if name == "whatif":
                        await page.select_option("#whatif-form [name=scheduler]", "fifo")
                        await page.click("#whatif-run")
                        await (
                            page.locator("#whatif-table thead th").nth(1).wait_for(timeout=120_000)
                        )
                    elif name == "chat":
                        await page.fill("#chat-prompt", "Tell me about model swapping.")
                        await page.click("#chat-send")
                        await page.wait_for_selector("#chat-reply[data-done]")
                    elif name == "models":
                        await page.click('button.logs[data-model="small"]')
                        await page.wait_for_function(
                            "document.querySelector('#model-log').textContent.length > 0"
                        )
                    await page.wait_for_timeout(1200)  # let charts settle for the picture
                    await page.screenshot(path=str(OUT / f"ui-{name}.png"), full_page=True)
                    print(f"wrote docs/figures/ui-{name}.png")
                await asyncio.gather(*waiting)


if __name__ == "__main__":
    asyncio.run(main())
