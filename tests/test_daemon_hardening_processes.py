"""Issue 19: trust nothing the daemon did not start.

A stranger on a model's port is a real fake upstream started by the test; the environment and
headers an upstream got are read from the real process (``/proc/<pid>/environ``) and from what
the fake upstream saw; a ``setsid`` grandchild is a real one, and the daemon that must not leave it
behind is a real ``llamaswap serve`` killed with SIGKILL.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from llamaswap.daemon.proctree import port_owner
from llamaswap.daemon.testing import (
    fake_cmd,
    free_port_block,
    make_config,
    pid_alive,
    running_daemon,
    serve_argv,
)

pytestmark = pytest.mark.daemon

CHAT = "/v1/chat/completions"
BOUND = 30.0


def _fake_argv(port: int, model: str = "stranger") -> list[str]:
    return [
        sys.executable,
        "-m",
        "llamaswap.daemon.fake_upstream",
        "--quiet",
        "--port",
        str(port),
        "--model",
        model,
        "--load-time",
        "0",
    ]


@pytest.fixture
def stranger() -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    """A healthy llama-server look-alike the daemon did not start, on a free port."""
    port = free_port_block(1)
    proc = subprocess.Popen(_fake_argv(port), stdout=subprocess.DEVNULL)
    try:
        yield port, proc
    finally:
        proc.kill()
        proc.wait()


async def _healthy(port: int) -> None:
    async with aiohttp.ClientSession() as http:
        while True:
            try:
                async with http.get(f"http://127.0.0.1:{port}/health") as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)


async def _last_request(port: int) -> dict[str, object]:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://127.0.0.1:{port}/debug/last-request") as r,
    ):
        seen: dict[str, object] = await r.json()
        return seen


async def test_a_process_already_on_the_port_is_not_taken_for_the_model(
    stranger: tuple[int, subprocess.Popen[bytes]],
) -> None:
    port, proc = stranger
    await asyncio.wait_for(_healthy(port), BOUND)
    # The daemon allocates the port (${PORT}): whatever is there already is a stranger.
    config = make_config({"m": {"cmd": fake_cmd()}}, startPort=port)
    async with running_daemon(config) as daemon, aiohttp.ClientSession() as http:
        base = f"http://127.0.0.1:{daemon.port}"
        headers = {"Authorization": "Bearer client-secret"}
        async with http.post(base + CHAT, json={"model": "m"}, headers=headers) as r:
            status, payload = r.status, await r.json()
    assert status == 502
    message = payload["error"]["message"]
    assert f"port {port} is already in use by another process (pid {proc.pid}" in message
    assert await _last_request(port) == {}  # the stranger never saw the request


async def test_a_stranger_that_binds_the_port_after_the_check_is_not_trusted(
    stranger: tuple[int, subprocess.Popen[bytes]],
) -> None:
    port, proc = stranger
    proc.kill()  # only its free port is used: a new stranger starts before the model ...
    proc.wait()
    argv = _fake_argv(port)
    late = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import runpy, sys, time; time.sleep(3); "  # ... but binds only after the check
            f"sys.argv = {argv[2:]!r}; "
            "runpy.run_module('llamaswap.daemon.fake_upstream', run_name='__main__')",
        ],
        stdout=subprocess.DEVNULL,
    )
    never_binds = f"{sys.executable} -c 'import time; time.sleep(60)' ${{PORT}}"
    config = make_config({"m": {"cmd": never_binds}}, health_check_timeout=30, startPort=port)
    try:
        async with running_daemon(config) as daemon, aiohttp.ClientSession() as http:
            base = f"http://127.0.0.1:{daemon.port}"
            async with http.post(base + CHAT, json={"model": "m"}) as r:
                status, payload = r.status, await r.json()
            assert status == 502
            assert (
                f"port {port} is answered by a process llamaswap did not start (pid {late.pid}"
                in payload["error"]["message"]
            )
            assert await _last_request(port) == {}
    finally:
        late.kill()
        late.wait()


async def test_client_credentials_reach_the_upstream_only_when_configured() -> None:
    for forward in (False, True):
        config = make_config(
            {"m": {"cmd": fake_cmd()}},
            apiKeys=["daemon-key"],
            security={"forwardCredentials": forward},
        )
        async with running_daemon(config) as daemon, aiohttp.ClientSession() as http:
            base = f"http://127.0.0.1:{daemon.port}"
            headers = {"Authorization": "Bearer daemon-key", "Cookie": "session=1", "X-Trace": "t"}
            async with http.post(base + CHAT, json={"model": "m"}, headers=headers) as r:
                assert r.status == 200
            seen = await _last_request(config.models["m"].port or 0)
        got = {k.lower() for k in seen["headers"]}  # type: ignore[attr-defined]
        assert "x-trace" in got
        assert ("authorization" in got, "cookie" in got) == (forward, forward)


def _environ(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/environ", "rb") as f:
        pairs = f.read().decode().split("\0")
    return dict(p.split("=", 1) for p in pairs if "=" in p)


async def test_upstreams_get_a_minimal_environment_unless_told_to_inherit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LLAMASWAP_TEST_SECRET", "hunter2")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    for inherit in (False, True):
        config = make_config(
            {"m": {"cmd": fake_cmd(), "env": ["MODEL_SETTING=on"]}},
            security={"inheritEnv": inherit},
        )
        async with running_daemon(config) as daemon, aiohttp.ClientSession() as http:
            async with http.post(f"http://127.0.0.1:{daemon.port}{CHAT}", json={"model": "m"}) as r:
                assert r.status == 200
            pid = daemon.runtime.processes.pid("m")
            assert pid is not None
            env = _environ(pid)
        assert env["MODEL_SETTING"] == "on" and env["PATH"] == os.environ["PATH"]
        assert env["CUDA_VISIBLE_DEVICES"] == "0"  # GPU selection passes by default
        assert ("LLAMASWAP_TEST_SECRET" in env) is inherit
        assert env["LLAMASWAP_TREE"].startswith(f"{os.getpid()}-")


def _setsid_config(path: Path, start_port: int) -> None:
    inner = fake_cmd().replace("${PORT}", str(start_port + 1))
    path.write_text(
        f"startPort: {start_port + 1}\n"
        "healthCheckTimeout: 15\n"
        "models:\n"
        "  m:\n"
        f"    cmd: sh -c 'setsid {inner} & wait'\n"
        f"    proxy: http://127.0.0.1:{start_port + 1}\n"
    )


def _post(url: str) -> int:
    import urllib.request

    req = urllib.request.Request(
        url, data=json.dumps({"model": "m"}).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=BOUND) as r:
        return int(r.status)


def _wait(predicate: object, what: str) -> None:
    deadline = time.monotonic() + BOUND
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def test_a_setsid_grandchild_dies_with_a_sigkilled_daemon(tmp_path: Path) -> None:
    base = free_port_block(2)
    config = tmp_path / "config.yaml"
    _setsid_config(config, base)
    daemon = subprocess.Popen(
        serve_argv(config, base), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        _wait(lambda: _up(base), "daemon up")
        assert _post(f"http://127.0.0.1:{base}{CHAT}") == 200
        _, who = port_owner(base + 1, "")
        grandchild = int(who.split()[1].rstrip(":"))
        with open(f"/proc/{grandchild}/stat") as f:
            session = int(f.read().rsplit(")", 1)[1].split()[3])
        assert session == grandchild  # it left the daemon's process groups: setsid
        daemon.kill()
        daemon.wait()
        _wait(lambda: not pid_alive(grandchild), "the setsid grandchild outlived the daemon")
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()


def _up(port: int) -> bool:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as r:
            return bool(r.status == 200)
    except (urllib.error.URLError, ConnectionError):
        return False


async def test_a_setsid_grandchild_is_swept_when_its_model_stops(tmp_path: Path) -> None:
    base = free_port_block(1)
    inner = fake_cmd().replace("${PORT}", str(base))
    config = make_config(
        {"m": {"cmd": f"sh -c 'setsid {inner} & wait'", "proxy": f"http://127.0.0.1:{base}"}}
    )
    async with running_daemon(config) as daemon, aiohttp.ClientSession() as http:
        url = f"http://127.0.0.1:{daemon.port}"
        async with http.post(url + CHAT, json={"model": "m"}) as r:
            assert r.status == 200
        _, who = await asyncio.get_running_loop().run_in_executor(None, port_owner, base, "")
        grandchild = int(who.split()[1].rstrip(":"))
        async with http.post(url + "/api/models/unload") as r:
            assert r.status == 200
        deadline = time.monotonic() + BOUND
        while pid_alive(grandchild):
            assert time.monotonic() < deadline, "the grandchild outlived its model"
            await asyncio.sleep(0.05)
