"""Property tests for ``batch-aging``: a small timed world drives the real Router on a ManualClock.

The world plays the host: processes become ready ``load`` seconds after a spawn (or fail), exit a
moment after a terminate, and each granted request finishes after its own service time (unbounded
parallel slots, so "one batch's service time" is the longest single request). No sleeps and no
event loop of its own: the world's events are timers on the core's ``ManualClock``, next to the
router's, and the clock fires them one by one in time order.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from recording_host import RecordingHost

from llamaswap.core import (
    GroupSpec,
    ManualClock,
    ModelSpec,
    ProcessExited,
    ProcessReady,
    Request,
    RequestArrived,
    RequestCancelled,
    Router,
    RoutingSpec,
    ServeDone,
    Shutdown,
    UnloadRequested,
)
from llamaswap.core.observe import Observation, SwapStarted

STOP_TIME = 0.5
"""Seconds a terminated process takes to exit in the world."""


class CheckingHost(RecordingHost):
    """Records like RecordingHost and checks the safety invariants the moment they could break."""

    router: Router | None = None
    limits: dict[str, int] = {}
    slots: dict[str, int] = {}
    """Per model, the window ``slots`` allows (empty: no window)."""
    violations: list[str]

    def observe(self, observation: Observation) -> None:
        super().observe(observation)
        router = self.router
        if router is None:
            return
        if isinstance(observation, SwapStarted):
            busy = {m for m in router.in_flight().values()}
            for victim in observation.evict:
                if victim in busy:
                    self.violations.append(f"evicted {victim} with requests in flight")
        reserved = router.scheduler.snapshot()["reserved"]
        assert isinstance(reserved, dict)
        for model, count in reserved.items():
            if count > self.limits[model]:
                self.violations.append(f"{model} holds {count} > limit {self.limits[model]}")


@dataclass
class Job:
    rid: int
    model: str
    at: float
    service: float
    cancel_after: float | None = None


@dataclass
class World:
    spec: RoutingSpec
    load: dict[str, float]
    fail_loads: set[int] = field(default_factory=set)
    """Indices (in spawn order) of loads that fail."""

    def __post_init__(self) -> None:
        self.host = CheckingHost()
        self.host.violations = []
        self.host.limits = {m: s.limit() for m, s in self.spec.models.items()}
        window = self.spec.settings_for("batch-aging").get("slots")
        self.host.slots = {m: window for m in self.spec.models} if window else {}
        self.clock = ManualClock()
        self.router = Router(self.spec, self.host, self.clock)
        self.host.router = self.router
        self.clock.sink = self._deliver
        self._seen = {"spawned": 0, "terminated": 0, "killed": 0, "granted": 0}
        self.requests: dict[Hashable, Request] = {}
        self.jobs: dict[Hashable, Job] = {}
        self.granted_at: dict[Hashable, float] = {}

    def at(self, when: float, event: object) -> None:
        """A world event at ``when``: a timer on the same clock as the router's own."""
        self.clock.call_at(when, event)

    def submit(self, job: Job) -> None:
        request = Request(job.rid, job.model)
        self.requests[job.rid] = request
        self.jobs[job.rid] = job
        self.at(job.at, RequestArrived(request))
        if job.cancel_after is not None:
            self.at(job.at + job.cancel_after, ("cancel", job.rid))

    def _react(self) -> None:
        """Answer what the core asked of the host since the last look."""
        host, now = self.host, self.clock.now()
        for model, gen in host.spawned[self._seen["spawned"] :]:
            index = self._seen["spawned"]
            self._seen["spawned"] += 1
            if index in self.fail_loads:
                self.at(now + self.load[model] / 2, ProcessExited(model, gen, "crashed"))
            else:
                self.at(now + self.load[model], ProcessReady(model, gen))
        for model, gen in host.terminated[self._seen["terminated"] :]:
            self._seen["terminated"] += 1
            self.at(now + STOP_TIME, ProcessExited(model, gen, "terminated"))
        for model, gen in host.killed[self._seen["killed"] :]:
            self._seen["killed"] += 1
            self.at(now, ProcessExited(model, gen, "killed"))
        if host.slots:
            for model, count in Counter(self.router.in_flight().values()).items():
                if count > host.slots[model]:
                    host.violations.append(
                        f"{model}: {count} in flight > slots {host.slots[model]}"
                    )
        for request in host.granted[self._seen["granted"] :]:
            self._seen["granted"] += 1
            self.granted_at[request.id] = now
            self.at(now + self.jobs[request.id].service, ServeDone(request))

    def _deliver(self, event: object) -> None:
        if isinstance(event, tuple) and event[0] == "cancel":
            rid = event[1]
            if rid not in self.granted_at and self.host.answers.get(rid, 0) == 0:
                self.host.gone.add(rid)
                self.router.handle(RequestCancelled(self.requests[rid]))
        else:
            self.router.handle(event)

    def run(self, max_steps: int = 20_000) -> None:
        for _ in range(max_steps):
            self._react()
            if not self.clock.fire_next():
                return
        raise AssertionError("world did not finish within its step budget")


def _assert_answered_once_and_no_leaks(world: World) -> None:
    host = world.host
    for rid, job in world.jobs.items():
        answers = host.answers.get(rid, 0)
        if rid in host.gone and job.cancel_after is not None:
            assert answers <= 1, rid
        else:
            assert answers == 1, (rid, answers)
    assert host.violations == []
    snap = world.router.scheduler.snapshot()
    assert snap["queued"] == 0
    assert snap["swapping"] == []
    assert snap["in_flight"] == {}
    assert snap["reserved"] == {}


MODELS = ["A", "B", "C"]

jobs_strategy = st.lists(
    st.tuples(
        st.sampled_from(MODELS),
        st.floats(0.0, 30.0),  # inter-arrival gap
        st.floats(0.1, 8.0),  # service time
        st.one_of(st.none(), st.floats(0.0, 40.0)),  # cancel_after
    ),
    min_size=1,
    max_size=30,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    jobs=jobs_strategy,
    loads=st.tuples(st.floats(0.5, 20.0), st.floats(0.5, 20.0), st.floats(0.5, 20.0)),
    max_wait=st.floats(1.0, 60.0),
    min_resident=st.floats(0.0, 20.0),
    limit=st.integers(1, 6),
    grouping=st.sampled_from(["one", "pair", "independent"]),
    fail_loads=st.sets(st.integers(0, 10), max_size=3),
    unload_at=st.one_of(st.none(), st.floats(0.0, 200.0)),
    shutdown_at=st.one_of(st.none(), st.floats(0.0, 400.0)),
    slots=st.one_of(st.none(), st.integers(1, 3)),
)
def test_safety_every_request_answered_once_no_leaks_no_busy_eviction_within_limits(
    jobs: list[tuple[str, float, float, float | None]],
    loads: tuple[float, float, float],
    max_wait: float,
    min_resident: float,
    limit: int,
    grouping: str,
    fail_loads: set[int],
    unload_at: float | None,
    shutdown_at: float | None,
    slots: int | None,
) -> None:
    """Also with planned switches (``slots``): never more than ``slots`` requests in flight."""
    groups: tuple[GroupSpec, ...] = ()
    if grouping == "pair":
        groups = (GroupSpec("pair", ("A", "B")), GroupSpec("solo", ("C",), exclusive=False))
    elif grouping == "independent":
        groups = tuple(GroupSpec(m, (m,), exclusive=False) for m in MODELS)
    spec = RoutingSpec(
        models={m: ModelSpec(m, concurrency_limit=limit) for m in MODELS},
        groups=groups,
        scheduler="batch-aging",
        scheduler_settings={
            "batch-aging": {
                "maxWait": max_wait,
                "minResident": min_resident,
                **({"slots": slots} if slots else {}),
            },
        },
    )
    world = World(spec, dict(zip(MODELS, loads, strict=True)), fail_loads)
    t = 0.0
    for rid, (model, gap, service, cancel_after) in enumerate(jobs):
        t += gap
        world.submit(Job(rid, model, t, service, cancel_after))
    if unload_at is not None:
        world.at(unload_at, UnloadRequested(("A",), "u"))
    if shutdown_at is not None:
        world.at(shutdown_at, Shutdown(timeout=5.0))
    world.run()
    _assert_answered_once_and_no_leaks(world)
    if shutdown_at is not None:
        assert world.host.shutdown_done == 1


@st.composite
def dense_two_model_jobs(
    draw: st.DrawFn, min_busy: int = 1, min_gap: float = 0.0, min_rare: int = 0
) -> list[tuple[str, float, float]]:
    """A busy stream for one model (gaps shorter than services: fifo starves the other) with a few
    requests for the other model sprinkled in, as (model, gap, service) in arrival order."""
    busy = draw(st.sampled_from(["A", "B"]))
    rare = "B" if busy == "A" else "A"
    timed: list[tuple[float, str, float]] = []
    t = 0.0
    for gap, service in draw(
        st.lists(
            st.tuples(st.floats(min_gap, 2.0), st.floats(2.5, 6.0)),
            min_size=min_busy,
            max_size=max(100, min_busy),
        )
    ):
        t += gap
        timed.append((t, busy, service))
    for at, service in draw(
        st.lists(
            st.tuples(st.floats(0.0, t + 5.0), st.floats(0.1, 6.0)), min_size=min_rare, max_size=6
        )
    ):
        timed.append((at, rare, service))
    timed.sort()
    jobs, last = [], 0.0
    for at, model, service in timed:
        jobs.append((model, at - last, service))
        last = at
    return jobs


def _two_model_waits(
    jobs: list[tuple[str, float, float]], loads: tuple[float, float], **settings: object
) -> list[tuple[str, float]]:
    """Run (model, gap, service) jobs on models A and B under ``batch-aging`` with ``settings``;
    check every request was answered once, and return each request's (model, wait)."""
    spec = RoutingSpec(
        models={m: ModelSpec(m, concurrency_limit=1000) for m in "AB"},
        scheduler="batch-aging",
        scheduler_settings={"batch-aging": settings},
    )
    world = World(spec, dict(zip("AB", loads, strict=True)))
    t = 0.0
    for rid, (model, gap, service) in enumerate(jobs):
        t += gap
        world.submit(Job(rid, model, t, service))
    world.run()
    _assert_answered_once_and_no_leaks(world)
    return [(job.model, world.granted_at[rid] - job.at) for rid, job in world.jobs.items()]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    jobs=dense_two_model_jobs(),
    loads=st.tuples(st.floats(0.5, 5.0), st.floats(0.5, 5.0)),
    max_wait=st.floats(5.0, 30.0),
    min_resident=st.floats(0.0, 60.0),
    per_load=st.floats(0.0, 8.0),
)
def test_waits_are_bounded_by_max_wait_plus_loads_and_one_batch(
    jobs: list[tuple[str, float, float]],
    loads: tuple[float, float],
    max_wait: float,
    min_resident: float,
    per_load: float,
) -> None:
    """Two models sharing one slot, loads shorter than ``maxWait``, bounded services, no limit hit,
    any residency (a ``maxWait`` claim overrides it).

    Bound: ``maxWait + 2 * (max load + max service + stop time)``. Once a request is urgent it
    waits at most for: the resident model to drain (one batch), a stop and a load, and *if* the
    other model's oldest request is older and urgent too, that model's batch plus another stop and
    load. With one urgent model at a time this is the issue's ``maxWait + load + batch`` (plus the
    stop; see the not-overloaded test below); hypothesis found the two-urgent case, so this test
    states that bound.
    """
    waits = _two_model_waits(
        jobs, loads, maxWait=max_wait, minResident=min_resident, residencyPerLoad=per_load
    )
    bound = max_wait + 2 * (max(loads) + max(s for _, _, s in jobs) + STOP_TIME)
    assert max(w for _, w in waits) <= bound + 1e-6, (waits, bound)


@settings(max_examples=60, deadline=None)
@given(
    jobs=dense_two_model_jobs(),
    loads=st.tuples(st.floats(0.5, 5.0), st.floats(0.5, 5.0)),
    max_wait=st.floats(5.0, 30.0),
    slots=st.sampled_from([None, 4, 8]),
)
def test_without_residency_the_bound_is_max_wait_plus_two_loads_and_batches(
    jobs: list[tuple[str, float, float]],
    loads: tuple[float, float],
    max_wait: float,
    slots: int | None,
) -> None:
    """Also with planned switches (``slots``). There hypothesis does break ``maxWait`` + one load
    + one batch: the plan starts with a 1 s service estimate until it has observed one, and can
    misjudge a switch by a batch. It found no case beyond this bound, with two."""
    window = {} if slots is None else {"slots": slots}
    waits = _two_model_waits(
        jobs, loads, maxWait=max_wait, minResident=0, residencyPerLoad=0, **window
    )
    bound = max_wait + 2 * (max(loads) + max(s for _, _, s in jobs) + STOP_TIME)
    assert max(w for _, w in waits) <= bound + 1e-6, (waits, bound)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    jobs=dense_two_model_jobs(min_busy=60, min_gap=0.5, min_rare=1),
    loads=st.tuples(st.floats(0.5, 5.0), st.floats(0.5, 5.0)),
    headroom=st.floats(0.0, 10.0),
    switch_ratio=st.sampled_from([0.0, 4.0]),
    min_resident=st.floats(0.0, 60.0),
    per_load=st.floats(0.0, 8.0),
)
def test_when_not_overloaded_the_bound_is_the_issues_max_wait_plus_one_load_and_one_batch(
    jobs: list[tuple[str, float, float]],
    loads: tuple[float, float],
    headroom: float,
    switch_ratio: float,
    min_resident: float,
    per_load: float,
) -> None:
    """The issue's bound, ``maxWait`` + one load + one batch (plus the evicted model's stop), under
    an explicit "not overloaded" condition: a visit to the other model and back fits in ``maxWait``
    (``maxWait >= 2 x (load + batch + stop)``), so at most one model is urgent at a time. Any
    residency, even one longer than ``maxWait``: a ``maxWait`` claim overrides it. The busy
    stream lasts 30 s or more and keeps its model in service throughout, so fifo fails this bound."""
    longest = max(s for _, _, s in jobs)
    round_trip = 2 * (max(loads) + longest + STOP_TIME)
    max_wait = round_trip + headroom
    waits = _two_model_waits(
        jobs,
        loads,
        maxWait=max_wait,
        minResident=min_resident,
        residencyPerLoad=per_load,
        switchRatio=switch_ratio,
    )
    bound = max_wait + max(loads) + longest + STOP_TIME
    assert max(w for _, w in waits) <= bound + 1e-6, (waits, bound)


@pytest.mark.parametrize(("scheduler", "holds"), [("batch-aging", True), ("fifo", False)])
def test_the_issues_bound_tells_batch_aging_from_fifo_on_a_busy_stream(
    scheduler: str, holds: bool
) -> None:
    """The world the property test above draws from, pinned: A's stream (a request every second,
    3 s each) keeps A in service for a minute; one B request arrives at t = 5."""
    max_wait = 2 * (1.0 + 3.0 + STOP_TIME)
    spec = RoutingSpec(
        models={m: ModelSpec(m, concurrency_limit=1000) for m in "AB"},
        scheduler=scheduler,
        scheduler_settings={"batch-aging": {"maxWait": max_wait}},
    )
    world = World(spec, {"A": 1.0, "B": 1.0})
    for rid in range(60):
        world.submit(Job(rid, "A", float(rid), 3.0))
    world.submit(Job(60, "B", 5.0, 3.0))
    world.run()
    _assert_answered_once_and_no_leaks(world)
    b_wait = world.granted_at[60] - 5.0
    assert (b_wait <= max_wait + 1.0 + 3.0 + STOP_TIME) is holds, b_wait
