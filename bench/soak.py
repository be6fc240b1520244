"""Soak: mixed hostile traffic against a real ``llamaswap serve`` for a bounded time (issue 19).

    .venv/bin/python bench/soak.py [--duration 1800] [--seed 1] [--json out.json]

One daemon (fifo, three fake-upstream models that take turns) gets, concurrently: plain and
streamed chat requests, clients that hang up mid-stream, clients that stop reading, uploads
trickled below ``limits.bodyMinRate``, malformed HTTP and absurd JSON, SIGHUP reloads, and
SIGKILLs of a random running upstream. Every request is a real socket with a deadline.

Counted, client side: requests sent; answered once (exactly one response); lost (connection
closed with no response, where the client did not hang up itself); duplicated (bytes of a second
response after the first on a connection that sent one request); hung (no answer within its
deadline); 5xx from the daemon itself (a 500, or a 5xx whose reason is not an upstream failure,
a passed timeout or a reload). Daemon side: peak RSS and open descriptors (sampled every second
from /proc), and orphans after SIGTERM: processes still carrying its ``LLAMASWAP_TREE`` marker.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from llamaswap.daemon.proctree import marked  # noqa: E402
from llamaswap.daemon.testing import fake_cmd, free_port_block, serve_argv  # noqa: E402

MODELS = ("alpha", "beta", "gamma")
DEADLINE = 90.0
"""A request with no complete answer by then is hung (timeouts.idle/write are 3 s here)."""
EXPECTED_5XX = ("upstream", "exited", "timed out", "stopped", "shutting down", "reload", "load")


@dataclass
class Tally:
    sent: Counter[str] = field(default_factory=Counter)
    answered: int = 0
    lost: int = 0
    duplicated: int = 0
    hung: int = 0
    self_5xx: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    notes: list[str] = field(default_factory=list)


def config_text(base: int) -> str:
    models = "".join(
        f"  {m}:\n    cmd: {fake_cmd(load_time=0.3, decode_tps=400, parallel=4)}\n"
        f"    proxy: http://127.0.0.1:${{PORT}}\n"
        "    timeouts: {idle: 3, write: 3}\n"
        for m in MODELS
    )
    return (
        f"startPort: {base + 1}\nhealthCheckTimeout: 15\n"
        "routing: {scheduler: {use: fifo}}\n"
        "limits: {headerTimeout: 3, bodyIdle: 2, bodyMinRate: 2000, maxJsonContainers: 10000}\n"
        f"models:\n{models}"
    )


async def exchange(
    port: int, raw: bytes, tally: Tally, kind: str, *, hang_up_after: int = 0, stall: float = 0
) -> None:
    """One request on its own connection; classify what came back."""
    tally.sent[kind] += 1
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError as exc:
        tally.lost += 1
        tally.notes.append(f"{kind}: connect failed: {exc}")
        return
    try:
        async with asyncio.timeout(DEADLINE):
            writer.write(raw)
            await writer.drain()
            if stall:
                await asyncio.sleep(stall)  # a client that stops reading for a while
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            if hang_up_after:
                await reader.read(hang_up_after)
                tally.answered += 1
                tally.statuses[status] += 1
                return  # we hang up ourselves: whatever follows is not ours to judge
            body = await reader.read()  # every request says Connection: close
            tally.answered += 1
            tally.statuses[status] += 1
            if b"\r\nHTTP/1." in body and b"HTTP/1.1 408 " not in body:
                tally.duplicated += 1
            if status >= 500 and (
                status == 500 or not any(word.encode() in body for word in EXPECTED_5XX)
            ):
                tally.self_5xx += 1
                tally.notes.append(f"{kind}: {status} {body[:200]!r}")
    except TimeoutError:
        tally.hung += 1
        tally.notes.append(f"{kind}: no answer within {DEADLINE}s")
    except (asyncio.IncompleteReadError, ConnectionError) as exc:
        if kind in ("slow-upload", "stalled-reader"):
            tally.answered += 1  # cut on purpose by a bound: the daemon closed it
        else:
            tally.lost += 1
            tally.notes.append(f"{kind}: {type(exc).__name__}: {exc}")
    finally:
        writer.close()


def post(path: str, body: bytes, content_type: str = "application/json") -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def chat(rng: random.Random, stream: bool, tokens: int) -> bytes:
    body = {"model": rng.choice(MODELS), "stream": stream, "max_tokens": tokens}
    return post("/v1/chat/completions", json.dumps(body).encode())


async def slow_upload(port: int, rng: random.Random, tally: Tally) -> None:
    """A JSON body trickled at ~100 bytes/s: the daemon must answer 408 and hang up."""
    body = json.dumps({"model": rng.choice(MODELS), "pad": "x" * 5000}).encode()
    head = post("/v1/chat/completions", body)[: -len(body)]
    tally.sent["slow-upload"] += 1
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        async with asyncio.timeout(DEADLINE):
            writer.write(head)
            for i in range(0, len(body), 10):
                if reader.at_eof() or writer.is_closing():
                    break
                writer.write(body[i : i + 10])
                await asyncio.sleep(0.1)
                if reader._buffer:  # type: ignore[attr-defined]  # an answer has arrived
                    break
            answer = await reader.read()
        status = int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/") else 0
        tally.answered += status != 0
        tally.lost += status == 0
        tally.statuses[status] += 1
    except TimeoutError:
        tally.hung += 1
    except ConnectionError:
        tally.answered += 1
    finally:
        writer.close()


async def traffic(port: int, rng: random.Random, tally: Tally, until: float) -> None:
    kinds = ["chat"] * 4 + ["stream"] * 4 + ["disconnect"] * 2 + ["stalled-reader", "slow-upload"]
    kinds += ["malformed", "bomb", "bad-json"]
    while time.monotonic() < until:
        kind = rng.choice(kinds)
        if kind == "chat":
            await exchange(port, chat(rng, False, rng.randint(1, 20)), tally, kind)
        elif kind == "stream":
            await exchange(port, chat(rng, True, rng.randint(1, 60)), tally, kind)
        elif kind == "disconnect":
            await exchange(port, chat(rng, True, 400), tally, kind, hang_up_after=200)
        elif kind == "stalled-reader":
            await exchange(port, chat(rng, True, 4000), tally, kind, stall=6)
        elif kind == "slow-upload":
            await slow_upload(port, rng, tally)
        elif kind == "malformed":
            await exchange(port, b"GET /\x00 HTTP/1.1\r\n\r\n", tally, kind)
        elif kind == "bomb":
            bomb = b'{"model": "alpha", "x": [' + b",".join([b"[]"] * 50_000) + b"]}"
            await exchange(port, post("/v1/chat/completions", bomb), tally, kind)
        else:
            await exchange(port, post("/v1/chat/completions", b'{"model": '), tally, kind)


def healthy(port: int) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
            return bool(r.status == 200)
    except OSError:
        return False


def running_pids(port: int) -> list[int]:
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/running", timeout=5) as r:
            return [int(m["pid"]) for m in json.load(r)["running"] if m.get("pid")]
    except OSError:
        return []


async def chaos(
    daemon: subprocess.Popen[bytes], port: int, rng: random.Random, until: float, tally: Tally
) -> None:
    """A SIGHUP reload every ~20 s and a SIGKILL of a random upstream every ~15 s."""
    loop = asyncio.get_running_loop()
    next_reload, next_kill = time.monotonic() + 20, time.monotonic() + 15
    while time.monotonic() < until:
        await asyncio.sleep(1)
        now = time.monotonic()
        if now >= next_reload:
            daemon.send_signal(signal.SIGHUP)
            tally.sent["reload"] += 1
            next_reload = now + rng.uniform(15, 25)
        if now >= next_kill:
            pids = await loop.run_in_executor(None, running_pids, port)
            if pids:
                os.kill(rng.choice(pids), signal.SIGKILL)
                tally.sent["upstream-kill"] += 1
            next_kill = now + rng.uniform(10, 20)


def sample(pid: int) -> tuple[int, int]:
    """(RSS in KiB, open descriptors) of ``pid``."""
    with open(f"/proc/{pid}/status") as f:
        rss = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    return rss, len(os.listdir(f"/proc/{pid}/fd"))


async def watch(pid: int, until: float, peaks: list[int]) -> None:
    while time.monotonic() < until:
        rss, fds = sample(pid)
        peaks[0], peaks[1] = max(peaks[0], rss), max(peaks[1], fds)
        await asyncio.sleep(1)


async def soak(args: argparse.Namespace) -> dict[str, object]:
    base = free_port_block(1 + len(MODELS))
    rng = random.Random(args.seed)
    tally = Tally()
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "config.yaml"
        config.write_text(config_text(base))
        log_path = Path(tmp) / "daemon.log"
        log_file = log_path.open("wb")  # a file, not a pipe: a full pipe would block its logging
        daemon = subprocess.Popen(
            serve_argv(config, base), stdout=subprocess.DEVNULL, stderr=log_file
        )
        try:
            for _ in range(300):  # until it answers /health
                if daemon.poll() is not None or await asyncio.get_running_loop().run_in_executor(
                    None, healthy, base
                ):
                    break
                await asyncio.sleep(0.1)
            started = time.monotonic()
            until = started + args.duration
            peaks = [0, 0]
            await asyncio.gather(
                watch(daemon.pid, until, peaks),
                chaos(daemon, base, rng, until, tally),
                *(
                    traffic(base, random.Random(rng.random()), tally, until)
                    for _ in range(args.clients)
                ),
            )
            prefix = f"{daemon.pid}-"
            stopping = time.monotonic()
            daemon.send_signal(signal.SIGTERM)
            try:
                code: int | None = daemon.wait(120)
            except subprocess.TimeoutExpired:
                code = None
                tally.notes.append("the daemon did not exit within 120 s of SIGTERM")
            stop_s = round(time.monotonic() - stopping, 1)
            deadline = time.monotonic() + 10
            while marked(prefix) and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            orphans = marked(prefix)
        finally:
            if daemon.poll() is None:
                daemon.kill()
                daemon.wait()
            log_file.close()
        stderr = log_path.read_text("utf-8", "replace")
    requests = sum(v for k, v in tally.sent.items() if k not in ("reload", "upstream-kill"))
    return {
        "duration_s": round(time.monotonic() - started, 1),
        "clients": args.clients,
        "requests_sent": requests,
        "by_kind": dict(sorted(tally.sent.items())),
        "answered_once": tally.answered,
        "lost": tally.lost,
        "duplicated": tally.duplicated,
        "hung": tally.hung,
        "daemon_5xx": tally.self_5xx,
        "orphans": len(orphans),
        "peak_rss_mib": round(peaks[0] / 1024, 1),
        "peak_fds": peaks[1],
        "statuses": {str(k): v for k, v in sorted(tally.statuses.items())},
        "exit_code": code,
        "seconds_to_exit_after_sigterm": stop_s,
        "log_lines": stderr.count("\n"),
        "tracebacks_in_stderr": stderr.count("Traceback"),
        "notes": tally.notes[:20],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=1800.0, help="seconds (default 30 min)")
    parser.add_argument("--clients", type=int, default=16, help="concurrent traffic loops")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()
    result = asyncio.run(soak(args))
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    clean = result["exit_code"] == 0 and not any(
        result[k] for k in ("lost", "duplicated", "hung", "daemon_5xx", "orphans")
    )
    return 0 if clean else 1


if __name__ == "__main__":
    sys.exit(main())
