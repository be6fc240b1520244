"""``llamaswap serve`` as a real process: SIGTERM drains and stops every child, SIGKILL leaves no
orphan (checked in the process table by PID), SIGHUP reloads and a bad config keeps the old one."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from waiting import WaitTimeoutError, wait_until_sync

from llamaswap.daemon.testing import fake_cmd, free_port_block, pid_alive, serve_argv

pytestmark = pytest.mark.daemon


def _write_config(path: Path, models: dict[str, str], start_port: int) -> None:
    lines = [f"startPort: {start_port}", "healthCheckTimeout: 15", "models:"]
    for name, cmd in models.items():
        lines += [f"  {name}:", f"    cmd: {cmd}", "    proxy: http://127.0.0.1:${PORT}"]
    path.write_text("\n".join(lines) + "\n")


def _get(url: str, timeout: float = 10) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _post(url: str, body: dict[str, object], timeout: float = 20) -> tuple[int, str]:
    req = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


class Served:
    def __init__(self, proc: subprocess.Popen[bytes], port: int, config: Path) -> None:
        self.proc = proc
        self.base = f"http://127.0.0.1:{port}"
        self.config = config

    def metrics(self) -> str:
        status, text = _get(self.base + "/metrics")
        assert status == 200
        return text

    def running(self) -> list[dict[str, object]]:
        status, text = _get(self.base + "/running")
        assert status == 200
        running: list[dict[str, object]] = json.loads(text)["running"]
        return running

    def children(self) -> list[int]:
        """PIDs whose parent is the daemon (upstreams and the watchdog)."""
        pids = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    with open(f"/proc/{entry}/stat") as f:
                        fields = f.read().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                if int(fields[1]) == self.proc.pid and fields[0] not in ("Z", "X"):
                    pids.append(int(entry))
        return pids


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    base = free_port_block(3)
    config = tmp_path / "config.yaml"
    _write_config(config, {"one": fake_cmd(decode_tps=50), "two": fake_cmd()}, base + 1)
    proc = subprocess.Popen(
        serve_argv(config, base, "--drain-timeout", "10"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    server = Served(proc, base, config)
    try:
        wait_until_sync(
            lambda: _get(server.base + "/health", timeout=1)[0] == 200,
            15,
            what="the daemon to answer /health",
            ignore=(urllib.error.URLError, ConnectionError),
        )
    except WaitTimeoutError as exc:
        proc.kill()
        output = proc.stdout.read().decode() if proc.stdout else ""
        pytest.fail(f"{exc}; daemon output: {output}")
    yield server
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def _wait_gone(pids: list[int], what: str, timeout: float = 5.0) -> None:
    def alive() -> list[int]:
        return [p for p in pids if pid_alive(p)]

    wait_until_sync(lambda: not alive(), timeout, what=what, seen=alive)


def _reloads(served: Served, result: str) -> bool:
    return f'llamaswap_config_reloads_total{{result="{result}"}} 1.0' in served.metrics()


def test_sigterm_drains_in_flight_then_stops_every_child(served: Served) -> None:
    assert _post(served.base + "/v1/completions", {"model": "one", "max_tokens": 1})[0] == 200
    children = served.children()
    assert len(children) == 2  # the upstream and the watchdog
    upstream_pid = int(str(served.running()[0]["pid"]))
    assert upstream_pid in children

    # A request in flight (50 tokens at 50/s = 1 s) when SIGTERM arrives is allowed to finish.
    import threading

    result: list[tuple[int, str]] = []
    worker = threading.Thread(
        target=lambda: result.append(
            _post(served.base + "/v1/completions", {"model": "one", "max_tokens": 50})
        )
    )
    worker.start()
    wait_until_sync(
        lambda: 'llamaswap_in_flight_requests{model="one"} 1.0' in served.metrics(),
        what="the long request to be in flight",
    )
    served.proc.send_signal(signal.SIGTERM)
    worker.join(15)
    assert result and result[0][0] == 200
    assert json.loads(result[0][1])["usage"]["completion_tokens"] == 50
    assert served.proc.wait(15) == 0
    _wait_gone(children, "every child of the stopped daemon to exit")
    output = served.proc.stdout.read().decode() if served.proc.stdout else ""
    assert "shutdown complete" in output


def test_sigkill_leaves_no_orphans(served: Served) -> None:
    assert _post(served.base + "/v1/completions", {"model": "two", "max_tokens": 1})[0] == 200
    children = served.children()
    assert len(children) == 2
    served.proc.kill()
    served.proc.wait(5)
    _wait_gone(children, "the upstreams of a SIGKILLed daemon to die (no orphans)")


def test_sighup_reloads_and_a_bad_config_keeps_the_old_one(served: Served) -> None:
    assert _post(served.base + "/v1/completions", {"model": "one", "max_tokens": 1})[0] == 200
    old_pid = int(str(served.running()[0]["pid"]))
    start_port = int(served.config.read_text().split("startPort: ")[1].split()[0])
    _write_config(served.config, {"one": fake_cmd(), "three": fake_cmd()}, start_port)
    assert _reloads(served, "ok") is False
    served.proc.send_signal(signal.SIGHUP)
    wait_until_sync(lambda: _reloads(served, "ok"), what="the SIGHUP reload to complete")
    ids = [m["id"] for m in json.loads(_get(served.base + "/v1/models")[1])["data"]]
    assert ids == ["one", "three"]
    _wait_gone([old_pid], "the old config's model to stop")  # every old model stops on reload
    assert _post(served.base + "/v1/completions", {"model": "three", "max_tokens": 1})[0] == 200

    served.config.write_text("models: [this is: not valid\n")
    assert _reloads(served, "refused") is False
    served.proc.send_signal(signal.SIGHUP)
    # Observe that this reload ran and was refused (a sleep would pass even if it never ran).
    wait_until_sync(lambda: _reloads(served, "refused"), what="the bad reload to be refused")
    assert _reloads(served, "ok")  # still the one good reload
    ids = [m["id"] for m in json.loads(_get(served.base + "/v1/models")[1])["data"]]
    assert ids == ["one", "three"]
    assert _post(served.base + "/v1/completions", {"model": "three", "max_tokens": 1})[0] == 200
    _, logs = _get(served.base + "/logs")
    assert "config reload failed, keeping the running config" in logs
    served.proc.send_signal(signal.SIGTERM)
    assert served.proc.wait(15) == 0


def test_serve_cli_errors_are_clear(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("models:\n  x:\n    proxy: http://127.0.0.1:1\n")
    out = subprocess.run(
        [sys.executable, "-m", "llamaswap", "serve", "--config", str(bad)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 1
    assert "invalid config" in out.stderr and "cmd" in out.stderr
    out = subprocess.run(
        [sys.executable, "-m", "llamaswap", "serve"], capture_output=True, text=True, timeout=30
    )
    assert out.returncode == 1 and "--config" in out.stderr
    out = subprocess.run(
        [sys.executable, "-m", "llamaswap", "serve", "--version"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0 and out.stdout.startswith("llamaswap ")


def test_exit_reason_quotes_the_last_line_of_output() -> None:
    from llamaswap.daemon.processes import LAST_LINE_CHARS, _last_line

    assert _last_line(b"loading\nERROR: [Errno 98] address already in use\n\n") == (
        "ERROR: [Errno 98] address already in use"
    )
    assert _last_line(b"progress 10%\rprogress 90%\r") == "progress 90%"
    assert _last_line(b"  \n\n") == ""
    long = _last_line(b"x" * 1000)
    assert len(long) == LAST_LINE_CHARS and long.endswith("...")


async def test_output_reaches_the_logs_in_whole_lines() -> None:
    """Two processes share the combined upstream log: a line cut at a pipe read boundary was
    spliced with the other process's line (issue 21). The pump now writes whole lines only."""
    import types

    from llamaswap.daemon.logs import LogMonitor
    from llamaswap.daemon.processes import UpstreamProcesses, _Child

    combined = LogMonitor("upstream")
    a, b = LogMonitor("a", (combined,)), LogMonitor("b", (combined,))
    ra, rb = asyncio.StreamReader(), asyncio.StreamReader()
    pumps = [
        asyncio.create_task(
            UpstreamProcesses._pump(types.SimpleNamespace(stdout=r), m, _Child("m", 1))  # type: ignore[arg-type]
        )
        for r, m in ((ra, a), (rb, b))
    ]
    ra.feed_data(b"alpha one\nalpha t")
    await asyncio.sleep(0)  # a yield (no waiting): let a's pump read this chunk first
    rb.feed_data(b"beta one\n")
    await asyncio.sleep(0)
    ra.feed_data(b"wo\nalpha three")
    ra.feed_eof()
    rb.feed_eof()
    await asyncio.gather(*pumps)
    assert combined.history().decode().splitlines() == [
        "alpha one",
        "beta one",
        "alpha two",
        "alpha three",
    ]
