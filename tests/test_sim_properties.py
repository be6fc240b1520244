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
