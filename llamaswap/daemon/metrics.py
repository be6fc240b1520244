"""Prometheus metrics for ``/metrics``, fed by core observations and by the request path.

Each daemon owns its registry (several daemons can live in one test process). Labelled children are
cached because ``.labels()`` costs a lock and a dict build on every call on the hot path.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from llamaswap.core.observe import (
    Observation,
    ProcessStateChanged,
    QueueDepth,
    SwapFinished,
    SwapStarted,
)
from llamaswap.core.process import ProcessState

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
_LOAD_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "llamaswap_requests",
            "Requests to model routes answered, refusals included (model is empty when the "
            "request named none or an unknown one), by model and HTTP status",
            ["model", "status"],
            registry=r,
        )
        self.http_requests = Counter(
            "llamaswap_http_requests",
            "Every HTTP request answered (API, UI, refusals), by status",
            ["status"],
            registry=r,
        )
        self.latency = Histogram(
            "llamaswap_request_duration_seconds",
            "Time from arrival to the end of the response, by model and HTTP status",
            ["model", "status"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_wait = Histogram(
            "llamaswap_queue_wait_seconds",
            "Time from arrival to the grant (queued in the scheduler, including any load), by "
            "model: what batch-aging's maxWait bounds",
            ["model"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_depth = Gauge(
            "llamaswap_queue_depth", "Requests waiting in the scheduler", registry=r
        )
        self.in_flight = Gauge(
            "llamaswap_in_flight_requests",
            "Requests being served by an upstream",
            ["model"],
            registry=r,
        )
        self.swaps = Counter(
            "llamaswap_swaps",
            "Swaps finished, by target model and result",
            ["model", "result"],
            registry=r,
        )
        self.swap_duration = Histogram(
            "llamaswap_swap_duration_seconds",
            "Swap time: evictions plus load of the target",
            ["model"],
            buckets=_LOAD_BUCKETS,
            registry=r,
        )
        self.load_duration = Histogram(
            "llamaswap_load_duration_seconds",
            "Process start to health check passed",
            ["model"],
            buckets=_LOAD_BUCKETS,
            registry=r,
        )
        self.process_state = Gauge(
            "llamaswap_process_state",
            "1 for the current state of each model's process",
            ["model", "state"],
            registry=r,
        )
        self.reloads = Counter(
            "llamaswap_config_reloads",
            "Config reloads (SIGHUP, --watch-config), by result: ok, or refused (old config kept)",
            ["result"],
            registry=r,
        )
        for result in ("ok", "refused"):  # both series exist (at 0) before the first reload
            self.reloads.labels(result)
        self.timeouts = Counter(
            "llamaswap_timeouts",
            "Requests cut by a bound (timeouts.*, limits.*), by model and the config key",
            ["model", "bound"],
            registry=r,
        )
        self._children: dict[tuple[str, ...], Any] = {}
        self.in_flight_of: Callable[[str], int] = lambda model: 0
        """Set by the daemon: the current host's in-flight count for a model (read at scrape)."""
        self._swap_started: dict[str, float] = {}
        self._starting_since: dict[str, float] = {}

    def _child(self, metric: Any, *labels: str) -> Any:
        key = (metric._name, *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def init_models(self, models: list[str]) -> None:
        for model in models:
            for state in ProcessState:
                self._child(self.process_state, model, state.value).set(
                    1 if state is ProcessState.STOPPED else 0
                )
            self._child(self.in_flight, model).set_function(
                lambda model=model: self.in_flight_of(model)
            )

    # ------------------------------------------------------------------ request path

    def request_done(self, model: str, status: int, seconds: float) -> None:
        code = str(status)
        self._child(self.requests, model, code).inc()
        self._child(self.latency, model, code).observe(seconds)

    def http_done(self, status: int) -> None:
        self._child(self.http_requests, str(status)).inc()
    def timed_out(self, model: str, bound: str) -> None:
        self._child(self.timeouts, model, bound).inc()

    def request_granted(self, model: str, waited: float) -> None:
        self._child(self.queue_wait, model).observe(waited)

    def reload_done(self, *, ok: bool) -> None:
        self.reloads.labels("ok" if ok else "refused").inc()

    # ------------------------------------------------------------------ core observations

    def observe(self, obs: Observation) -> None:
        if isinstance(obs, QueueDepth):
            self.queue_depth.set(obs.depth)
        elif isinstance(obs, ProcessStateChanged):
            self._child(self.process_state, obs.model, obs.old).set(0)
            self._child(self.process_state, obs.model, obs.new).set(1)
            if obs.new == ProcessState.STARTING.value:
                self._starting_since[obs.model] = obs.at
            elif obs.new == ProcessState.READY.value and obs.model in self._starting_since:
                started = self._starting_since.pop(obs.model)
                self._child(self.load_duration, obs.model).observe(obs.at - started)
            else:
                self._starting_since.pop(obs.model, 0.0)
        elif isinstance(obs, SwapStarted):
            self._swap_started[obs.model] = obs.at
        elif isinstance(obs, SwapFinished):
            result = "ok" if obs.error is None else "error"
            self._child(self.swaps, obs.model, result).inc()
            if obs.model in self._swap_started:
                began = self._swap_started.pop(obs.model)
                self._child(self.swap_duration, obs.model).observe(obs.at - began)

    def render(self) -> bytes:
        return generate_latest(self.registry)
