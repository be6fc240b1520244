"""Drive the REAL daemon (a subprocess) with real fake-upstream processes, recording its event log.

The daemon config is the scenario's routing config with each model's ``cmd`` set to
``llamaswap fake-upstream`` parameterised from the model's timing profile, on free 127.0.0.1 ports.
Requests are sent at their trace arrival times (client-side schedule on the monotonic clock) with
``X-Request-Id`` = the trace id, a prompt of exactly ``prompt_tokens`` fake tokens (the fake upstream
counts 4 characters per token) and ``max_tokens`` = ``output_tokens``. Concurrency is bounded by
the connection pool and the whole run by ``deadline`` seconds, after which stragglers are cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import signal
import sys
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from llamaswap.daemon.testing import free_port_block, serve_argv
from llamaswap.timing import TimingProfile
from sim.trace import Trace

REQUEST_ID_HEADER = "X-Request-Id"


class LiveRunError(RuntimeError):
    """The real run could not be set up or did not finish (the message says which step)."""


@dataclass
class LiveResult:
    log: Path
    sent: int
    answered: int
    statuses: dict[str, int] = field(default_factory=dict)
    timed_out: int = 0
    lateness_p99_ms: float = 0.0
    """How late the client sent requests versus their schedule (p99, ms)."""
    wall_seconds: float = 0.0


def fake_upstream_cmd(profile: TimingProfile, where: str) -> str:
    """The fake upstream command line for one model's timing profile."""
    if profile.load_time.kind != "constant":
        raise LiveRunError(
            f"{where}.load_time: the fake upstream takes one load time; use a constant "
            f"(got a {profile.load_time.kind} distribution)"
        )
    if profile.load_failure_prob or profile.crash_rate:
        raise LiveRunError(
            f"{where}: fault knobs are not reproduced by the live run; set them to 0"
        )
    return (
        f"{sys.executable} -m llamaswap fake-upstream --quiet --port ${{PORT}} "
        f"--model ${{MODEL_ID}} --load-time {profile.load_time.value:g} "
        f"--prefill-tps {profile.prefill_tps:g} --decode-tps {profile.decode_tps:g} "
        f"--ttft-overhead {profile.ttft_overhead:g} --parallel {profile.parallel} "
        f"--default-output-tokens {profile.default_output_tokens}"
    )


def daemon_config(
    raw_config: Mapping[str, Any], profiles: Mapping[str, TimingProfile], scheduler: str
) -> dict[str, Any]:
    """The scenario's routing config, made runnable: fake upstream per model, chosen scheduler."""
    config = json.loads(json.dumps(raw_config))  # deep copy, plain types
    models = config.get("models") or {}
    config["startPort"] = free_port_block(len(models))
    config["logLevel"] = "warn"
    routing = config.setdefault("routing", {})
    sched = routing.setdefault("scheduler", {})
    sched["use"] = scheduler
    for model_id, model in models.items():
        model = model if isinstance(model, dict) else {}
        models[model_id] = model
        model["cmd"] = fake_upstream_cmd(profiles[model_id], f"timing.{model_id}")
        model["proxy"] = "http://127.0.0.1:${PORT}"
        model.setdefault("checkEndpoint", "/health")
    return config


def request_body(model: str, prompt_tokens: int, output_tokens: int, stream: bool) -> bytes:
    return json.dumps(
        {
            "model": model,
            "messages": [{"role": "user", "content": "x" * (4 * max(1, prompt_tokens))}],
            "max_tokens": output_tokens,
            "stream": stream,
        }
    ).encode()


async def _wait_healthy(url: str, proc: asyncio.subprocess.Process, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if proc.returncode is not None:
                raise LiveRunError(f"the daemon exited with {proc.returncode} before listening")
            with contextlib.suppress(aiohttp.ClientError, OSError):
                async with session.get(url + "/health") as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.05)
    raise LiveRunError(f"the daemon did not answer {url}/health within {timeout:g}s")


@contextlib.asynccontextmanager
async def live_daemon(
    raw_config: Mapping[str, Any],
    profiles: Mapping[str, TimingProfile],
    scheduler: str,
    out: Path,
) -> AsyncIterator[tuple[str, Path]]:
    """:func:`recording_daemon` on the scenario's config with fake upstreams (see
    :func:`daemon_config`): yields (url, log path)."""
    async with recording_daemon(daemon_config(raw_config, profiles, scheduler), out) as running:
        yield running


@contextlib.asynccontextmanager
async def recording_daemon(
    config: Mapping[str, Any], out: Path, env: Mapping[str, str] | None = None
) -> AsyncIterator[tuple[str, Path]]:
    """A real ``llamaswap serve --record`` subprocess on a free port running ``config`` (written
    to ``out/daemon.yaml``): yields (url, log path ``out/real.jsonl``).

    On exit the daemon gets SIGTERM (drain, stop every upstream) and must exit 0.
    """
    out.mkdir(parents=True, exist_ok=True)
    config_path = out / "daemon.yaml"
    config_path.write_text(yaml.safe_dump(dict(config), sort_keys=False))  # macros: in order
    log_path = out / "real.jsonl"
    for old in [log_path, *out.glob("real.jsonl.*")]:
        old.unlink(missing_ok=True)
    port = free_port_block(1, start=28000, stop=32000)
    url = f"http://127.0.0.1:{port}"
    stderr = (out / "daemon.log").open("wb")
    proc = await asyncio.create_subprocess_exec(
        *serve_argv(config_path, port, "--record", str(log_path), "--drain-timeout", "5"),
        stdout=stderr,
        stderr=stderr,
        start_new_session=True,
        env=None if env is None else dict(env),
    )
    try:
        await _wait_healthy(url, proc, 30.0)
        yield url, log_path
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 60.0)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        stderr.close()
    if proc.returncode not in (0, None):
        raise LiveRunError(f"the daemon exited with {proc.returncode}; see {out / 'daemon.log'}")


async def run_live(
    raw_config: Mapping[str, Any],
    profiles: Mapping[str, TimingProfile],
    trace: Trace,
    ids: list[str],
    scheduler: str,
    out: Path,
    *,
    max_connections: int = 256,
    deadline: float = 600.0,
    stream: bool = False,
) -> LiveResult:
    """Run ``trace`` against a real daemon under ``scheduler``; the event log lands in ``out``."""
    async with live_daemon(raw_config, profiles, scheduler, out) as (url, log_path):
        result = LiveResult(log_path, 0, 0)
        await _send_all(url, trace, ids, profiles, result, max_connections, deadline, stream)
    return result


@dataclass(frozen=True)
class Outgoing:
    """One request of an open-loop run: when (seconds after the start), where, what."""

    at: float
    path: str
    body: bytes
    headers: Mapping[str, str]


@dataclass
class Answer:
    status: str
    """The HTTP status, or the client error's type name."""
    late: float
    """Seconds the request left after its scheduled time (a busy client box)."""
    latency: float
    """Seconds from sending to the whole response read."""
    body: bytes = b""
    """The response body (when ``keep_bodies``)."""


async def open_loop(
    url: str,
    outgoing: Sequence[Outgoing],
    *,
    max_connections: int = 256,
    deadline: float = math.inf,
    timeout: float | None = None,
    keep_bodies: bool = False,
) -> tuple[list[Answer | None], int]:
    """Send every request at its time, whatever happened to the others (an open loop).

    Sending stops once ``deadline`` seconds have passed; whatever is unanswered by then is
    cancelled. Returns the answers in ``outgoing`` order (None: not sent or cancelled) and how
    many were cancelled. ``max_connections`` 0 means no bound; ``timeout`` is per request.
    """
    answers: list[Answer | None] = [None] * len(outgoing)
    connector = aiohttp.TCPConnector(limit=max_connections, force_close=False)
    client_timeout = aiohttp.ClientTimeout(total=timeout)
    async with aiohttp.ClientSession(connector=connector, timeout=client_timeout) as session:
        loop = asyncio.get_running_loop()
        t0 = loop.time() + 0.2

        async def one(i: int, item: Outgoing) -> None:
            sent = loop.time()
            body = b""
            try:
                async with session.post(
                    url + item.path, data=item.body, headers=dict(item.headers)
                ) as response:
                    body = await response.read()
                    status = str(response.status)
            except (aiohttp.ClientError, TimeoutError) as exc:
                status = type(exc).__name__
            answers[i] = Answer(
                status, sent - t0 - item.at, loop.time() - sent, body if keep_bodies else b""
            )

        tasks: list[asyncio.Task[None]] = []
        for i, item in enumerate(outgoing):
            delay = t0 + item.at - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(loop.create_task(one(i, item)))
            if loop.time() - t0 > deadline:
                break
        remaining = max(1.0, deadline - (loop.time() - t0))
        pending: set[asyncio.Task[None]] = set()
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=remaining)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)
    return answers, len(pending)


async def _send_all(
    url: str,
    trace: Trace,
    ids: list[str],
    profiles: Mapping[str, TimingProfile],
    result: LiveResult,
    max_connections: int,
    deadline: float,
    stream: bool,
) -> None:
    names = [trace.models[k] for k in trace.model.tolist()]
    prompts = trace.prompt_tokens.tolist()
    outputs = trace.output_tokens.tolist()
    outgoing = []
    for i, at in enumerate(trace.arrival.tolist()):
        profile = profiles[names[i]]
        prompt = prompts[i] if prompts[i] >= 0 else profile.default_prompt_tokens
        output = outputs[i] if outputs[i] >= 0 else profile.default_output_tokens
        headers = {REQUEST_ID_HEADER: ids[i], "Content-Type": "application/json"}
        body = request_body(names[i], prompt, output, stream)
        outgoing.append(Outgoing(at, "/v1/chat/completions", body, headers))
    wall = time.monotonic()
    answers, result.timed_out = await open_loop(
        url, outgoing, max_connections=max_connections, deadline=deadline
    )
    result.wall_seconds = time.monotonic() - wall
    done = [a for a in answers if a is not None]
    result.sent = len(done) + result.timed_out
    result.answered = len(done)
    for answer in done:
        result.statuses[answer.status] = result.statuses.get(answer.status, 0) + 1
    lateness = sorted(a.late for a in done)
    if lateness:
        result.lateness_p99_ms = 1000 * lateness[min(len(lateness) - 1, int(0.99 * len(lateness)))]
