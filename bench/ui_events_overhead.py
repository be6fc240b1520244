"""The UI event stream's cost on the proxy: bench/proxy_overhead.py's JSON load (wrk, c=16) with
no UI client connected, then with 20 connected to ``/api/events`` (19 reading, one that never
reads), alternating in the same run, plus the daemon's memory throughout.

    .venv/bin/python bench/ui_events_overhead.py [--seconds 5] [--rounds 3] [--clients 20]

Setup as in proxy_overhead.py (same helpers): an nginx upstream answering a fixed chat completion,
``llamaswap serve`` (fifo, access log on, in-memory activity store) in front of it, wrk with one
thread. The UI clients run in a separate process (``--clients-only``), so their reading costs the
machine what a browser would, not the daemon. Printed: requests/s per round, the median of each
side, the loss in percent (target: at most 5%), the daemon's RSS before, during and after, how many
UI clients were dropped (the one that never reads should be) and the bytes the readers received.
The machine is shared: run it on an idle box for figures worth quoting.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from proxy_overhead import (  # noqa: E402
    JSON_BODY,
    cpu_seconds,
    ensure_tools,
    lua,
    nginx_bin,
    nginx_conf,
    wait_http,
    wrk_full,
)

from llamaswap.daemon.testing import free_port_block, serve_argv  # noqa: E402


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


async def clients(port: int, count: int, seconds: float) -> dict[str, int]:
    """``count`` UI clients for ``seconds``: all but one read everything, one never reads."""
    import aiohttp

    received = [0] * (count - 1)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a browser tab that froze
    sock.connect(("127.0.0.1", port))
    _, writer = await asyncio.open_connection(sock=sock)  # never reads
    writer.write(b"GET /api/events HTTP/1.1\r\nHost: bench\r\nAccept: text/event-stream\r\n\r\n")
    await writer.drain()

    async def read(i: int, session: aiohttp.ClientSession) -> None:
        async with session.get(f"http://127.0.0.1:{port}/api/events") as response:
            async for chunk in response.content.iter_any():
                received[i] += len(chunk)

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None)) as session:
        tasks = [asyncio.create_task(read(i, session)) for i in range(count - 1)]
        await asyncio.sleep(seconds)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    writer.close()
    return {"readers": count - 1, "bytes_received": sum(received), "min_reader": min(received)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="per wrk round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each side, alternating")
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--clients-only", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--for", dest="duration", type=float, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.clients_only:
        print(json.dumps(asyncio.run(clients(args.clients_only, args.clients, args.duration))))
        return 0
    ensure_tools()
    base = free_port_block(3)
    json_port, daemon_port = base, base + 1
    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        try:
            upstream = nginx_conf(
                tmp,
                "upstream",
                f"""server {{ listen 127.0.0.1:{json_port};
    location / {{ default_type application/json; return 200 '{JSON_BODY}'; }} }}""",
            )
            procs.append(subprocess.Popen([nginx_bin(), "-c", str(upstream), "-p", str(tmp)]))
            config = tmp / "config.yaml"
            config.write_text(
                f"""routing:
  scheduler: {{use: fifo}}
models:
  bench:
    cmd: sleep 1000000
    proxy: http://127.0.0.1:{json_port}
    checkEndpoint: none
    concurrencyLimit: 100000
"""
            )
            daemon_log = tmp / "daemon.log"
            daemon = subprocess.Popen(
                serve_argv(config, daemon_port, "--activity-db", "", "--activity-max-rows", "5000"),
                stdout=subprocess.DEVNULL,
                stderr=daemon_log.open("wb"),
            )
            procs.append(daemon)
            url = f"http://127.0.0.1:{daemon_port}"
            wait_http(url + "/health")
            script = lua(tmp, "bench")
            wrk_full(url + "/v1/chat/completions", script, args.connections, 1.0)  # warm up
            memory = {"start": rss_kib(daemon.pid)}
            rates: dict[str, list[float]] = {"none": [], "ui": []}
            cpu: dict[str, list[float]] = {"none": [], "ui": []}
            """Daemon CPU microseconds per request: far steadier than req/s on a shared box."""
            stats: list[dict[str, int]] = []
            for round_ in range(args.rounds):
                for side in ("none", "ui"):
                    watcher = None
                    if side == "ui":
                        watcher = subprocess.Popen(
                            [
                                sys.executable,
                                __file__,
                                "--clients-only",
                                str(daemon_port),
                                "--clients",
                                str(args.clients),
                                "--for",
                                str(args.seconds + 2),
                            ],
                            stdout=subprocess.PIPE,
                        )
                        time.sleep(1.0)  # let them connect and take the initial batch
                    before = cpu_seconds(daemon.pid)
                    result = wrk_full(
                        url + "/v1/chat/completions", script, args.connections, args.seconds
                    )
                    used = cpu_seconds(daemon.pid) - before
                    rates[side].append(result.rps)
                    cpu[side].append(1e6 * used / max(1.0, result.rps * args.seconds))
                    if watcher is not None:
                        memory[f"during round {round_ + 1}"] = rss_kib(daemon.pid)
                        out, _ = watcher.communicate(timeout=60)
                        stats.append(json.loads(out))
                    print(
                        f"round {round_ + 1} {side:>4}: {result.rps:8.0f} req/s "
                        f"p50 {result.p50 * 1000:.2f} ms, daemon {cpu[side][-1]:.0f} us CPU/request "
                        f"(non-2xx {result.bad})",
                        flush=True,
                    )
            memory["end"] = rss_kib(daemon.pid)
            metrics = subprocess.run(
                ["curl", "-s", url + "/metrics"], capture_output=True, text=True
            ).stdout
            none, ui = statistics.median(rates["none"]), statistics.median(rates["ui"])
            loss = 100.0 * (none - ui) / none
            print(f"median: no UI clients {none:.0f} req/s, {args.clients} UI clients {ui:.0f}")
            print(f"loss with UI clients: {loss:.1f}% (target <= 5%)")
            c_none, c_ui = statistics.median(cpu["none"]), statistics.median(cpu["ui"])
            print(
                f"daemon CPU per request: {c_none:.0f} us without, {c_ui:.0f} us with UI clients "
                f"(+{100.0 * (c_ui - c_none) / c_none:.1f}%: the req/s a CPU-bound daemon loses)"
            )
            print(
                "daemon RSS (MiB): " + ", ".join(f"{k} {v / 1024:.1f}" for k, v in memory.items())
            )
            for i, s in enumerate(stats, 1):
                print(
                    f"UI round {i}: {s['readers']} readers got {s['bytes_received'] / 1e6:.1f} MB "
                    f"(least {s['min_reader'] / 1e6:.2f} MB each)"
                )
            drops = daemon_log.read_text().count("dropped a UI client")
            print(
                f"UI clients dropped: {drops} (the never-reading one is dropped once the kernel's "
                "socket buffers and its 1 MiB are full)"
            )
            statuses = [
                line for line in metrics.splitlines() if line.startswith("llamaswap_http_requests")
            ]
            print("statuses counted: " + "; ".join(statuses))
        finally:
            for proc in reversed(procs):
                proc.terminate()
            for proc in procs:
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
