"""batch-aging sizes its window from the slot count an upstream reports when it becomes ready
(``ProcessReady.slots``; the daemon reads llama-server's ``/props``) when ``slots`` is not set.

Driven by hand on a ManualClock; the daemon side runs against the real binary in
tests/test_real_server.py.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from recording_host import Harness

from llamaswap.core import ModelSpec, RoutingSpec
from llamaswap.core.events import ProcessReady


def harness(*models: str, scheduler: str = "batch-aging", **knobs: Any) -> Harness:
    spec = RoutingSpec(
        models={m: ModelSpec(m, concurrency_limit=100) for m in models},
        scheduler=scheduler,
        scheduler_settings={scheduler: knobs},
    )
    return Harness(spec)


def ready_with(h: Harness, model: str, slots: int | None) -> None:
    h.router.handle(ProcessReady(model, h.generation(model), slots))


def in_flight(h: Harness) -> list[object]:
    return [r.id for r in h.host.granted if r.id not in h.finished]


def test_reported_slots_cap_what_the_upstream_gets_and_the_rest_wait_in_order() -> None:
    h = harness("A", "B", minResident=0)
    for i in range(6):
        h.request(f"a{i}", "A")
    ready_with(h, "A", 2)
    assert h.host.granted_ids() == ["a0", "a1"]
    assert h.router.scheduler.snapshot()["window"] == {"A": 2}
    h.finish("a0")
    assert h.host.granted_ids() == ["a0", "a1", "a2"]
    h.finish("a1")
    h.finish("a2")
    assert in_flight(h) == ["a3", "a4"]


def test_without_a_report_the_whole_batch_goes_to_the_upstream_as_before() -> None:
    h = harness("A", "B", minResident=0)
    for i in range(6):
        h.request(f"a{i}", "A")
    ready_with(h, "A", None)
    assert h.host.granted_ids() == [f"a{i}" for i in range(6)]
    assert h.router.scheduler.snapshot()["window"] == {}


def test_a_configured_slots_setting_wins_over_the_report() -> None:
    h = harness("A", "B", slots=1, minResident=0)
    for i in range(3):
        h.request(f"a{i}", "A")
    ready_with(h, "A", 4)
    assert h.host.granted_ids() == ["a0"]
    assert h.router.scheduler.snapshot()["window"] == {"A": 1, "B": 1}


def test_a_stale_report_from_an_older_process_is_ignored() -> None:
    h = harness("A", "B", minResident=0)
    h.request("a0", "A")
    stale = h.generation("A")
    h.exited("A", "crashed")  # the load failed; a new request starts a new generation
    h.request("a1", "A")
    h.router.handle(ProcessReady("A", stale, 1))
    assert h.router.scheduler.snapshot()["window"] == {}
    ready_with(h, "A", None)
    assert "a1" in h.host.granted_ids()


def test_reported_slots_let_a_waiting_model_overtake_the_held_back_requests() -> None:
    """The point of a window: with 1 slot, B (waiting past maxWait) is loaded after the request
    in flight, not after the A requests that arrived behind it, which fifo (or no window) would
    have handed the upstream at once."""
    h = harness("A", "B", maxWait=5.0, minResident=0, switchRatio=0)
    h.request("a0", "A")
    ready_with(h, "A", 1)
    h.request("b0", "B")
    h.advance(0.5)
    for i in range(1, 5):
        h.request(f"a{i}", "A")
    assert h.host.granted_ids() == ["a0"], "the window holds a1-a4 in the scheduler"
    h.advance(5.2)
    h.finish("a0")
    for model in h.router.processes:
        if h.state(model) == "stopping":
            h.exited(model)
    ready_with(h, "B", 1)
    assert h.host.granted_ids() == ["a0", "b0"]


@pytest.mark.parametrize("scheduler", ["fifo", "serial"])
def test_fifo_and_serial_ignore_the_report(scheduler: str) -> None:
    h = harness("A", "B", scheduler=scheduler)
    for i in range(3):
        h.request(f"a{i}", "A")
    ready_with(h, "A", 1)
    expected = ["a0", "a1", "a2"] if scheduler == "fifo" else ["a0"]
    assert h.host.granted_ids() == expected


@settings(max_examples=60, deadline=None)
@given(
    slots=st.integers(1, 4),
    requests=st.integers(1, 12),
    finishes=st.lists(st.integers(0, 11), max_size=30),
)
def test_the_upstream_never_holds_more_than_it_reported(
    slots: int, requests: int, finishes: list[int]
) -> None:
    h = harness("A", "B", minResident=0)
    for i in range(requests):
        h.request(i, "A")
    ready_with(h, "A", slots)
    for pick in finishes:
        busy = in_flight(h)
        assert len(busy) <= slots
        if not busy:
            break
        h.finish(busy[pick % len(busy)])
    h.finish_all()
    while in_flight(h):
        assert len(in_flight(h)) <= slots
        h.finish_all()
    assert sorted(h.host.granted_ids()) == list(range(requests)), "every request served once"
