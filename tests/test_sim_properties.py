"""Property tests: random traces, timings and faults through the SimPy host and the real core.

Whatever happens (load failures, crashes, health-check timeouts, slow unloads, cancels, TTLs), every
request ends in exactly one terminal state, served requests have consistent times, and serial's
guarantees hold. Every registered scheduler is exercised, so a new policy gets these checks too.
"""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llamaswap.core.policies import scheduler_names
from llamaswap.core.spec import GroupSpec, ModelSpec, RoutingSpec
from llamaswap.timing import TimingProfile
from sim.host import CANCELLED, ERROR, OK, REJECTED
from sim.metrics import summarize
from sim.run import simulate
from sim.trace import Trace

MODELS = ["A", "B", "C"]

requests = st.lists(
    st.tuples(
        st.floats(0, 100, allow_nan=False),
        st.sampled_from(MODELS),
        st.floats(0.01, 20, allow_nan=False),
        st.one_of(st.none(), st.floats(0.1, 30, allow_nan=False)),
    ),
    min_size=1,
    max_size=40,
)
timings = st.fixed_dictionaries(
    {
        "load_time": st.floats(0, 40, allow_nan=False),
        "unload_time": st.floats(0, 20, allow_nan=False),
        "parallel": st.integers(1, 4),
        "load_failure_prob": st.sampled_from([0.0, 0.0, 0.3, 1.0]),
        "crash_rate": st.sampled_from([0.0, 0.0, 0.05, 0.5]),
    }
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=requests,
    timing=timings,
    scheduler=st.sampled_from(scheduler_names()),
    grouped=st.booleans(),
    limit=st.integers(1, 12),
    ttl=st.sampled_from([0.0, 5.0]),
    seed=st.integers(0, 3),
)
def test_every_request_ends_exactly_once(
    rows, timing, scheduler, grouped, limit, ttl, seed
) -> None:
    arrival, model, service, cancel = zip(*rows, strict=True)
    trace = Trace.build(
        arrival,
        model,
        service_time=service,
        cancel_after=[np.nan if c is None else c for c in cancel],
    )
    spec = RoutingSpec(
        models={
            m: ModelSpec(m, concurrency_limit=limit, ttl=ttl, unload_timeout=5.0) for m in MODELS
        },
        groups=(GroupSpec("all", tuple(MODELS), swap=False),) if grouped else (),
        health_check_timeout=30.0,
    )
    profile = TimingProfile.parse(timing)
    record, wall = simulate(spec, scheduler, trace, {m: profile for m in MODELS}, seed)
    status = list(record.status)
    assert set(status) <= {OK, ERROR, REJECTED, CANCELLED}
    assert "unfinished" not in record.error.values()
    for i in range(len(trace)):
        assert record.end[i] >= trace.arrival[i] - 1e-9
        if status[i] == OK:
            assert trace.arrival[i] <= record.start[i] <= record.end[i]
            assert (
                record.end[i] - record.start[i] == np.float64(trace.service_time[i])
                or abs(record.end[i] - record.start[i] - trace.service_time[i]) < 1e-6
            )
        if status[i] in (REJECTED, CANCELLED):
            assert record.start[i] != record.start[i]  # never started
    summary = summarize(record, trace, wall)
    total = summary["completed"] + summary["errors"] + summary["rejected"] + summary["cancelled"]
    assert total == summary["requests"] == len(trace)
    # the implicit default group swaps; a non-swapping group may keep every model resident
    assert summary["max_resident_models"] <= (len(MODELS) if grouped else 1)
    if scheduler == "serial":
        assert summary["max_resident_models"] <= 1
        assert summary["order_violations"] == 0
        assert summary["max_in_flight"] <= 1
    assert abs(sum(summary["busy_fraction"].values()) - 1.0) < 1e-5


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=st.lists(
        st.tuples(st.integers(0, 12), st.sampled_from(["A", "B"]), st.integers(1, 4)),
        min_size=1,
        max_size=10,
    ),
    extra=st.integers(0, 12),
    load=st.integers(0, 3),
    limit=st.integers(1, 3),
    scheduler=st.sampled_from(scheduler_names()),
)
def test_ties_do_not_depend_on_an_unrelated_earlier_arrival(
    rows: list[tuple[int, str, int]], extra: int, load: int, limit: int, scheduler: str
) -> None:
    """Whole-second times make arrivals, completions, loads and stops coincide. A request for a
    model the config does not have (rejected on arrival, it changes no state) inserted anywhere
    must not change what happens to any other request: the tie rule does not read history."""
    spec = RoutingSpec(models={m: ModelSpec(m, concurrency_limit=limit) for m in "AB"})
    profile = TimingProfile.parse({"load_time": float(load), "unload_time": 1.0})

    def outcomes(with_extra: bool) -> list[tuple[int, float, float]]:
        table = sorted([(float(t), m, float(s), i) for i, (t, m, s) in enumerate(rows)])
        if with_extra:
            table = sorted([*table, (float(extra), "Z", 1.0, -1)])
        trace = Trace.build(
            [r[0] for r in table], [r[1] for r in table], service_time=[r[2] for r in table]
        )
        record, _ = simulate(spec, scheduler, trace, {"A": profile, "B": profile}, 0)
        mine = [(r[3], k) for k, r in enumerate(table) if r[3] >= 0]
        return [(record.status[k], record.start[k], record.end[k]) for _, k in sorted(mine)]

    plain, extra_run = outcomes(False), outcomes(True)
    assert np.array_equal(np.array(plain), np.array(extra_run), equal_nan=True)
