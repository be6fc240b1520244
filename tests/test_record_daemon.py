"""``serve --record`` on a real daemon with real fake upstreams: what lands in the event log."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest
from waiting import wait_until

from llamaswap.daemon.testing import fake_cmd, make_config, running_daemon, serve_argv
from llamaswap.record import EventLog, Recorder, read_log
from llamaswap.record.meta import spec_from_meta, spec_meta

pytestmark = pytest.mark.daemon

SECRET_KEY = "sk-very-secret-key-123"
PROMPT = "the quick brown fox tells nobody"


def chat(model: str, max_tokens: int, stream: bool = False) -> dict[str, object]:
    return {
        "model": model,
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": max_tokens,
        "stream": stream,
    }


async def test_daemon_records_arrivals_grants_usage_swaps_and_cancels(tmp_path: Path) -> None:
    config = make_config(
        {
            "fast": {"cmd": fake_cmd(load_time=0.1, decode_tps=200.0)},
            "slow": {"cmd": fake_cmd(load_time=3.0, decode_tps=200.0)},
        },
        scheduler="serial",
        apiKeys=[SECRET_KEY],
    )
    log_path = tmp_path / "events.jsonl"
    loop = asyncio.get_running_loop()
    recorder = Recorder(
        EventLog(log_path), loop.time, {"host": "daemon", **spec_meta(config.routing_spec())}
    )
    auth = {"Authorization": f"Bearer {SECRET_KEY}"}
    async with running_daemon(config, recorder=recorder) as daemon:
        url = f"http://127.0.0.1:{daemon.port}/v1/chat/completions"
        async with aiohttp.ClientSession(headers=auth) as session:
            async with session.post(
                url, json=chat("fast", 6), headers={"X-Request-Id": "plain-1"}
            ) as response:
                assert response.status == 200
                await response.read()
            async with session.post(
                url, json=chat("fast", 9, stream=True), headers={"X-Request-Id": "stream-1"}
            ) as response:
                assert response.status == 200
                await response.read()
            async with session.post(url, json=chat("fast", 2)) as response:
                assert response.status == 200
                await response.read()
            # A client that gives up while its model loads: a cancel, never a grant.
            with pytest.raises(TimeoutError):
                async with session.post(
                    url,
                    json=chat("slow", 2),
                    headers={"X-Request-Id": "gives-up"},
                    timeout=aiohttp.ClientTimeout(total=0.5),
                ) as response:
                    await response.read()
            # The handler's cancel is recorded in the same step that takes it off the core's line.
            await wait_until(
                lambda: daemon.runtime.host.waiting() == 0,
                what="the daemon to see the client leave",
            )
    recorder.close()
    records = read_log(log_path)
    text = log_path.read_text()
    assert SECRET_KEY not in text and "quick brown fox" not in text
    by_id: dict[str, list[dict[str, object]]] = {}
    for r in records:
        if "id" in r:
            by_id.setdefault(str(r["id"]), []).append(r)
    plain = {str(r["ev"]): r for r in by_id["plain-1"]}
    assert list(plain) == ["arrival", "grant", "first_byte", "done"]
    assert plain["arrival"]["output_tokens"] == 6 and plain["arrival"]["stream"] is False
    assert plain["done"]["status"] == 200 and plain["done"]["output_tokens"] == 6
    assert plain["done"]["prompt_tokens"] == -(-len(PROMPT) // 4)  # the fake upstream's usage
    stream = {str(r["ev"]): r for r in by_id["stream-1"]}
    assert stream["arrival"]["stream"] is True
    assert stream["done"]["output_tokens"] == 9  # read off the final SSE chunk's usage
    assert float(stream["first_byte"]["t"]) < float(stream["done"]["t"])  # type: ignore[arg-type]
    generated = [i for i in by_id if i.startswith("req-")]
    assert len(generated) == 1
    gave_up = [str(r["ev"]) for r in by_id["gives-up"]]
    assert gave_up == ["arrival", "cancel"]
    loads = [(r["model"], r["to"]) for r in records if r["ev"] == "process"]
    assert loads[:2] == [("fast", "starting"), ("fast", "ready")]
    assert ("slow", "starting") in loads
    swaps = [r for r in records if r["ev"] == "swap_start"]
    assert swaps and swaps[0]["model"] == "fast"
    meta = records[0]
    assert meta["ev"] == "meta" and spec_from_meta(meta).scheduler == "serial"


def test_serve_record_flag_writes_a_log_that_replays(tmp_path: Path) -> None:
    """The CLI path: ``llamaswap serve --record`` as a process, then ``sim --from-log``."""
    from llamaswap.daemon.testing import free_port_block

    config = tmp_path / "config.yaml"
    port = free_port_block(1, start=28000, stop=30000)
    config.write_text(
        json.dumps(
            {
                "startPort": free_port_block(1, start=30000, stop=32000),
                "routing": {"scheduler": {"use": "fifo"}},
                "models": {
                    "m": {
                        "cmd": fake_cmd(load_time=0.1, decode_tps=400.0),
                        "proxy": "http://127.0.0.1:${PORT}",
                    }
                },
            }
        )
    )
    log_path = tmp_path / "rec" / "events.jsonl"
    proc = subprocess.Popen(
        serve_argv(config, port, "--record", str(log_path)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        asyncio.run(_send(port, 6))
    finally:
        proc.terminate()
        assert proc.wait(timeout=30) == 0
    records = read_log(log_path)
    assert sum(1 for r in records if r["ev"] == "done" and r["status"] == 200) == 6
    out = tmp_path / "replay"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "llamaswap",
            "sim",
            "--from-log",
            str(log_path),
            "--scheduler",
            "serial",
            "--out",
            str(out),
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads((out / "replay.json").read_text())
    assert summary["results"]["recorded (fifo)"]["completed"] == 6
    assert summary["results"]["serial"]["completed"] == 6


async def _send(port: int, n: int) -> None:
    url = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession() as session:

        async def healthy() -> bool:
            async with session.get(url + "/health") as response:
                return response.status == 200

        await wait_until(
            healthy,
            10,
            what="the recording daemon to answer /health",
            ignore=(aiohttp.ClientError,),
        )
        for i in range(n):
            async with session.post(
                url + "/v1/chat/completions",
                json=chat("m", 3 + i),
                headers={"X-Request-Id": f"r{i}"},
            ) as response:
                assert response.status == 200
                await response.read()


async def test_a_reload_records_the_new_routing_config(tmp_path: Path) -> None:
    from llamaswap.record.calibrate import calibrate

    models = {"m": {"cmd": fake_cmd(load_time=0.05)}}
    config = make_config(models, scheduler="serial")
    log_path = tmp_path / "events.jsonl"
    loop = asyncio.get_running_loop()
    recorder = Recorder(
        EventLog(log_path), loop.time, {"host": "daemon", **spec_meta(config.routing_spec())}
    )
    async with running_daemon(config, recorder=recorder) as daemon:
        assert await daemon.reload(make_config(models, scheduler="fifo"))
    recorder.close()
    records = read_log(log_path)
    metas = [r for r in records if r["ev"] == "meta"]
    assert [spec_from_meta(m).scheduler for m in metas] == ["serial", "fifo"]
    assert spec_from_meta(calibrate(records).meta).scheduler == "fifo"
