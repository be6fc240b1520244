"""Process lifecycle details through the real daemon: preload hooks, cmdStop with ${PID}, the model's
env, config watching, and shutdown with requests still waiting."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import aiohttp
import pytest
from waiting import wait_until

from llamaswap.config import load_config
from llamaswap.daemon.server import Daemon
from llamaswap.daemon.testing import (
    fake_cmd,
    free_port_block,
    make_config,
    pid_alive,
    running_daemon,
)

pytestmark = pytest.mark.daemon


async def test_preload_hook_loads_models_at_startup_through_the_core() -> None:
    models = {"warm": {"cmd": fake_cmd()}, "cold": {"cmd": fake_cmd()}}
    config = make_config(models, scheduler="fifo", hooks={"on_startup": {"preload": ["warm"]}})
    async with running_daemon(config) as daemon:
        # Ready, and the synthetic request's ServeDone (sent on the next loop turn) processed.
        await wait_until(
            lambda: (
                daemon.runtime.state("warm").value == "ready"
                and daemon.runtime.host.in_flight() == 0
            ),
            what="the preloaded model to be ready and its synthetic request done",
            seen=lambda: (daemon.runtime.state("warm"), daemon.runtime.host.in_flight()),
        )
        assert daemon.runtime.state("warm").value == "ready"
        assert daemon.runtime.state("cold").value == "stopped"
        assert daemon.runtime.host.in_flight() == 0  # the synthetic request reported ServeDone
        assert daemon.runtime.router.processes["warm"].in_flight == 0


async def test_cmd_stop_gets_the_pid_and_env_reaches_the_upstream(tmp_path: Path) -> None:
    marker = tmp_path / "stopped.txt"
    cmd = f"sh -c 'echo greeting=$GREETING; exec {fake_cmd()}'"
    # The PID is the shell's, which exec'd into the fake upstream.
    cmd_stop = f"sh -c 'echo $GREETING ${{PID}} > {marker}; kill -TERM ${{PID}}'"
    models = {"m": {"cmd": cmd, "cmdStop": cmd_stop, "env": ["GREETING=hello-env"]}}
    config = make_config(models)
    async with running_daemon(config) as daemon, aiohttp.ClientSession() as http:
        base = f"http://127.0.0.1:{daemon.port}"
        async with http.post(base + "/v1/completions", json={"model": "m", "max_tokens": 1}) as r:
            assert r.status == 200
        pid = daemon.runtime.processes.pid("m")
        assert pid is not None
        async with http.post(base + "/api/models/unload/m") as r:
            assert r.status == 200
        assert marker.read_text().split() == ["hello-env", str(pid)]
        assert not pid_alive(pid)
        assert "greeting=hello-env" in daemon.logs.model("m").history().decode()


async def test_unload_timeout_escalates_to_sigkill() -> None:
    models = {"stubborn": {"cmd": fake_cmd(extra="--ignore-sigterm"), "unloadTimeout": 0.5}}
    config = make_config(models)
    async with running_daemon(config) as daemon, aiohttp.ClientSession() as http:
        base = f"http://127.0.0.1:{daemon.port}"
        async with http.post(
            base + "/v1/completions", json={"model": "stubborn", "max_tokens": 1}
        ) as r:
            assert r.status == 200
        pid = daemon.runtime.processes.pid("stubborn")
        assert pid is not None
        started = time.monotonic()
        async with http.post(base + "/api/models/unload/stubborn") as r:
            assert r.status == 200  # answered once the process is gone
        # The escalation is observed in the log, not in a wall-clock window; the one-sided bound
        # cannot flake (a timer never fires early): SIGKILL came only after unloadTimeout.
        assert time.monotonic() - started > 0.4
        assert not pid_alive(pid)
        assert "killed by SIGKILL" in daemon.logs.proxy.history().decode()


async def test_watch_config_reloads_on_change_and_survives_a_bad_file(tmp_path: Path) -> None:
    port = free_port_block(2)
    path = tmp_path / "config.yaml"

    def write(names: list[str]) -> None:
        lines = [f"startPort: {port}", "models:"]
        for name in names:
            lines += [f"  {name}:", f"    cmd: {fake_cmd()}", "    proxy: http://127.0.0.1:${PORT}"]
        path.write_text("\n".join(lines) + "\n")

    write(["first"])
    daemon = Daemon(load_config(path), loader=lambda: load_config(path), drain_timeout=2)
    await daemon.start("127.0.0.1", 0)
    try:
        daemon.watch([path], None, every=0.1)
        write(["first", "second"])
        await wait_until(
            lambda: "second" in daemon.runtime.config.models,
            what="the watcher to load the changed config",
            seen=lambda: sorted(daemon.runtime.config.models),
        )
        assert sorted(daemon.runtime.config.models) == ["first", "second"]
        assert "config reload failed" not in daemon.logs.proxy.history().decode()
        path.write_text("models: {first: [\n")
        # The bad file's reload must be observed running and refusing, not merely awaited.
        await wait_until(
            lambda: "config reload failed" in daemon.logs.proxy.history().decode(),
            what="the watcher to try the bad file and refuse it",
        )
        assert sorted(daemon.runtime.config.models) == ["first", "second"]
        assert "config reload failed" in daemon.logs.proxy.history().decode()
    finally:
        await daemon.stop()


async def test_shutdown_answers_waiting_requests_and_stops_loading_models() -> None:
    models = {"slow": {"cmd": fake_cmd(load_time=30)}}
    config = make_config(models, health_check_timeout=60)
    daemon = Daemon(config, drain_timeout=0.5)
    await daemon.start("127.0.0.1", 0)
    async with aiohttp.ClientSession() as http:
        waiting = asyncio.create_task(
            http.post(f"http://127.0.0.1:{daemon.port}/v1/completions", json={"model": "slow"})
        )
        pid = await wait_until(
            lambda: daemon.runtime.processes.pid("slow"), what="the slow model to be spawned"
        )
        assert pid is not None
        started = time.monotonic()
        await daemon.stop()
        # A bound, not a window: drain (0.5 s) and stop must not hang; the log says which path ran.
        assert time.monotonic() - started < 8
        assert (
            "drain timed out with 1 request(s) still open" in daemon.logs.proxy.history().decode()
        )
        response = await waiting
        assert response.status == 503
        assert "shutting down" in (await response.json())["error"]["message"]
        response.release()
    assert not pid_alive(pid)


def test_fake_upstream_is_found_beside_the_interpreter() -> None:
    from llamaswap.daemon.processes import resolve_command

    argv = resolve_command(["llamaswap", "fake-upstream"])
    assert argv[0] == "llamaswap" or argv[0].startswith(str(Path(sys.executable).parent))
