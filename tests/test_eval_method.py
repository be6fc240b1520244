"""The evaluation's own arithmetic (``eval/``): offered load, burstiness, the free-swaps bound and
the swap-budget floor, on small synthetic traces (the real traces are not needed)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "eval"))
import run_evaluation as rv
import workloads as wl

from llamaswap.timing import TimingProfile
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
