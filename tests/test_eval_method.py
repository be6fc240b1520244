"""The evaluation's own arithmetic (``eval/``): offered load, burstiness, the free-swaps bound and
the swap-budget floor, on small synthetic traces (the real traces are not needed)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eval import deadline_reference as dref
from eval import run_evaluation as rv
from eval import workloads as wl
from llamaswap.timing import Distribution, TimingProfile
from sim.trace import Trace


def _workload(
    arrivals: list[float], models: list[str], service: list[float], parallel: int
) -> wl.Workload:
    trace = Trace.build(arrivals, models, service_time=service, source="synthetic")
    return wl.Workload("t", "(t) test", trace, TimingProfile(parallel=parallel), (), "test")


def test_offered_load_is_demand_over_span_and_slots() -> None:
    # 4 requests of 10 s over a 100 s span on 2 slots: 40 / (100 * 2) = 20%.
    w = _workload([0.0, 10.0, 50.0, 100.0], ["A", "B", "A", "B"], [10.0] * 4, parallel=2)
    assert w.natural_load() == pytest.approx(0.2)
    scaled = w.at_load(0.4)
    assert float(scaled.arrival[-1] - scaled.arrival[0]) == pytest.approx(50.0)


def test_peak_load_finds_the_burst_and_the_busiest_model() -> None:
    # A burst of three A requests in the first 10 s, then a lone B at 100 s; 1 slot, 5 s each.
    w = _workload([0.0, 1.0, 2.0, 100.0], ["A", "A", "A", "B"], [5.0] * 4, parallel=1)
    total, single = w.peak_load(w.natural_load(), 10.0)
    assert total == pytest.approx(1.5)  # 15 s of work in a 10 s window
    assert single == pytest.approx(1.5)  # all of it model A


def test_free_swap_trace_puts_every_request_on_one_model() -> None:
    trace = Trace.build([0.0, 1.0, 2.0], ["B", "A", "B"], service_time=[1.0, 2.0, 3.0])
    one = wl.free_swap_trace(trace)
    assert one.models == [wl.FREE_SWAP_MODEL]
    assert one.model_names() == [wl.FREE_SWAP_MODEL] * 3
    assert np.array_equal(one.arrival, trace.arrival)
    assert np.array_equal(one.service_time, trace.service_time)


def test_absence_floor() -> None:
    # 3 models, fifo ran 1000 s with 100 swaps: 2 * 1000 / (110 + 3).
    assert rv.absence_floor({"makespan": 1000.0, "swaps": 100}, 3) == pytest.approx(2000 / 113)


def test_a_cell_with_failed_requests_stops_the_run() -> None:
    """A request that never completes must not silently leave the latency statistics."""
    w = _workload([0.0, 1.0], ["A", "B"], [1.0, 1.0], parallel=1)
    setting = wl.LoadSetting("fast", "test", wl._lognormal(1.0))
    good = rv.run_cell(w, setting, 0.5, "fifo")
    assert good["completed"] == 2
    broken = wl.Workload(
        "t",
        "(t) test",
        w.trace,
        TimingProfile(parallel=1, load_failure_prob=1.0),
        (),
        "every load fails",
    )
    with pytest.raises(RuntimeError, match="only 0 of 2 requests completed"):
        rv.run_cell(broken, setting, 0.5, "fifo")


def _one_slot() -> dref.OneSlotTrace:
    # A needs 10 s at t=0 and t=5; B needs 1 s at t=1. Loads take 2 s.
    return dref.OneSlotTrace(
        np.array([0.0, 1.0, 5.0]), np.array([10.0, 1.0, 10.0]), np.array([0, 1, 0])
    )


def test_one_slot_fifo_serves_the_resident_model_while_it_has_work() -> None:
    # Load A (0-2), A (2-12), A again (12-22) while B waits, load B (22-24): B waits 23 s.
    out = _one_slot().run(Distribution("constant", 2.0), seed=1, policy="fifo")
    assert out == dref.Outcome(max_wait=23.0, p99_latency=pytest.approx(23.9, abs=0.1), swaps=2)


def test_one_slot_planner_switches_when_a_deadline_would_be_missed() -> None:
    # At t=12 a second A request would end at 22, and B's load at 24, past B's deadline 1 + 15:
    # load B (12-14), serve it (wait 13), load A (15-17), serve it (wait 12).
    out = _one_slot().run(
        Distribution("constant", 2.0), seed=1, policy="planned", deadline=15.0, exact=True
    )
    assert (out.max_wait, out.swaps) == (13.0, 3)
    # With a generous deadline it keeps batching like fifo.
    lax = _one_slot().run(
        Distribution("constant", 2.0), seed=1, policy="planned", deadline=60.0, exact=True
    )
    assert (lax.max_wait, lax.swaps) == (23.0, 2)


def test_one_slot_reference_picks_the_best_deadline_within_the_swap_budget() -> None:
    ref = dref.reference(_one_slot(), Distribution("constant", 2.0), seed=1, max_wait=60.0)
    assert ref["fifo"]["swaps"] == 2
    oracle = ref["planned (exact, best W)"]
    # Only W values whose swaps stay within 1.1 x fifo's (2 here) count: none of them switches.
    assert oracle["swaps"] <= 1.1 * ref["fifo"]["swaps"]
    assert oracle["max_wait"] == 23.0


def test_max_wait_floor_on_a_hand_worked_burst() -> None:
    # Three requests at t = 0, 1, 2 of 10 s each on models A, B, A; loads take at least 3 s.
    # Window [0, 2]: 30 s of service, 2 models (one load), the last one to start can be the one
    # released at 2 (r + p = 12): 0 + 30 + 3 - 12 = 21 s.
    trace = dref.OneSlotTrace(
        np.array([0.0, 1.0, 2.0]), np.array([10.0, 10.0, 10.0]), np.array([0, 1, 0])
    )
    assert dref.max_wait_floor(trace, 3.0) == pytest.approx(21.0)
    assert dref.shortest_load(Distribution("empirical", samples=(4.0, 2.5, 9.0))) == 2.5
    assert dref.shortest_load(Distribution("lognormal", 3.0, 0.3)) == 0.0


@settings(max_examples=150, deadline=None)
@given(
    jobs=st.lists(
        st.tuples(st.floats(0.0, 20.0), st.floats(0.5, 30.0), st.integers(0, 2)),
        min_size=1,
        max_size=40,
    ),
    load=st.floats(0.0, 15.0),
    deadline=st.floats(5.0, 200.0),
    exact=st.booleans(),
)
def test_max_wait_floor_is_never_beaten_by_a_schedule(
    jobs: list[tuple[float, float, int]], load: float, deadline: float, exact: bool
) -> None:
    """The floor is a lower bound for every schedule: fifo and the planner in the one-slot loop,
    whose loads all take ``load`` seconds, never wait less than it."""
    arrival = np.cumsum([gap for gap, _, _ in jobs])
    trace = dref.OneSlotTrace(
        arrival, np.array([s for _, s, _ in jobs]), np.array([m for _, _, m in jobs])
    )
    floor = dref.max_wait_floor(trace, load)
    constant = Distribution("constant", load)
    for policy in ("fifo", "planned"):
        outcome = trace.run(constant, seed=1, policy=policy, deadline=deadline, exact=exact)
        assert floor <= outcome.max_wait + 1e-6, (policy, floor, outcome.max_wait)
