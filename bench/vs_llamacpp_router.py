"""llamaswap vs llama.cpp's own router mode, both on the real ``llama-server`` binary (issue 20).

Systems, all serving SmolLM2-135M as two models with the same per-model arguments (``-np``, ``-c``,
``-t``, ``-tb`` from ``examples/config-llama-server.yaml``):

- ``llamaswap-serial``, ``llamaswap-fifo``, ``llamaswap-batch-aging``: ``llamaswap serve`` with the
  example config (scheduler and ports adjusted, concurrency limit raised so nothing is a 429, and
  the binary itself as each model's command, as the router starts it; ``--wrapper`` keeps the
  example's ``python -m llamaswap.llamaserver serve``);
- ``router-max1``: ``llama-server --models-preset <ini> --models-max 1``, the ini written from the
  same example (one section per model, its arguments as keys), so at most one model is loaded and
  the router evicts the least recently used one;
- with ``--coresident``: ``router-max2`` and ``llamaswap-fifo-both`` (both models in one group
  with ``swap: false``), where both models stay loaded.

Workloads (the same request sequence for every system, seeded):

- ``alternating``: one client, 16 short chats alternating between the models;
- ``bursts``: 4 bursts of 8 concurrent chats (4 per model, shuffled), the next one 0.5 s after the
  last answer of the previous;
- ``closed-loop``: 4 clients, each on one kept-open connection, 30 streamed chats each, the model
  drawn 50/50 per request;
- ``hot-rare``: 3 closed-loop clients keep ``smollm2`` busy with 48-token streams for 40 s while a
  ``smollm2-lite`` request arrives every 5 s (starvation shows up as its max wait).

Every request is a streamed chat; an answer counts as failed on a non-200, a transport error
(e.g. "Server disconnected"), or a stream without ``[DONE]``, and as wrong when its content is not
the expected one (greedy decoding). Per system and workload: failed, wrong, per-model p50/p99
latency and max wait (time to first token), loads (``llama-server`` child processes the system
started, from the process table), median load time (spawn to ``/health`` 200), and cold vs warm
time to first token. Then shutdown: a 300-token stream is cut by SIGTERM to the system after 20
tokens; recorded are whether the stream ended cleanly, how long the system took to exit, and
whether any ``llama-server`` was left behind.

Writes ``<out>/results.json`` and prints a markdown table. Not a timed test: run it by hand on a
box as quiet as you can get, at low priority::

    nice -n 10 .venv/bin/python bench/vs_llamacpp_router.py [--coresident] [--out DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import itertools
import json
import os
import random
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from llamaswap import llamaserver
from llamaswap.daemon.testing import env_with_venv_on_path, free_port_block, serve_argv
from llamaswap.realmodel import gguf_path

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "config-llama-server.yaml"
A, B = "smollm2", "smollm2-lite"
CAPITALS = {"France": "Paris", "Italy": "Rome", "Germany": "Berlin", "Japan": "Tokyo"}
COUNTING = "1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,"
TICK = 0.02


# ------------------------------------------------------------------------------------------ systems


def example() -> dict[str, Any]:
    return dict(yaml.safe_load(EXAMPLE.read_text(encoding="utf-8")))


def model_args(cmd: str) -> list[str]:
    """The example's llama-server arguments of one model, without what each system sets itself."""
    args = shlex.split(cmd)
    if not args or args[0] != "${llama-server}":
        raise SystemExit(f"{EXAMPLE}: a model's cmd must start with ${{llama-server}}: {cmd!r}")
    out: list[str] = []
    skip = {"--port", "--alias"}
    i = 1
    while i < len(args):
        if args[i] in skip:
            i += 2
            continue
        out.append(args[i])
        i += 1
    return out


def preset_ini(data: dict[str, Any], gguf: Path) -> str:
    """``--models-preset`` text: one section per model, each argument as a key (flags: true)."""
    lines = ["version = 1", ""]
    for model_id, model in data["models"].items():
        lines.append(f"[{model_id}]")
        lines.append(f"model = {gguf}")
        args = model_args(model["cmd"])
        i = 0
        while i < len(args):
            key = args[i].lstrip("-")
            if i + 1 < len(args) and not args[i + 1].startswith("-"):
                lines.append(f"{key} = {args[i + 1]}")
                i += 2
            else:
                lines.append(f"{key} = true")
                i += 1
        lines.append("")
    return "\n".join(lines)


@dataclasses.dataclass
class System:
    name: str
    kind: str  # "llamaswap" or "router"
    scheduler: str = "fifo"
    models_max: int = 1
    coresident: bool = False

    wrapper: bool = False

    def argv(self, port: int, scratch: Path) -> list[str]:
        data = example()
        if self.kind == "router":
            ini = scratch / f"{self.name}.ini"
            ini.write_text(preset_ini(data, gguf_path()), encoding="utf-8")
            return [
                str(llamaserver.binary_path()),
                "--models-preset", str(ini),
                "--models-max", str(self.models_max),
                "--host", "127.0.0.1",
                "--port", str(port),
            ]  # fmt: skip
        data["startPort"] = port + 1
        if not self.wrapper:
            # The binary itself as the cmd, as the router runs it: the example's `python -m
            # llamaswap.llamaserver serve` wrapper costs a Python start-up per load.
            direct = shlex.join([str(llamaserver.binary_path()), "-m", str(gguf_path())])
            data["macros"]["llama-server"] = f"{direct} --host 127.0.0.1"
        data.setdefault("routing", {}).setdefault("scheduler", {})["use"] = self.scheduler
        for model in data["models"].values():
            model["concurrencyLimit"] = 1000
        if self.coresident:
            data["routing"]["router"] = {
                "use": "group",
                "settings": {"groups": {"both": {"swap": False, "members": [A, B]}}},
            }
        config = scratch / f"{self.name}.yaml"
        config.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
        return serve_argv(config, port)


def systems(coresident: bool, wrapper: bool = False) -> list[System]:
    chosen = [
        System("llamaswap-serial", "llamaswap", "serial", wrapper=wrapper),
        System("llamaswap-fifo", "llamaswap", "fifo", wrapper=wrapper),
        System("llamaswap-batch-aging", "llamaswap", "batch-aging", wrapper=wrapper),
        System("router-max1", "router", models_max=1),
    ]
    if coresident:
        chosen += [
            System("llamaswap-fifo-both", "llamaswap", "fifo", coresident=True, wrapper=wrapper),
            System("router-max2", "router", models_max=2),
        ]
    return chosen


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (``/proc/PID/task/*/children``)."""
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{task}/children") as f:
                found += [int(p) for p in f.read().split()]
    return found


def cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return []


def is_llama_server(argv: Sequence[str]) -> bool:
    return bool(argv) and os.path.basename(argv[0]) == "llama-server"


def option(argv: Sequence[str], name: str) -> str | None:
    for flag, value in itertools.pairwise(argv):
        if flag == name:
            return value
    return None


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] not in (b"Z", b"X")
    except (OSError, IndexError):
        return False


@dataclasses.dataclass
class Load:
    pid: int
    model: str
    port: int | None
    spawned: float
    ready: float | None = None
    gone: float | None = None


class Watcher:
    """Every ``llama-server`` child the system starts: when it appeared, became healthy, went."""

    def __init__(self, root: int) -> None:
        self.root = root
        self.loads: dict[int, Load] = {}
        self.most_at_once = 0

    async def run(self, session: aiohttp.ClientSession) -> None:
        while True:
            now = time.monotonic()
            live = {pid for pid in children(self.root) if alive(pid)}
            for pid in live - set(self.loads):
                argv = cmdline(pid)
                if is_llama_server(argv):
                    port = option(argv, "--port")
                    model = option(argv, "--alias") or "?"
                    self.loads[pid] = Load(pid, model, int(port) if port else None, now)
            running = 0
            for load in self.loads.values():
                if load.gone is None and load.pid not in live:
                    load.gone = now
                if load.gone is None:
                    running += 1
                if load.gone is None and load.ready is None and load.port:
                    with contextlib.suppress(aiohttp.ClientError, TimeoutError, OSError):
                        url = f"http://127.0.0.1:{load.port}/health"
                        async with session.get(url, timeout=aiohttp.ClientTimeout(0.5)) as r:
                            if r.status == 200:
                                load.ready = time.monotonic()
            self.most_at_once = max(self.most_at_once, running)
            await asyncio.sleep(TICK)


async def wait_healthy(base: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise SystemExit(f"system exited with {proc.returncode} before it was healthy")
            with contextlib.suppress(aiohttp.ClientError, OSError):
                async with session.get(base + "/health") as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.05)
    raise SystemExit(f"{base} not healthy within {timeout} s")


def stop(proc: subprocess.Popen[bytes], timeout: float = 30.0) -> float | None:
    """SIGTERM, wait; seconds to exit, or None (then it was SIGKILLed)."""
    started = time.monotonic()
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
            return None
    return time.monotonic() - started


def kill_leftovers(pids: Sequence[int]) -> list[int]:
    """llama-server processes that outlived their system: killed by PID, and returned."""
    left = [p for p in pids if alive(p) and is_llama_server(cmdline(p))]
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return left


# ------------------------------------------------------------------------------------------ clients


@dataclasses.dataclass
class Ask:
    model: str
    kind: str  # "capital" or "count"
    country: str = "France"
    tokens: int = 12

    def body(self) -> dict[str, Any]:
        if self.kind == "capital":
            text = f"What is the capital of {self.country}? Answer in one word."
        else:
            text = f"Continue the sequence: {COUNTING}"
        return {
            "model": self.model,
            "messages": [{"role": "user", "content": text}],
            "max_tokens": self.tokens,
            "temperature": 0,
            "stream": True,
        }

    def right(self, content: str, finish: str | None) -> bool:
        if self.kind == "capital":
            return CAPITALS[self.country] in content
        return finish == "length"


@dataclasses.dataclass
class Result:
    model: str
    sent: float
    ttft: float | None = None
    latency: float | None = None
    error: str | None = None
    right: bool = False


async def ask(session: aiohttp.ClientSession, base: str, item: Ask) -> Result:
    sent = time.monotonic()
    result = Result(item.model, sent)
    content: list[str] = []
    finish: str | None = None
    done = False
    try:
        async with session.post(base + "/v1/chat/completions", json=item.body()) as response:
            if response.status != 200:
                result.error = f"HTTP {response.status}: {(await response.text())[:120]}"
                return result
            async for raw in response.content:
                line = raw.decode(errors="replace").strip()
                if not line.startswith("data: "):
                    continue
                data = line[6:]
                if data == "[DONE]":
                    done = True
                    break
                chunk = json.loads(data)
                if "error" in chunk:
                    result.error = f"stream error: {str(chunk['error'])[:120]}"
                    return result
                for choice in chunk.get("choices") or ():
                    text = (choice.get("delta") or {}).get("content")
                    if text:
                        if result.ttft is None:
                            result.ttft = time.monotonic() - sent
                        content.append(text)
                    finish = choice.get("finish_reason") or finish
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        result.error = f"{type(exc).__name__}: {exc}"[:160]
        return result
    result.latency = time.monotonic() - sent
    if not done:
        result.error = "stream ended without [DONE]"
    result.right = item.right("".join(content), finish)
    return result


def session(timeout: float = 300.0) -> aiohttp.ClientSession:
    """One client: one kept-open connection, reused for each of its requests."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=1),
        timeout=aiohttp.ClientTimeout(total=timeout),
    )


async def alternating(base: str, rng: random.Random) -> list[Result]:
    countries = list(CAPITALS)
    async with session() as s:
        return [
            await ask(s, base, Ask((A, B)[i % 2], "capital", countries[i % len(countries)]))
            for i in range(16)
        ]


async def bursts(base: str, rng: random.Random) -> list[Result]:
    results: list[Result] = []
    countries = list(CAPITALS)
    for _ in range(4):
        models = [A] * 4 + [B] * 4
        rng.shuffle(models)

        async def one(model: str, i: int) -> Result:
            async with session() as s:
                return await ask(s, base, Ask(model, "capital", countries[i % len(countries)]))

        results += await asyncio.gather(*(one(m, i) for i, m in enumerate(models)))
        await asyncio.sleep(0.5)
    return results


async def closed_loop(base: str, rng: random.Random) -> list[Result]:
    plans = [
        [(rng.choice((A, B)), rng.choice(list(CAPITALS))) for _ in range(30)] for _ in range(4)
    ]

    async def client(plan: list[tuple[str, str]]) -> list[Result]:
        async with session() as s:
            return [await ask(s, base, Ask(model, "capital", country)) for model, country in plan]

    return [r for rs in await asyncio.gather(*(client(p) for p in plans)) for r in rs]


async def hot_rare(base: str, rng: random.Random, span: float = 40.0) -> list[Result]:
    end = time.monotonic() + span

    async def hot() -> list[Result]:
        out = []
        async with session() as s:
            while time.monotonic() < end:
                out.append(await ask(s, base, Ask(A, "count", tokens=48)))
        return out

    async def rare() -> list[Result]:
        pending = []
        async with session() as s:
            for i in range(int(span // 5)):
                await asyncio.sleep(5.0 if i else 2.5)
                country = list(CAPITALS)[i % len(CAPITALS)]
                pending.append(asyncio.ensure_future(ask(s, base, Ask(B, "capital", country))))
            return list(await asyncio.gather(*pending))

    groups = await asyncio.gather(hot(), hot(), hot(), rare())
    return [r for g in groups for r in g]


WORKLOADS: dict[str, Callable[[str, random.Random], Awaitable[list[Result]]]] = {
    "alternating": alternating,
    "bursts": bursts,
    "closed-loop": closed_loop,
    "hot-rare": hot_rare,
}


# ------------------------------------------------------------------------------------------ running


def percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def r3(x: float | None) -> float | None:
    return None if x is None else round(x, 3)


def summarize(results: Sequence[Result], watcher: Watcher) -> dict[str, Any]:
    loads = sorted(watcher.loads.values(), key=lambda load: load.spawned)
    load_times = [x.ready - x.spawned for x in loads if x.ready is not None]
    cold: list[float] = []
    warm: list[float] = []
    for r in results:
        if r.ttft is None:
            continue
        fresh = any(x.spawned >= r.sent - 0.05 and x.spawned <= r.sent + r.ttft for x in loads)
        (cold if fresh else warm).append(r.ttft)
    per_model = {}
    for model in (A, B):
        mine = [r for r in results if r.model == model]
        lat = [r.latency for r in mine if r.latency is not None and r.error is None]
        waits = [r.ttft for r in mine if r.ttft is not None]
        per_model[model] = {
            "requests": len(mine),
            "p50": r3(percentile(lat, 0.5)),
            "p99": r3(percentile(lat, 0.99)),
            "max_wait": r3(max(waits) if waits else None),
        }
    errors = [r.error for r in results if r.error]
    return {
        "requests": len(results),
        "failed": len(errors),
        "errors": sorted(set(errors))[:5],
        "wrong": sum(1 for r in results if r.error is None and not r.right),
        "per_model": per_model,
        "loads": len(loads),
        "most_resident": watcher.most_at_once,
        "load_time_median": r3(statistics.median(load_times) if load_times else None),
        "cold_ttft_median": r3(statistics.median(cold) if cold else None),
        "warm_ttft_median": r3(statistics.median(warm) if warm else None),
    }


async def run_one(system: System, workload: str, seed: int, scratch: Path) -> dict[str, Any]:
    port = free_port_block(4)
    log = (scratch / f"{system.name}-{workload}.log").open("wb")
    proc = subprocess.Popen(
        system.argv(port, scratch),
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env_with_venv_on_path(),
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    watcher = Watcher(proc.pid)
    try:
        await wait_healthy(base, proc)
        async with aiohttp.ClientSession() as probe:
            watching = asyncio.create_task(watcher.run(probe))
            started = time.monotonic()
            results = await WORKLOADS[workload](base, random.Random(seed))
            wall = time.monotonic() - started
            watching.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watching
    finally:
        stop(proc)
        log.close()
        left = kill_leftovers(list(watcher.loads))
    row = summarize(results, watcher)
    row["wall_s"] = round(wall, 1)
    row["left_behind"] = left
    return row


async def shutdown_check(system: System, scratch: Path) -> dict[str, Any]:
    """A long stream in flight when the system gets SIGTERM."""
    port = free_port_block(4)
    log = (scratch / f"{system.name}-shutdown.log").open("wb")
    proc = subprocess.Popen(
        system.argv(port, scratch),
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env_with_venv_on_path(),
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    outcome: dict[str, Any] = {}
    try:
        await wait_healthy(base, proc)
        item = Ask(A, "count", tokens=300)
        async with session() as s:
            tokens = 0
            finish = None
            done = False
            try:
                async with s.post(base + "/v1/chat/completions", json=item.body()) as response:
                    async for raw in response.content:
                        line = raw.decode(errors="replace").strip()
                        if line == "data: [DONE]":
                            done = True
                            break
                        if line.startswith("data: "):
                            chunk = json.loads(line[6:])
                            for choice in chunk.get("choices") or ():
                                if (choice.get("delta") or {}).get("content"):
                                    tokens += 1
                                finish = choice.get("finish_reason") or finish
                        if tokens == 20 and "signalled" not in outcome:
                            children_now = [p for p in children(proc.pid) if alive(p)]
                            outcome["signalled"] = time.monotonic()
                            outcome["children"] = children_now
                            proc.send_signal(signal.SIGTERM)
            except (aiohttp.ClientError, TimeoutError) as exc:
                outcome["client_error"] = f"{type(exc).__name__}: {exc}"[:160]
            outcome["tokens"] = tokens
            outcome["stream"] = (
                "completed" if done and finish == "length" else f"cut after {tokens} tokens"
            )
        try:
            proc.wait(30)
            outcome["exit_s"] = round(time.monotonic() - outcome.get("signalled", 0), 3)
            outcome["exit_code"] = proc.returncode
        except subprocess.TimeoutExpired:
            outcome["exit_s"] = None
    finally:
        stop(proc)
        log.close()
    await asyncio.sleep(5)
    outcome["left_behind"] = kill_leftovers(outcome.get("children", []))
    outcome.pop("signalled", None)
    outcome.pop("children", None)
    return outcome


def table(results: dict[str, Any]) -> str:
    head = (
        "| workload | system | failed / requests | wrong | loads | load time | cold / warm TTFT "
        f"| {A} p50 / p99 / max wait | {B} p50 / p99 / max wait |"
    )
    lines = [head, "|" + "---|" * 9]

    def s(x: float | None) -> str:
        return "-" if x is None else f"{x:.2f}"

    for workload in WORKLOADS:
        for name, rows in results["systems"].items():
            row = rows.get(workload)
            if row is None:
                continue
            m = row["per_model"]
            cells = [
                workload,
                name,
                f"{row['failed']} / {row['requests']}",
                str(row["wrong"]),
                str(row["loads"]),
                s(row["load_time_median"]),
                f"{s(row['cold_ttft_median'])} / {s(row['warm_ttft_median'])}",
                *(f"{s(m[x]['p50'])} / {s(m[x]['p99'])} / {s(m[x]['max_wait'])}" for x in (A, B)),
            ]
            lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "| system | stream on SIGTERM | exit | llama-server left behind |",
        "|---|---|---|---|",
    ]
    for name, rows in results["systems"].items():
        shut = rows.get("shutdown", {})
        exit_s = shut.get("exit_s")
        lines.append(
            f"| {name} | {shut.get('stream')} | "
            f"{'-' if exit_s is None else f'{exit_s:.2f} s'} (code {shut.get('exit_code')}) | "
            f"{len(shut.get('left_behind', []))} |"
        )
    return "\n".join(lines)


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "binary": str(llamaserver.binary_path()),
        "cpus": os.cpu_count(),
        "seed": args.seed,
        "wrapper": args.wrapper,
        "systems": {},
    }
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="vs-router-") as tmp:
        scratch = Path(tmp)
        for system in systems(args.coresident, args.wrapper):
            if args.system and system.name not in args.system:
                continue
            rows: dict[str, Any] = {}
            for workload in args.workload or list(WORKLOADS):
                print(f"[{system.name}] {workload} ...", flush=True)
                rows[workload] = await run_one(system, workload, args.seed, scratch)
                print(f"  {json.dumps(rows[workload])}", flush=True)
            rows["shutdown"] = await shutdown_check(system, scratch)
            print(f"  shutdown {json.dumps(rows['shutdown'])}", flush=True)
            results["systems"][system.name] = rows
    results["load_average"] = {"before": round(load_before, 2), "after": os.getloadavg()[0]}
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "reports" / "vs-llamacpp-router")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--coresident", action="store_true", help="also router-max2 and fifo-both")
    parser.add_argument("--system", action="append", help="only these systems (repeatable)")
    parser.add_argument(
        "--wrapper",
        action="store_true",
        help="llamaswap starts each model through the example's python wrapper, not the binary",
    )
    parser.add_argument(
        "--workload", action="append", choices=sorted(WORKLOADS), help="only these workloads"
    )
    args = parser.parse_args(argv)
    try:
        llamaserver.binary_path()
        gguf_path()
    except (llamaserver.LlamaServerError, RuntimeError) as exc:
        print(f"vs_llamacpp_router: {exc}", file=sys.stderr)
        return 2
    results = asyncio.run(main_async(args))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=1))
    text = table(results)
    (args.out / "table.md").write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
