"""What ``serve --record`` costs on the request path: the same load with and without the event log.

A real daemon (in this process) in front of one real fake upstream (instant generation), N requests
at concurrency C, alternating runs with and without a recorder; prints requests/s and p50/p99
client latency for each, and the log's size per request. Not a timed test::

    .venv/bin/python bench/fidelity_record_overhead.py --requests 3000 --concurrency 16
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from llamaswap.daemon.testing import fake_cmd, make_config, running_daemon
from llamaswap.record import EventLog, Recorder
from llamaswap.record.meta import spec_meta


async def load(port: int, requests: int, concurrency: int) -> tuple[float, list[float]]:
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
    latencies: list[float] = []
    counter = iter(range(requests))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as s:
        async with s.post(url, json=body) as r:  # warm: load the model
            await r.read()

        async def worker() -> None:
            for i in counter:
                t = time.perf_counter()
                async with s.post(url, json=body, headers={"X-Request-Id": f"r{i}"}) as r:
                    await r.read()
                latencies.append(time.perf_counter() - t)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - started, latencies


async def one_run(record: Path | None, requests: int, concurrency: int) -> dict[str, float]:
    model = {
        "cmd": fake_cmd(load_time=0.05, prefill_tps=1e9, decode_tps=1e9, parallel=64),
        "concurrencyLimit": 256,
    }
    config = make_config({"m": model}, scheduler="fifo")
    recorder = None
    if record is not None:
        loop = asyncio.get_running_loop()
        recorder = Recorder(EventLog(record), loop.time, spec_meta(config.routing_spec()))
    async with running_daemon(config, recorder=recorder) as daemon:
        wall, latencies = await load(daemon.port, requests, concurrency)
    if recorder is not None:
        recorder.close()
    latencies.sort()
    return {
        "rps": requests / wall,
        "p50_ms": 1000 * statistics.median(latencies),
        "p99_ms": 1000 * latencies[int(0.99 * (len(latencies) - 1))],
        "bytes_per_request": (record.stat().st_size / requests) if record is not None else 0.0,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    results: dict[str, list[dict[str, float]]] = {"off": [], "on": []}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.rounds):
            for mode in ("off", "on"):
                path = Path(tmp) / f"r{i}.jsonl" if mode == "on" else None
                results[mode].append(asyncio.run(one_run(path, args.requests, args.concurrency)))
    for mode, runs in results.items():
        best = max(runs, key=lambda r: r["rps"])
        print(
            f"record {mode:3}: {best['rps']:8.0f} req/s  p50 {best['p50_ms']:.2f} ms  "
            f"p99 {best['p99_ms']:.2f} ms  log {best['bytes_per_request']:.0f} B/request "
            f"(best of {len(runs)})"
        )
    off = max(r["rps"] for r in results["off"])
    on = max(r["rps"] for r in results["on"])
    print(f"throughput with recording: {100 * on / off:.1f}% of without")
    return 0


if __name__ == "__main__":
    sys.exit(main())
