"""Simulating a front with ``peers``, ``selectors`` and ``profiles``: traces mixing local and peer
models, and what a spillover selector does to latency.

Why a host subclass and not core changes: a peer is not scheduled by the core (llama-swap's peer
router has no queue, no swap), so a request for a peer model never reaches the router here either;
it is served by a simulated remote box whose latency and slots come from a ``TimingProfile`` keyed
by the peer's qualified name (``box/model``), always warm. A selector's choice is the core's own
(:class:`llamaswap.core.selectors.Selectors`), fed with the local models' states as the router
reports them, exactly as the daemon does; an active profile's pins rewrite names first.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import simpy

from llamaswap.config.model import Config
from llamaswap.core.events import RequestCancelled, ServeDone
from llamaswap.core.observe import ProcessStateChanged
from llamaswap.core.process import ProcessState
from llamaswap.core.request import Request
from llamaswap.core.selectors import NoTargetError, Selectors, Target
from llamaswap.timing import TimingProfile
from sim.host import ERROR, PENDING, SimHost, SimRecord
from sim.run import simulate
from sim.trace import Trace

_STATES = {s.value: s for s in ProcessState}


class FederatedSimHost(SimHost):
    """:class:`SimHost` plus peers (served here, bypassing the router) and selectors."""

    def __init__(
        self,
        env: simpy.Environment,
        models: list[str],
        profiles: dict[str, TimingProfile],
        seed: int,
        *args: Any,
        config: Config,
        active_profile: str = "",
        all_profiles: Mapping[str, TimingProfile] | None = None,
        **kwargs: Any,
    ) -> None:
        peer_keys = sorted({r.fqn for r in config.peer_routes.values()})
        models = sorted(set(models) | set(peer_keys))
        given = {**profiles, **(all_profiles or {})}  # simulate() passes only the trace's names
        profiles = {m: given.get(m, TimingProfile()) for m in models}
        super().__init__(env, models, profiles, seed, *args, **kwargs)
        self.config = config
        self.pins = config.profiles[active_profile].pins if active_profile else {}
        self.selectors = Selectors({sid: s.spec for sid, s in config.selectors.items()})
        self.states: dict[str, ProcessState] = {}
        self.peer_requests: set[Request] = set()
        self.selected: dict[int, tuple[str, Target]] = {}
        self.routed_to: dict[str, int] = {}
        """Requests per final target (local model id or peer FQN): where the traffic went."""
        for key in peer_keys:
            self._warm[key] = 0  # a remote box is already loaded: no first-request warm-up

    # SimHost calls ``self.handle`` for every event it reports; peer requests are ours alone.
    @property
    def handle(self) -> Any:
        return self._filter

    @handle.setter
    def handle(self, sink: Any) -> None:
        self._router_handle = sink

    def _filter(self, event: object) -> None:
        request = getattr(event, "request", None)
        if isinstance(event, ServeDone | RequestCancelled) and request is not None:
            self._end(request)
            if request in self.peer_requests:
                self.peer_requests.discard(request)
                return
        self._router_handle(event)

    def _end(self, request: Request) -> None:
        chosen = self.selected.pop(request.id, None)  # type: ignore[call-overload]
        if chosen is not None:
            self.selectors.release(*chosen)

    def observe(self, observation: object) -> None:
        if type(observation) is ProcessStateChanged:
            self.states[observation.model] = _STATES[observation.new]
        super().observe(observation)

    def reject(self, request: Any, error: Any) -> None:
        self._end(request)
        super().reject(request, error)

    def arrive(self, index: int, model: str) -> Request | None:
        name = self.pins.get(model, model)
        if not name:  # disabled by the active profile: 404
            self._fail(index, f"model {model!r} is disabled by the active profile")
            return None
        chosen: tuple[str, Target] | None = None
        if name in self.selectors.specs:
            try:
                target = self.selectors.choose(name, self.states)
            except NoTargetError as exc:
                self._fail(index, str(exc))
                return None
            chosen = (name, target)
            name = target.name
        local = self.config.resolve(name)
        route = None if local is not None else self.config.peer_routes.get(name)
        key = local if local is not None else (route.fqn if route is not None else name)
        if chosen is not None:
            self.selected[index] = chosen
        self.routed_to[key] = self.routed_to.get(key, 0) + 1
        if route is None:
            return super().arrive(index, key)
        request = Request(index, key)
        self.peer_requests.add(request)
        self.grant(request)  # straight to the peer's slots: no queue of ours, no swap
        return None  # granted at once: nothing left for the client to give up on

    def _fail(self, index: int, reason: str) -> None:
        self.record.status[index] = ERROR
        self.record.end[index] = self.env.now
        self.record.error[index] = reason


def simulate_federated(
    config: Config,
    scheduler: str,
    trace: Trace,
    profiles: Mapping[str, TimingProfile],
    seed: int,
    *,
    active_profile: str = "",
) -> tuple[SimRecord, FederatedSimHost]:
    """Replay ``trace`` (names as clients send them) through the core plus simulated peers."""
    hosts: list[FederatedSimHost] = []

    def factory(*args: Any, **kwargs: Any) -> FederatedSimHost:
        host = FederatedSimHost(
            *args, config=config, active_profile=active_profile, all_profiles=profiles, **kwargs
        )
        hosts.append(host)
        return host

    spec = dataclasses.replace(config.routing_spec(), scheduler=scheduler)
    record, _ = simulate(spec, scheduler, trace, profiles, seed, host_factory=factory)
    assert all(s != PENDING for s in record.status)
    return record, hosts[0]
