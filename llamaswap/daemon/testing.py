"""Helpers to run a real daemon with real fake upstreams on free local ports (tests, benchmarks).

Nothing here is a mock: configs go through the real config parser, upstreams are real
``fake_upstream`` processes, and the daemon listens on a real socket.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import socket
import sys
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

from llamaswap.config import Config, parse_config
from llamaswap.daemon.server import Daemon


def free_port_block(count: int, start: int = 20000, stop: int = 28000) -> int:
    """First port of ``count`` consecutive ports that are free right now (random start).

    Keep ranges below the kernel's ephemeral ports (32768 and up here): a port picked there can be
    taken by any outgoing connection before the process meant for it binds it.
    """
    base = start + (os.getpid() * 97 + int.from_bytes(os.urandom(2), "big")) % (stop - start)
    for _ in range(200):
        base = start + (base + 37 * count) % (stop - start - count)
        socks: list[socket.socket] = []
        try:
            for port in range(base, base + count):
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                socks.append(sock)
                sock.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for sock in socks:
                sock.close()
    raise RuntimeError(f"no block of {count} free ports found")


def serve_argv(config: str | os.PathLike[str], listen_port: int, *extra: str) -> list[str]:
    """``llamaswap serve`` with this interpreter on ``127.0.0.1:listen_port``, then ``extra``."""
    return [
        sys.executable,
        "-m",
        "llamaswap",
        "serve",
        "--config",
        str(config),
        "--listen",
        f"127.0.0.1:{listen_port}",
        *extra,
    ]


def env_with_venv_on_path() -> dict[str, str]:
    """This process's environment with the interpreter's bin directory (the venv's) first on PATH.

    The operator's setup from docs/real-llamacpp.md: config commands such as ``python3`` resolve
    there.
    """
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    return env


def fake_cmd(
    *,
    load_time: float = 0.2,
    prefill_tps: float = 1e6,
    decode_tps: float = 1000.0,
    parallel: int = 4,
    extra: str = "",
) -> str:
    """A config ``cmd`` running the fake upstream with this interpreter (no PATH lookup)."""
    return (
        f"{sys.executable} -m llamaswap.daemon.fake_upstream --quiet --port ${{PORT}} "
        f"--model ${{MODEL_ID}} --load-time {load_time} --prefill-tps {prefill_tps} "
        f"--decode-tps {decode_tps} --parallel {parallel} {extra}"
    ).strip()


def make_config(
    models: Mapping[str, Mapping[str, Any]],
    *,
    scheduler: str = "serial",
    health_check_timeout: float | None = 10.0,
    **top: Any,
) -> Config:
    """A real parsed config; ``health_check_timeout`` may go below llama-swap's 15 s floor."""
    data: dict[str, Any] = {
        "startPort": free_port_block(len(models)),
        "routing": {"scheduler": {"use": scheduler}},
        "models": {
            name: {"proxy": "http://127.0.0.1:${PORT}", **dict(spec)}
            for name, spec in models.items()
        },
        **top,
    }
    config = parse_config(data)
    if health_check_timeout is not None:
        config = dataclasses.replace(config, health_check_timeout=health_check_timeout)
    return config


@contextlib.asynccontextmanager
async def running_daemon(config: Config, **kwargs: Any) -> AsyncIterator[Daemon]:
    """A started daemon on a free port (``daemon.port``); stopped (all upstreams gone) on exit."""
    kwargs.setdefault("drain_timeout", 5.0)
    daemon = Daemon(config, **kwargs)
    await daemon.start("127.0.0.1", 0)
    try:
        yield daemon
    finally:
        await daemon.stop()


def pid_alive(pid: int) -> bool:
    """True if ``pid`` runs (a zombie awaiting its reaper counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ("Z", "X")
