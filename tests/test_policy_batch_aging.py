"""Scenario tests for ``batch-aging``, one rule each, driven by hand on a ManualClock."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from recording_host import Harness

from llamaswap.core import ErrorKind, GroupSpec, ModelSpec, RoutingSpec
from llamaswap.core.batch_aging import BatchAgingScheduler, BatchAgingSettings
from llamaswap.core.observe import SwapStarted
from llamaswap.core.policies import scheduler_names


def harness(*models: str, limit: int = 100, **settings: Any) -> Harness:
    spec = RoutingSpec(
        models={m: ModelSpec(m, concurrency_limit=limit) for m in models},
        scheduler="batch-aging",
        scheduler_settings={"batch-aging": settings},
    )
    return Harness(spec)


def loads(h: Harness) -> list[str]:
    return [o.model for o in h.host.observations if isinstance(o, SwapStarted)]


def ready_now(h: Harness, model: str) -> None:
    """Let evicted processes exit, then report ``model`` ready."""
    for other in h.router.processes:
        if h.state(other) == "stopping":
            h.exited(other)
    h.ready(model)


def scheduler(h: Harness) -> BatchAgingScheduler:
    sched = h.router.scheduler
    assert isinstance(sched, BatchAgingScheduler)
    return sched


def test_selectable_by_name() -> None:
    assert "batch-aging" in scheduler_names()
    assert scheduler(harness("A")).name == "batch-aging"


def test_batches_cold_arrivals_like_fifo() -> None:
    h = harness("A", "B", "C")
    for i, model in enumerate("ABCABC"):
        h.request(f"{model}{i}", model)
    h.settle()
    assert h.host.granted_ids() == ["A0", "A3", "B1", "B4", "C2", "C5"]
    assert loads(h) == ["A", "B", "C"]


def _busy_a_with_b_waiting(h: Harness) -> None:
    """A is loaded and kept busy by overlapping requests; one B request waits behind it."""
    h.request("a0", "A")
    ready_now(h, "A")
    h.request("b0", "B")
    for i in range(1, 8):
        h.advance(2.0)
        h.request(f"a{i}", "A")
        h.finish(f"a{i - 1}")


def test_fifo_starves_the_waiting_model_behind_a_busy_one() -> None:
    """The problem this policy exists for: fifo serves A's stream while B waits indefinitely."""
    h = Harness(RoutingSpec.simple("A", "B", scheduler="fifo"))
    _busy_a_with_b_waiting(h)
    assert h.host.granted_ids() == [f"a{i}" for i in range(8)]
    assert loads(h) == ["A"]


def test_starvation_bound_drains_the_busy_model_after_max_wait() -> None:
    h = harness("A", "B", maxWait=5.0, minResident=0)
    h.request("a0", "A")
    ready_now(h, "A")
    h.request("b0", "B")  # t=0, behind busy A
    for i in (1, 2):
        h.advance(2.0)
        h.request(f"a{i}", "A")
        h.finish(f"a{i - 1}")
    assert h.host.granted_ids() == ["a0", "a1", "a2"], "batching until b0 has waited maxWait"
    h.advance(2.0)  # t=6: the max-wait timer fired at t=5
    h.request("a3", "A")
    h.advance(2.0)
    h.request("a4", "A")
    assert h.host.granted_ids() == ["a0", "a1", "a2"], "no new A request overtakes urgent b0"
    assert [r.id for r in h.host.queue] == ["b0", "a3", "a4"]
    assert loads(h) == ["A"], "B's load waits until A's in-flight request is done"
    h.finish("a2")
    assert loads(h) == ["A", "B"]
    ready_now(h, "B")
    assert h.host.granted_ids()[-1] == "b0"
    assert [r.id for r in h.host.queue] == ["a3", "a4"]


def test_urgency_blocks_joining_a_load_of_a_model_it_must_evict() -> None:
    """An urgent model stops new requests from joining the batch of the model it must evict."""
    h = harness("A", "B", maxWait=5.0, minResident=0, residencyPerLoad=0)
    h.request("a0", "A")  # A loads, slowly
    h.request("b0", "B")
    h.advance(6.0)  # b0 is urgent while A's load is still in progress
    h.request("a1", "A")
    ready_now(h, "A")
    assert h.host.granted_ids() == ["a0"], "a1 must not ride on A's load past the urgent b0"
    h.finish("a0")
    assert loads(h) == ["A", "B"]


def _trickle_with_b_queue(h: Harness, seconds: int) -> None:
    """A serves a trickle (one request at a time, back to back); ten B requests wait."""
    h.request("a0", "A")
    ready_now(h, "A")
    for i in range(10):
        h.request(f"b{i}", "B")
    for t in range(1, seconds):
        h.advance(1.0)
        h.request(f"a{t}", "A")
        h.finish(f"a{t - 1}")
        if len(loads(h)) > 1:
            return


def test_switch_ratio_drains_a_trickling_model_once_the_waiting_batch_outweighs_its_load() -> None:
    """Response ratio of B's batch = (10 t + 10 s) / (30 s load + 10 s work): 4 at t = 15 s."""
    h = harness("A", "B", maxWait=1000.0, minResident=0, switchRatio=4, loadCost={"B": 30.0})
    _trickle_with_b_queue(h, 40)
    assert loads(h) == ["A", "B"]
    assert h.clock.now() == pytest.approx(15.0)


def test_switch_ratio_off_leaves_only_the_max_wait_bound() -> None:
    h = harness("A", "B", maxWait=1000.0, minResident=0, switchRatio=0, loadCost={"B": 30.0})
    _trickle_with_b_queue(h, 40)
    assert loads(h) == ["A"]


def test_min_residency_keeps_a_fresh_model_serving_through_a_soft_claim() -> None:
    """B's batch outweighs its cheap load at once (a soft claim), but A, loaded at t = 0, keeps
    serving its trickle until its 10 s residency ends; then the residency timer drains it."""
    h = harness("A", "B", maxWait=1000.0, minResident=10.0, switchRatio=1, loadCost={"B": 1.0})
    h.request("a0", "A")
    ready_now(h, "A")  # resident since t=0
    h.request("b0", "B")
    h.advance(3.0)
    assert "B" in scheduler(h).snapshot()["claims"]
    h.request("a1", "A")
    assert h.host.granted_ids() == ["a0", "a1"]
    h.finish("a0")
    h.advance(4.0)
    h.request("a2", "A")
    assert h.host.granted_ids() == ["a0", "a1", "a2"]
    assert loads(h) == ["A"]
    h.advance(3.5)  # t=10.5: protection over, the residency timer drained A
    h.request("a3", "A")
    assert "a3" not in h.host.granted_ids()
    h.finish("a1")
    h.finish("a2")
    assert loads(h) == ["A", "B"]


def test_max_wait_overrides_min_residency() -> None:
    """While one model at a time is late the bound is hard: once b0 has waited ``maxWait``, A
    (resident for 2.5 of its 10 s residency) takes no new request and is drained for B as soon as
    its work is done."""
    h = harness("A", "B", maxWait=2.0, minResident=10.0)
    h.request("a0", "A")
    ready_now(h, "A")
    h.request("b0", "B")
    h.advance(1.0)
    h.request("a1", "A")  # b0 is not urgent yet: a1 rides on the resident model
    h.advance(1.5)  # t=2.5: b0 is urgent
    h.request("a2", "A")
    assert h.host.granted_ids() == ["a0", "a1"], "no new same-model batching past an urgent b0"
    h.finish("a0")
    h.finish("a1")
    assert loads(h) == ["A", "B"]
    assert h.clock.now() == pytest.approx(2.5)


def test_a_load_chosen_while_the_late_request_waited_keeps_its_residency() -> None:
    """a1 was already queued (behind b0's claim) when B's load began: that load was paid for with
    a1 in view, so a1's own claim does not cut B's 10 s residency short; B then drains for A."""
    h = harness("A", "B", maxWait=2.0, minResident=10.0)
    h.request("a0", "A")
    ready_now(h, "A")
    h.request("b0", "B")
    h.advance(2.5)  # b0 is urgent; A (loaded before b0 arrived) takes nothing new
    h.request("a1", "A")
    h.advance(0.5)
    h.finish("a0")
    assert loads(h) == ["A", "B"]  # B's load begins at t = 3, after a1 arrived
    ready_now(h, "B")
    h.request("b1", "B")
    h.advance(2.0)  # t = 5: a1 has waited 2.5 s
    assert scheduler(h).snapshot()["urgent"] == ["A"]
    h.request("b2", "B")
    assert h.host.granted_ids() == ["a0", "b0", "b1", "b2"], "B keeps its residency"
    h.advance(8.5)  # t = 13.5: B's residency (from t = 3) is over
    h.request("b3", "B")
    assert "b3" not in h.host.granted_ids()
    for r in ("b0", "b1", "b2"):
        h.finish(r)
    assert loads(h) == ["A", "B", "A"]


def test_an_expensive_load_buys_a_proportionally_longer_residency() -> None:
    """Against soft claims; ``maxWait`` (1000 s here) still overrides it."""
    h = harness(
        "A",
        "B",
        maxWait=1000.0,
        minResident=1.0,
        residencyPerLoad=2.0,
        switchRatio=1,
        loadCost={"B": 1.0},
    )
    h.request("a0", "A")
    h.advance(10.0)  # A's load takes 10 s: residency max(1, 2 * 10) = 20 s
    ready_now(h, "A")
    h.request("b0", "B")
    assert scheduler(h).residency("A") == pytest.approx(20.0)
    for i in range(1, 7):
        h.advance(3.0)  # t = 13 .. 28; B's soft claim stands throughout
        h.request(f"a{i}", "A")
        h.finish(f"a{i - 1}")
    assert h.host.granted_ids() == [f"a{i}" for i in range(7)], "protected until t = 30"
    assert loads(h) == ["A"]
    h.advance(3.0)
    h.request("a7", "A")
    assert "a7" not in h.host.granted_ids()
    h.finish("a6")
    assert loads(h) == ["A", "B"]


def test_min_residency_does_not_hold_an_idle_model() -> None:
    """Residency protects work, not idleness: an idle fresh model is evicted at once."""
    h = harness("A", "B", maxWait=60.0, minResident=100.0)
    h.request("a0", "A")
    ready_now(h, "A")
    h.finish("a0")
    h.request("b0", "B")
    assert loads(h) == ["A", "B"]


def _three_waiting(h: Harness, cheap_popular: int, rare_age: float) -> None:
    """R is loaded and busy; C (rare) waits ``rare_age`` s, then ``cheap_popular`` A requests."""
    h.request("r0", "R")
    ready_now(h, "R")
    h.request("c0", "C")
    h.advance(rare_age)
    for i in range(cheap_popular):
        h.request(f"a{i}", "A")
    h.advance(1.0)


def test_cost_aware_choice_loads_a_cheap_popular_model_before_a_dear_rare_one() -> None:
    h = harness("R", "A", "C", maxWait=300.0, loadCost={"A": 2.0, "C": 60.0})
    _three_waiting(h, cheap_popular=5, rare_age=10.0)
    h.finish("r0")
    assert loads(h) == ["R", "A"], "fifo would load C first: it arrived first"


def test_cost_aware_choice_ages_a_rare_model_past_a_popular_one() -> None:
    """The response ratio grows with waiting: a long-waiting rare model wins before its maxWait."""
    h = harness("R", "A", "C", maxWait=300.0, loadCost={"A": 2.0, "C": 20.0})
    _three_waiting(h, cheap_popular=3, rare_age=200.0)
    h.finish("r0")
    assert loads(h) == ["R", "C"]


def test_expensive_rare_model_is_served_by_max_wait_even_against_demand() -> None:
    h = harness("R", "A", "C", maxWait=30.0, minResident=0, loadCost={"A": 1.0, "C": 500.0})
    _three_waiting(h, cheap_popular=8, rare_age=31.0)
    h.finish("r0")
    assert loads(h) == ["R", "C"]


def test_observed_load_times_feed_the_cost_estimate() -> None:
    h = harness("A", "B", defaultLoadCost=1.0)
    sched = scheduler(h)
    assert sched.load_cost("A") == 1.0
    h.request("a0", "A")
    h.advance(40.0)
    ready_now(h, "A")
    assert sched.load_cost("A") == pytest.approx(40.0)
    assert sched.load_cost("B") == pytest.approx(40.0), "unseen models borrow the observed mean"
    h.finish("a0")
    h.request("b0", "B")
    h.advance(4.0)
    ready_now(h, "B")
    assert sched.load_cost("B") == pytest.approx(4.0)
    assert h.router.scheduler.snapshot()["load_estimate"] == {"A": 40.0, "B": 4.0}


def test_load_cost_override_wins_over_observation() -> None:
    h = harness("A", loadCost={"A": 7.5})
    h.request("a0", "A")
    h.advance(40.0)
    ready_now(h, "A")
    assert scheduler(h).load_cost("A") == 7.5


def test_priority_orders_models_that_are_not_urgent() -> None:
    h = harness("R", "A", "B", maxWait=300.0, priority={"B": 5}, loadCost={"A": 1.0, "B": 1.0})
    h.request("r0", "R")
    ready_now(h, "R")
    for i in range(4):
        h.request(f"a{i}", "A")
    h.request("b0", "B")
    assert h.host.queue[0].id == "b0"
    h.finish("r0")
    assert loads(h) == ["R", "B"]


def test_urgency_outranks_priority() -> None:
    h = harness("R", "A", "B", maxWait=10.0, minResident=0, priority={"B": 5})
    h.request("r0", "R")
    ready_now(h, "R")
    h.request("a0", "A")
    h.advance(11.0)
    h.request("b0", "B")
    h.finish("r0")
    assert loads(h) == ["R", "A"]


def test_cancel_of_a_queued_request_releases_its_reservation() -> None:
    h = harness("A", "B", limit=1)
    h.request("a0", "A")
    ready_now(h, "A")
    h.request("b0", "B")
    h.request("b1", "B")
    assert h.host.rejected[-1][1].kind is ErrorKind.OVER_LIMIT
    h.cancel("b0")
    assert h.host.queue == []
    h.request("b2", "B")
    assert [r.id for r in h.host.queue] == ["b2"]
    h.finish("a0")
    ready_now(h, "B")
    assert h.host.granted_ids() == ["a0", "b2"]
    assert h.host.answers.get("b0", 0) == 0


def test_unload_fails_waiters_and_queued_requests_of_the_targets() -> None:
    h = harness("A", "B")
    h.request("a0", "A")
    ready_now(h, "A")
    h.request("b0", "B")  # queued behind busy A
    h.request("a1", "A")  # granted (batching)
    h.unload("A", "B", token="u")
    kinds = {r.id: e.kind for r, e in h.host.rejected}
    assert kinds == {"b0": ErrorKind.UNLOADED}
    h.finish("a0")
    h.finish("a1")
    h.settle()
    assert h.host.unloads_done == ["u"]
    assert h.router.scheduler.snapshot()["reserved"] == {}


def test_unload_during_a_load_fails_its_waiters() -> None:
    h = harness("A")
    h.request("a0", "A")
    h.unload("A", token="u")
    assert [(r.id, e.kind) for r, e in h.host.rejected] == [("a0", ErrorKind.UNLOADED)]
    h.settle()
    assert h.host.unloads_done == ["u"]


def test_shutdown_fails_everything_waiting_and_cancels_timers() -> None:
    h = harness("A", "B", maxWait=5.0)
    h.request("a0", "A")
    h.request("b0", "B")
    h.shutdown()
    assert sorted((r.id, e.kind) for r, e in h.host.rejected) == [
        ("a0", ErrorKind.SHUTTING_DOWN),
        ("b0", ErrorKind.SHUTTING_DOWN),
    ]
    h.settle()
    assert h.host.shutdown_done == 1
    assert h.clock.next_deadline() is None, "no timer outlives the shutdown"


def test_failed_load_fails_its_waiters_and_the_next_model_goes() -> None:
    h = harness("A", "B")
    h.request("a0", "A")
    h.request("b0", "B")
    h.exited("A", "crashed")
    assert [(r.id, e.kind) for r, e in h.host.rejected] == [("a0", ErrorKind.LOAD_FAILED)]
    assert loads(h) == ["A", "B"]


def test_load_cancellation_aborts_a_load_nobody_waits_for_when_others_wait() -> None:
    h = harness("A", "B")
    h.request("a0", "A")
    h.request("b0", "B")
    assert h.state("A") == "starting"
    h.cancel("a0")
    assert h.state("A") == "stopping", "the abandoned load is stopped"
    h.exited("A")
    assert loads(h) == ["A", "B"]
    ready_now(h, "B")
    assert h.host.granted_ids() == ["b0"]
    assert h.host.answers.get("a0", 0) == 0


def test_load_cancellation_lets_a_lonely_load_finish() -> None:
    h = harness("A", "B")
    h.request("a0", "A")
    h.cancel("a0")
    assert h.state("A") == "starting"
    h.ready("A")
    assert h.state("A") == "ready"
    h.request("a1", "A")
    assert h.host.granted_ids() == ["a1"]


def test_load_cancellation_later_when_another_model_starts_waiting() -> None:
    h = harness("A", "B")
    h.request("a0", "A")
    h.cancel("a0")
    h.request("b0", "B")
    assert h.state("A") == "stopping"
    ready_now(h, "B")
    assert h.host.granted_ids() == ["b0"]


def test_request_for_an_aborted_load_starts_a_fresh_one() -> None:
    h = harness("A", "B")
    h.request("a0", "A")
    h.request("b0", "B")
    h.cancel("a0")
    h.request("a1", "A")  # arrives while A is stopping after the abort
    h.settle()
    assert "a1" in h.host.granted_ids()
    assert h.host.rejected == []


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"maxWait": 0}, "batch-aging.maxWait: must be a finite number > 0"),
        ({"maxWait": "soon"}, "batch-aging.maxWait: must be a number of seconds"),
        ({"minResident": -1}, "batch-aging.minResident: must be a finite number >= 0"),
        ({"defaultLoadCost": float("inf")}, "batch-aging.defaultLoadCost: must be a finite"),
        ({"maxwait": 3}, "batch-aging.maxwait: unknown setting"),
        ({"switchRatio": 0.5}, "batch-aging.switchRatio: must be 0 (off) or a finite number >= 1"),
        ({"switchRatio": None}, "batch-aging.switchRatio: must be a number"),
        ({"priority": {"Z": 1}}, "batch-aging.priority.Z: no such model"),
        ({"priority": {"A": 1.5}}, "batch-aging.priority.A: must be an integer"),
        ({"priority": ["A"]}, "batch-aging.priority: must map model ids"),
        ({"priority": []}, "batch-aging.priority: must map model ids"),
        ({"loadCost": 0}, "batch-aging.loadCost: must map model ids"),
        ({"loadCost": {"A": -2}}, "batch-aging.loadCost.A: must be a finite number of seconds"),
        ({"loadCost": {"A": True}}, "batch-aging.loadCost.A"),
        ({"slots": 0}, "batch-aging.slots: must be a whole number of slots >= 1, got 0"),
        ({"slots": 1.5}, "batch-aging.slots: must be a whole number of slots"),
        ({"slots": {"A": True}}, "batch-aging.slots.A: must be a whole number of slots"),
        ({"slots": {"Z": 1}}, "batch-aging.slots.Z: no such model"),
    ],
)
def test_bad_settings_name_the_key_and_say_why(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape("routing.scheduler.settings." + message)):
        BatchAgingSettings.parse(settings, ["A"])


def test_settings_defaults_and_values() -> None:
    parsed = BatchAgingSettings.parse(
        {"maxWait": 12, "minResident": 0, "priority": {"A": 2}, "loadCost": {"A": 3}}, ["A"]
    )
    assert (parsed.max_wait, parsed.min_resident) == (12.0, 0.0)
    assert parsed.priority == {"A": 2}
    assert parsed.load_cost == {"A": 3.0}
    assert BatchAgingSettings.parse({}, ["A"]).max_wait is None, "unset: the derived default"
    assert not BatchAgingSettings.parse({}, ["A"]).planned
    assert BatchAgingSettings.parse({"slots": 2}, ["A", "B"]).slots == {"A": 2, "B": 2}
    assert BatchAgingSettings.parse({"slots": {"A": 1, "B": 4}}, ["A", "B"]).planned


def test_unset_max_wait_is_60_s_or_the_longest_residency_a_load_earns() -> None:
    h = harness("A", "B", loadCost={"B": 30.0})  # residencyPerLoad 4: B's load earns 120 s
    assert scheduler(h).max_wait() == pytest.approx(120.0)
    assert scheduler(h).snapshot()["max_wait"] == pytest.approx(120.0)
    cheap = harness("A", "B", loadCost={"A": 2.0, "B": 3.0})  # 12 s residency: the 60 s floor
    assert scheduler(cheap).max_wait() == pytest.approx(60.0)
    set_explicitly = harness("A", "B", maxWait=45, loadCost={"B": 30.0})
    assert scheduler(set_explicitly).max_wait() == pytest.approx(45.0)


def test_unset_max_wait_follows_the_observed_load_time() -> None:
    """A 40 s load observed: residency 160 s, so a B request is urgent after 160 s, not 60 s."""
    h = harness("A", "B", loadCost={"B": 1.0})
    h.request("a0", "A")
    h.advance(40.0)
    ready_now(h, "A")
    assert scheduler(h).max_wait() == pytest.approx(160.0)
    h.request("b0", "B")
    h.advance(100.0)
    assert scheduler(h).snapshot()["urgent"] == []
    h.advance(60.0)
    assert scheduler(h).snapshot()["urgent"] == ["B"]


def test_slots_as_a_map_must_name_every_model() -> None:
    with pytest.raises(ValueError, match=r"batch-aging\.slots: give every model .*missing: B"):
        BatchAgingSettings.parse({"slots": {"A": 1}}, ["A", "B"])


def test_urgency_drains_only_what_its_load_evicts() -> None:
    """Groups: B swaps with A; C lives in its own group. B's urgency drains A, never C."""
    spec = RoutingSpec(
        models={m: ModelSpec(m, concurrency_limit=100) for m in "ABC"},
        groups=(
            GroupSpec("pair", ("A", "B"), exclusive=False),
            GroupSpec("solo", ("C",), exclusive=False),
        ),
        scheduler="batch-aging",
        scheduler_settings={
            "batch-aging": {"maxWait": 5.0, "minResident": 0, "residencyPerLoad": 0}
        },
    )
    h = Harness(spec)
    h.request("a0", "A")
    h.request("c0", "C")
    assert sorted(loads(h)) == ["A", "C"], "independent groups load in parallel"
    h.ready("A")
    h.ready("C")
    h.request("b0", "B")
    h.advance(6.0)  # b0 urgent
    h.request("a1", "A")
    h.request("c1", "C")
    assert "a1" not in h.host.granted_ids()
    assert "c1" in h.host.granted_ids(), "C is not in B's way"
    h.finish("a0")
    assert loads(h)[-1] == "B"
    assert h.state("C") == "ready"


# ---------------------------------------------------------------------- planned switches (slots)


def test_slots_hand_the_upstream_at_most_its_window_and_keep_the_rest_queued() -> None:
    h = harness("A", "B", slots=2, minResident=0)
    for i in range(5):
        h.request(f"a{i}", "A")
    ready_now(h, "A")
    assert h.host.granted_ids() == ["a0", "a1"], "a finished load's waiters go through the window"
    assert [r.id for r in h.host.queue] == ["a2", "a3", "a4"]
    h.advance(1.0)
    h.finish("a0")
    assert h.host.granted_ids() == ["a0", "a1", "a2"], "a freed slot takes the oldest next"
    h.request("a5", "A")
    assert h.host.granted_ids()[-1] == "a2", "a ready model with a full window queues new work"


def test_plan_switches_before_a_waiting_model_would_miss_max_wait() -> None:
    """One slot, 4 s services, loads cost 2 s, maxWait 10 s: A keeps serving while b0 can still
    start within 10 s of its arrival, and yields the slot at the last moment that allows it."""
    h = harness("A", "B", slots=1, maxWait=10.0, minResident=0, loadCost={"A": 2.0, "B": 2.0})
    h.request("a0", "A")
    ready_now(h, "A")
    scheduler(h).costs.service_estimate["A"] = 4.0
    scheduler(h).costs.service_estimate["B"] = 4.0
    h.advance(0.5)
    h.request("b0", "B")  # t=0.5: its deadline is 10.5
    h.advance(0.5)
    h.request("a1", "A")  # t=1, after b0
    h.advance(3.0)
    h.finish("a0")  # t=4: one more A (ends 8) + B's load (2) = 10 <= 10.5: stay
    assert h.host.granted_ids() == ["a0", "a1"]
    assert loads(h) == ["A"]
    h.advance(1.0)
    h.request("a2", "A")  # t=5
    h.advance(2.0)
    h.request("a3", "A")  # t=7
    h.advance(1.0)
    # t=8: one more A would end at 12, B would start at 14 > 10.5. Switching makes a2 wait until
    # 8 + 2 (B's load) + 4 (b0) + 2 (A's reload) = 16, 11 s, less than b0's 13.5: switch now.
    h.finish("a1")
    assert h.host.granted_ids() == ["a0", "a1"], "no new A request overtakes b0"
    assert loads(h) == ["A", "B"]
    ready_now(h, "B")
    assert h.host.granted_ids()[-1] == "b0"
    assert h.clock.now() - 0.5 == 7.5, "b0 started 7.5 s after it arrived, within maxWait"
    assert [r.id for r in h.host.queue] == ["a2", "a3"]
    assert scheduler(h).snapshot()["plan_limit"] == 10.0


def test_plan_limit_rises_to_the_longest_wait_seen() -> None:
    """Once a wait longer than maxWait happened, the plan aims at that wait, so an unreachable
    maxWait does not turn the policy into a load per request."""
    h = harness("A", "B", slots=1, maxWait=1.0, minResident=0, loadCost={"A": 2.0, "B": 2.0})
    h.request("a0", "A")
    h.request("a1", "A")
    h.advance(5.0)
    ready_now(h, "A")  # a0 waited 5 s for its grant
    assert scheduler(h).plan_limit() == 5.0


def test_plan_leaves_the_resident_alone_when_its_own_request_is_the_oldest() -> None:
    h = harness("A", "B", slots=1, maxWait=1.0, minResident=0, loadCost={"A": 5.0, "B": 5.0})
    h.request("a0", "A")
    h.request("a1", "A")
    ready_now(h, "A")
    h.request("b0", "B")
    h.advance(30.0)
    h.finish("a0")  # b0 is late, but a1 arrived first: serve it
    assert h.host.granted_ids() == ["a0", "a1"]
    assert loads(h) == ["A"]


def test_a_model_with_queued_work_is_drained_only_for_the_planned_claim() -> None:
    """Between two of A's requests its window is momentarily empty: a waiting model whose plan
    has not failed must not evict A while A still holds queued requests."""
    h = harness("A", "B", slots=1, maxWait=100.0, minResident=0, loadCost={"A": 1.0, "B": 1.0})
    for i in range(3):
        h.request(f"a{i}", "A")
    ready_now(h, "A")
    h.request("b0", "B")
    h.advance(1.0)
    h.finish("a0")
    assert h.host.granted_ids() == ["a0", "a1"]
    assert loads(h) == ["A"]


def test_plan_keeps_the_resident_when_switching_would_make_its_own_queue_wait_longer() -> None:
    """A burst of A requests queued just after b0: switching for b0 would leave the whole burst
    waiting for B's visit and A's reload, longer than b0 waits if A goes on. The plan stays."""
    h = harness("A", "B", slots=1, maxWait=10.0, minResident=0, loadCost={"A": 2.0, "B": 2.0})
    h.request("a0", "A")
    ready_now(h, "A")
    scheduler(h).costs.service_estimate["A"] = 4.0
    scheduler(h).costs.service_estimate["B"] = 4.0
    h.request("b0", "B")  # t=0
    h.advance(0.5)
    for i in range(1, 4):
        h.request(f"a{i}", "A")  # t=0.5, after b0
    h.advance(3.5)
    h.finish("a0")  # t=4: b0 could still start at 10: stay
    h.advance(4.0)
    # t=8: staying, b0 starts at 14 (waits 14 > 10); switching, a2 starts at 8 + 2 (B's load) +
    # 4 (b0) + 2 (A's reload) = 16 and waits 15.5, longer: stay.
    h.finish("a1")
    assert h.host.granted_ids() == ["a0", "a1", "a2"]
    assert loads(h) == ["A"]


# ---------------------------------------------------------------------- the package's shapes


def test_the_decision_table_is_numbered_in_order_and_ends_with_its_default() -> None:
    from llamaswap.core.batch_aging import DECISIONS, Verdict

    assert [d.number for d in DECISIONS] == list(range(1, len(DECISIONS) + 1))
    assert DECISIONS[-1].name == "otherwise" and DECISIONS[-1].verdict is Verdict.LOAD
    assert {d.verdict for d in DECISIONS} == set(Verdict), "every verdict is reachable"


def test_a_case_no_row_decides_is_an_error_not_a_silent_skip(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from llamaswap.core.batch_aging import scheduler as module

    monkeypatch.setattr(module, "DECISIONS", module.DECISIONS[:-1])
    h = harness("A")
    with pytest.raises(RuntimeError, match="no decision for 'A'; the table is incomplete"):
        h.request("a0", "A")  # cold: only 'otherwise' (load) would have decided it


def test_planned_is_a_second_claim_rule_not_a_flag() -> None:
    from llamaswap.core.batch_aging.claims import PlannedClaims, ReactiveClaims

    assert isinstance(scheduler(harness("A")).rule, ReactiveClaims)
    assert isinstance(scheduler(harness("A", slots=2)).rule, PlannedClaims)


def test_the_waiting_line_stamps_arrival_from_the_clock_and_forgets_answered_requests() -> None:
    h = harness("A", "B")
    h.advance(5.0)
    a0 = h.request("a0", "A")  # cold: joins A's load at once
    b0 = h.request("b0", "B")  # queued behind it
    line = scheduler(h).line
    assert line.arrival(a0) == 5.0 and line.arrival(b0) == 5.0
    assert line.oldest("B") == 5.0 and line.arrival_sum("B") == 5.0
    h.advance(1.0)
    h.ready("A")
    with pytest.raises(KeyError):
        line.arrival(a0)  # granted: the scheduler holds nothing of it any more
    h.cancel("b0")
    assert "B" not in line and len(line) == 0
    with pytest.raises(KeyError):
        line.arrival(b0)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["add", "take", "put", "cancel", "drop"]), st.integers(0, 3))
    )
)
def test_the_waiting_lines_arrival_sums_always_equal_the_sum_of_what_is_queued(
    steps: list[tuple[str, int]],
) -> None:
    """The guard the hand-kept ``_arrival_sum`` never had."""
    from llamaswap.core import Request
    from llamaswap.core.batch_aging.line import WaitingLine

    line, taken, clock = WaitingLine(), [], 0.0
    for verb, n in steps:
        model = "AB"[n % 2]
        clock += 0.25 * n
        if verb == "add":
            line.add(Request(clock, model), clock)
        elif verb == "take":
            taken += line.take(model, n or None)
        elif verb == "put" and taken:
            back = [r for r in taken if r.model == model][:n]
            line.put_back(model, back)
            taken = [r for r in taken if r not in back]
        elif verb == "cancel" and line.queued(model):
            line.cancel(line.queued(model)[-1])
        elif verb == "drop":
            line.answered(line.drop(model))
        for m in "AB":
            queued = line.queued(m)
            assert line.arrival_sum(m) == pytest.approx(sum(line.arrival(r) for r in queued))
            assert (m in line) == bool(queued), "no empty batch is kept"


def test_design_md_shows_the_decision_table_the_code_runs() -> None:
    from pathlib import Path

    from llamaswap.core.batch_aging.scheduler import decisions_markdown

    text = (Path(__file__).resolve().parents[1] / "docs" / "design.md").read_text()
    found = re.search(
        r"<!-- batch-aging-decisions:begin -->\n(.*?)\n<!-- batch-aging-decisions:end -->",
        text,
        re.DOTALL,
    )
    assert found, "docs/design.md lost its batch-aging-decisions markers"
    assert found.group(1) == decisions_markdown(), "design.md's decision table differs from code"
