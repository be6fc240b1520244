"""The running daemon: listen, serve, reload, drain and shut down (reference §7).

Shutdown (SIGINT/SIGTERM): stop listening; answer new requests on kept-alive connections with 503;
let in-flight and queued requests finish within ``drain_timeout``; then the core's ``Shutdown``
fails what is left (503) and stops every upstream (SIGKILL after ``stop_timeout``); wait for
``shutdown_complete``; close log streams; exit 0.

Reload (SIGHUP, ``--watch-config``): load the new config in a worker thread (never on the event
loop); if it is bad, log why and keep the old one; if it is unchanged, do nothing. Otherwise build
a new :class:`Runtime`, route new requests to it, and shut the old one down (every old model is
stopped, as in llama-swap). New requests wait until the old upstreams are gone, because the new
config usually reuses their ports; requests the old runtime was still holding in its queue are
queued again on the new one when their model still exists (``Api._moved_by_reload``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from llamaswap.config.model import Config, ConfigError
from llamaswap.daemon.access_log import AccessLog
from llamaswap.daemon.activity import ActivitySettings
from llamaswap.daemon.app import build_app
from llamaswap.daemon.forward import make_session
from llamaswap.daemon.guard import ConnectionGuard, GuardedRunner, raise_fd_limit
from llamaswap.daemon.logs import Logs, MonitorHandler
from llamaswap.daemon.logsafe import printable
from llamaswap.daemon.metrics import Metrics
from llamaswap.daemon.operator import OperatorView
from llamaswap.daemon.processes import Watchdog
from llamaswap.daemon.runtime import Runtime
from llamaswap.daemon.upstream_client import LeanClient
from llamaswap.daemon.webui import register as register_ui
from llamaswap.record.recorder import Recorder

log = logging.getLogger("llamaswap.server")

DEFAULT_MAX_BODY = 64 * 1024 * 1024
DEFAULT_DRAIN_TIMEOUT = 30.0
DEFAULT_STOP_TIMEOUT = 10.0
RELOAD_STOP_TIMEOUT = 30.0


def apply_log_level(level: str) -> None:
    """``logLevel``: debug | info | warn | error (anything else: info), for our own messages."""
    names = {"debug": logging.DEBUG, "warn": logging.WARNING, "error": logging.ERROR}
    logging.getLogger("llamaswap").setLevel(names.get(level.lower(), logging.INFO))


LISTEN_BACKLOG = 4096
"""aiohttp's default is 128 (nginx uses 511): a burst of hundreds of new connections then loses
SYNs that the client retries only after a second. The kernel caps it at ``net.core.somaxconn``."""


class Daemon:
    """The process-long daemon; implements :class:`~llamaswap.daemon.contract.Server` for app.py."""

    def __init__(
        self,
        config: Config,
        *,
        loader: Callable[[], Config] | None = None,
        max_body: int = DEFAULT_MAX_BODY,
        drain_timeout: float = DEFAULT_DRAIN_TIMEOUT,
        stop_timeout: float = DEFAULT_STOP_TIMEOUT,
        watchdog: bool = True,
        recorder: Recorder | None = None,
        access_log: AccessLog | None = None,
        activity: ActivitySettings | None = None,
    ) -> None:
        self.config = config
        self.recorder = recorder
        """``serve --record``: every runtime's host logs into it; the request path too."""
        self.loader = loader
        self.max_body = max_body
        self.drain_timeout = drain_timeout
        self.stop_timeout = stop_timeout
        self.logs = Logs()
        self.metrics = Metrics()
        self.metrics.in_flight_of = lambda model: self.runtime.host.in_flight(model)
        self.active = 0
        self.idle = asyncio.Event()
        self.draining = False
        self._use_watchdog = watchdog
        self._watchdog: Watchdog | None = None
        self._switched = asyncio.Event()
        self._switched.set()
        self._reload_lock = asyncio.Lock()
        self._log_handler = MonitorHandler(self.logs.proxy)
        self._runner: web.AppRunner | None = None
        self._watch_task: asyncio.Task[None] | None = None
        self.port = 0
        self.listen_host = "127.0.0.1"
        self.runtime: Runtime
        self.operator = OperatorView(self, access_log, activity)
        """Access log, activity store, UI event stream (see :mod:`llamaswap.daemon.operator`)."""

    # ================================================================== lifecycle

    async def start(self, host: str = "127.0.0.1", port: int = 8080) -> int:
        """Start serving; returns the bound port (useful with port 0)."""
        logging.getLogger("llamaswap").addHandler(self._log_handler)
        apply_log_level(self.config.log_level)
        for warning in self.config.warnings:
            log.warning("config: %s", warning)
        self.session = make_session()
        self.lean = LeanClient()
        if self._use_watchdog:
            self._watchdog = Watchdog()
        self.runtime = Runtime(self.config, self.logs, self.metrics, self._watchdog, self.recorder)
        self.operator.start()
        self.operator.attach(self.runtime)
        self.app = build_app(self, self.max_body)
        register_ui(self.app, self)  # the operator's pages: the daemon's own view, not the API's
        self.listen_host = host
        self.guard = ConnectionGuard(lambda: self.config.limits, raise_fd_limit())
        self._runner = GuardedRunner(
            self.app, self.guard, handler_cancellation=True, access_log=None, shutdown_timeout=2.0
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, reuse_address=True, backlog=LISTEN_BACKLOG)
        await site.start()
        server: Any = site._server
        sockets = server.sockets if server is not None else ()
        self.port = sockets[0].getsockname()[1] if sockets else port
        if host not in ("127.0.0.1", "localhost", "::1"):
            log.warning(
                "listening on non-loopback address %s: anyone who can reach it can use it", host
            )
        log.info("llamaswap listening on http://%s:%d", host, self.port)
        self.runtime.preload()
        return self.port

    async def stop(self) -> None:
        """Graceful shutdown: stop listening, drain, stop every upstream."""
        if self.draining:
            return
        self.draining = True
        self.operator.events.close()
        log.info(
            "shutting down: draining %d request(s) for up to %gs", self.active, self.drain_timeout
        )
        if self._watch_task is not None:
            self._watch_task.cancel()
        runner = self._runner
        if runner is not None:
            for site in list(runner.sites):
                await site.stop()
        if self.active:
            self.idle.clear()
            try:
                await asyncio.wait_for(self.idle.wait(), self.drain_timeout)
            except TimeoutError:
                log.warning("drain timed out with %d request(s) still open", self.active)
        await self._switched.wait()
        try:  # bounded even if a process cannot be reaped (e.g. stuck in uninterruptible I/O)
            await asyncio.wait_for(self.runtime.shutdown(self.stop_timeout), self.stop_timeout + 15)
        except TimeoutError:
            log.error("upstreams did not stop within %gs; exiting anyway", self.stop_timeout + 15)
        self.logs.close_subscribers()
        if runner is not None:
            await runner.cleanup()
        await self.operator.stop()
        await self.session.close()
        self.lean.close()
        if self._watchdog is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._watchdog.close)
        log.info("shutdown complete")
        logging.getLogger("llamaswap").removeHandler(self._log_handler)

    # ================================================================== the Server contract

    async def current(self) -> Runtime:
        if not self._switched.is_set():
            await self._switched.wait()
        return self.runtime

    def request_opened(self) -> None:
        self.active += 1

    def request_closed(self) -> None:
        self.active -= 1
        if not self.active:
            self.idle.set()

    # ================================================================== reload

    async def reload(self, config: Config | None = None) -> bool:
        """Switch to ``config`` (or what ``loader`` reads now); False if it could not be loaded."""
        async with self._reload_lock:
            if self.draining:
                return False
            if config is None:
                if self.loader is None:
                    log.warning("reload requested but this daemon has no config file to read")
                    self.metrics.reload_done(ok=False)
                    return False
                try:  # off the event loop: a big (or hostile) config must not stall requests
                    config = await asyncio.get_running_loop().run_in_executor(None, self.loader)
                except ConfigError as exc:
                    log.error("config reload failed, keeping the running config: %s", exc)
                    self.metrics.reload_done(ok=False)
                    return False
            if config == self.config:
                # Nothing to restart, but a reload still selects no profile, as llama-swap's does.
                log.info("config unchanged: nothing to reload")
                self.runtime.active_profile = ""
                self.metrics.reload_done(ok=True)
                return True
            log.info("reloading config: stopping every model of the old config")
            for warning in config.warnings:
                log.warning("config: %s", warning)
            apply_log_level(config.log_level)
            old = self.runtime
            self._switched.clear()
            try:
                self.config = config
                self.runtime = Runtime(
                    config, self.logs, self.metrics, self._watchdog, self.recorder
                )
                self.operator.attach(self.runtime)
                await old.shutdown(RELOAD_STOP_TIMEOUT)
            finally:
                self._switched.set()
            if self.recorder is not None:
                from llamaswap.record.meta import spec_meta

                self.recorder.meta({"reload": True, **spec_meta(config.routing_spec())})
            self.runtime.preload()
            log.info("config reloaded")
            self.metrics.reload_done(ok=True)
            return True

    def watch(self, paths: list[Path], config_dir: Path | None, every: float = 2.0) -> None:
        """``--watch-config``: poll the files (and the directory's file set) and reload on change."""

        def snapshot() -> tuple[object, ...]:
            state: list[object] = []
            files = list(paths)
            if config_dir is not None and config_dir.is_dir():
                files += sorted(p for p in config_dir.iterdir() if p.suffix in (".yml", ".yaml"))
            for path in files:
                try:
                    st = os.stat(path)
                    state.append((str(path), st.st_mtime_ns, st.st_size))
                except OSError:
                    state.append((str(path), None))
            return tuple(state)

        last = snapshot()

        async def loop() -> None:
            nonlocal last
            while True:
                await asyncio.sleep(every)
                now = snapshot()
                if now != last:
                    last = now
                    log.info("config change detected")
                    await self.reload()

        self._watch_task = asyncio.get_running_loop().create_task(loop())

    # ================================================================== access log

    _stamp_second = -1
    _stamp_text = ""

    def access(self, request: web.BaseRequest, status: int, started: float) -> None:
        peer = request.headers.get("X-Forwarded-For", "").split(",")[0].strip() or (
            request.remote or "-"
        )
        now = int(time.time())
        if now != self._stamp_second:
            self._stamp_second = now
            self._stamp_text = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now))
        line = (
            f'{self._stamp_text} [INFO] Request {printable(peer)} "{printable(request.method)} '
            f'{printable(request.path)} HTTP/{request.version.major}.{request.version.minor}" '
            f'{status} "{printable(request.headers.get("User-Agent", ""))}" '
            f"{(time.monotonic() - started) * 1000:.1f}ms\n"
        )
        self.logs.proxy.write(line.encode("utf-8", "replace"))
