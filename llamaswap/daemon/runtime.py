"""One config brought to life: its router (the core), asyncio host and upstream processes.

A config reload builds a whole new :class:`Runtime` and shuts the old one down (llama-swap does the
same: every old model is stopped, even unchanged ones), so no state leaks between configs.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Hashable, Mapping

from llamaswap.config.model import Config, ModelConfig
from llamaswap.core.process import ProcessState
from llamaswap.core.router import Router
from llamaswap.core.selectors import Selectors
from llamaswap.daemon.host import AsyncHost, Ticket
from llamaswap.daemon.logs import Logs
from llamaswap.daemon.metrics import Metrics
from llamaswap.daemon.processes import UpstreamProcesses, UpstreamSpec, Watchdog
from llamaswap.record.recorder import Recorder

log = logging.getLogger("llamaswap.runtime")


def upstream_spec(model: ModelConfig, inherit_env: bool = False) -> UpstreamSpec:
    return UpstreamSpec(
        model=model.id,
        cmd=tuple(model.cmd),
        proxy=model.proxy,
        cmd_stop=model.cmd_stop,
        env=dict(model.env),
        health_url=model.health_check_url,
        inherit_env=inherit_env,
        check_port=model.port is not None,
    )


class Runtime:
    """Implements :class:`~llamaswap.daemon.contract.Backend`: what a request handler may use."""

    def __init__(
        self,
        config: Config,
        logs: Logs,
        metrics: Metrics,
        watchdog: Watchdog | None,
        recorder: Recorder | None = None,
    ) -> None:
        self.config = config
        self.metrics = metrics
        self.host = AsyncHost(None, metrics)
        self.host.recorder = recorder
        inherit = config.security.inherit_env
        specs = {mid: upstream_spec(m, inherit) for mid, m in config.models.items()}
        self.processes = UpstreamProcesses(
            specs, logs, self.host.process_ready, self.host.process_exited, watchdog
        )
        self.router = Router(config.routing_spec(), self.host, self.host)
        self.host.attach(self.router, self.processes)
        metrics.init_models(sorted(config.models))
        self._preloads: list[asyncio.Future[object]] = []
        self.active_profile = ""
        self.selectors = Selectors({sid: s.spec for sid, s in config.selectors.items()})

    def preload(self) -> None:
        """``hooks.on_startup.preload``: a synthetic request per model, through the core."""
        for model in self.config.preload:
            log.info("preloading %s", model)
            self.host.submit(model, preload=True)

    def state(self, model: str) -> ProcessState | None:
        return self.router.model_state(model)

    def scheduler_state(self) -> tuple[str, Mapping[str, object]]:
        scheduler = self.router.scheduler
        return scheduler.name, scheduler.snapshot()

    def submit(self, model: str, *, request_id: Hashable | None = None) -> Ticket:
        return self.host.submit(model, request_id=request_id)

    def release(self, ticket: Ticket, error: str | None = None) -> None:
        self.host.release(ticket, error)

    async def unload(self, models: tuple[str, ...] | None) -> None:
        await self.host.unload(models)

    async def settle_if_dead(self, model: str) -> None:
        await self.processes.settle_if_dead(model)

    def running(self) -> list[dict[str, object]]:
        out: list[dict[str, object]] = []
        pids = self.processes.pids()
        for model, state in self.router.process_states().items():
            if state in (ProcessState.STOPPED, ProcessState.SHUTDOWN):
                continue
            m = self.config.models[model]
            out.append(
                {
                    "model": model,
                    "state": state.value,
                    "cmd": " ".join(m.cmd),
                    "proxy": m.proxy,
                    "ttl": m.ttl,
                    "name": m.name,
                    "description": m.description,
                    "pid": pids.get(model),
                }
            )
        return out

    async def shutdown(self, timeout: float | None) -> None:
        """Fail everything queued, stop every process (SIGKILL after ``timeout``), wait for it."""
        self.host.shutdown(timeout)
        await self.host.shutdown_done.wait()
        await self.processes.aclose()
