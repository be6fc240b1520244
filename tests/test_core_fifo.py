"""``fifo``: llama-swap's FIFO scheduler, decision by decision (reference §4.3)."""

from collections.abc import Hashable, Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from recording_host import Harness

from llamaswap.core import ErrorKind, GroupSpec, ModelSpec, Request, RequestError, RoutingSpec
from llamaswap.core.clock import ManualClock, TimerHandle
from llamaswap.core.events import TimerFired
from llamaswap.core.fifo import FifoScheduler, FifoSettings
from llamaswap.core.observe import SwapStarted
from llamaswap.core.process import ProcessState
from llamaswap.core.router import Router
from llamaswap.core.scheduler import Scheduler
from llamaswap.core.swapper import Swapper


def fifo(*models: str, **kwargs: object) -> Harness:
    return Harness(RoutingSpec.simple(*models, scheduler="fifo", **kwargs))  # type: ignore[arg-type]


def co_resident(*models: str) -> tuple[GroupSpec, ...]:
    """Each model in its own non-exclusive group: everything may run side by side."""
    return tuple(GroupSpec(f"g{m}", (m,), swap=True, exclusive=False) for m in models)


class TableSwapper:
    """Eviction from a fixed table, to pin down scheduler decisions independent of groups."""

    def __init__(self, table: dict[str, list[str]]) -> None:
        self.table = table
        self.started: list[tuple[str, tuple[str, ...]]] = []

    def eviction_for(self, target: str, running: Sequence[str]) -> list[str]:
        return sorted(m for m in self.table.get(target, []) if m in running)

    def on_swap_start(self, target: str, evict: Sequence[str]) -> None:
        self.started.append((target, tuple(evict)))


def with_swapper(spec: RoutingSpec, swapper: Swapper) -> Harness:
    def factory(s: RoutingSpec, router: Router, _: Swapper) -> Scheduler:
        return FifoScheduler(s, router, swapper)

    return Harness(spec, scheduler_factory=factory)


def swaps_started(h: Harness) -> list[tuple[str, tuple[str, ...]]]:
    return [(o.model, o.evict) for o in h.host.observations if isinstance(o, SwapStarted)]


# ---------------------------------------------------------------------- admission


def test_admission_limit_counts_swap_waiters_and_serving_requests() -> None:
    h = Harness(RoutingSpec(models={"A": ModelSpec("A", concurrency_limit=2)}, scheduler="fifo"))
    h.request("a1", "A")
    h.request("a2", "A")  # both wait for the swap
    h.request("a3", "A")
    assert h.host.error_of("a3") is ErrorKind.OVER_LIMIT
    h.ready("A")
    h.request("a4", "A")  # both are now serving: still full
    assert h.host.error_of("a4") is ErrorKind.OVER_LIMIT
    h.finish("a1")
    h.request("a5", "A")
    assert h.host.granted_ids() == ["a1", "a2", "a5"]


def test_admission_limit_counts_queued_requests() -> None:
    spec = RoutingSpec(
        models={"A": ModelSpec("A"), "B": ModelSpec("B", concurrency_limit=1)}, scheduler="fifo"
    )
    h = Harness(spec)
    h.request("a1", "A")
    h.ready("A")
    h.request("b1", "B")  # queued: evicting A would hit a request in flight
    assert h.router.scheduler.snapshot()["queued"] == 1
    h.request("b2", "B")
    err = h.host.rejected[0][1]
    assert (h.host.rejected_ids(), err.kind) == (["b2"], ErrorKind.OVER_LIMIT)
    assert "1" in err.message


def test_default_admission_limit_is_ten_when_unset_or_zero() -> None:
    h = Harness(RoutingSpec(models={"A": ModelSpec("A", concurrency_limit=0)}, scheduler="fifo"))
    for i in range(11):
        h.request(i, "A")
    assert h.host.rejected_ids() == [10]
    assert h.host.error_of(10) is ErrorKind.OVER_LIMIT


def test_reservations_are_released_on_cancel_failure_and_serve_done() -> None:
    h = Harness(
        RoutingSpec(
            models={"A": ModelSpec("A", concurrency_limit=2), "B": ModelSpec("B")},
            scheduler="fifo",
        )
    )
    h.request("a1", "A")
    h.request("a2", "A")
    h.cancel("a2")  # cancelled while waiting on the swap
    h.exited("A", "boom")  # a1 fails
    assert h.router.scheduler.snapshot()["reserved"] == {}
    h.request("a3", "A")
    h.request("a4", "A")
    h.ready("A")
    h.finish_all()
    assert h.router.scheduler.snapshot()["reserved"] == {}
    assert h.router.scheduler.snapshot()["in_flight"] == {}


def test_grant_to_a_caller_that_is_gone_releases_the_reservation() -> None:
    h = Harness(RoutingSpec(models={"A": ModelSpec("A", concurrency_limit=1)}, scheduler="fifo"))
    h.request("a1", "A")
    h.host.gone.add("a1")  # the caller left without the cancel reaching the core yet
    h.ready("A")
    assert h.host.granted == []
    assert h.router.in_flight() == {}
    h.request("a2", "A")
    assert h.host.granted_ids() == ["a2"]


def test_unknown_model_is_rejected_not_found() -> None:
    h = fifo("A")
    h.request("x", "nope")
    assert h.host.error_of("x") is ErrorKind.NOT_FOUND
    assert h.host.spawned == []


# ---------------------------------------------------------------------- dispatch


def test_request_for_a_model_being_loaded_joins_the_swap_without_a_second_spawn() -> None:
    h = fifo("A")
    h.request("a1", "A")
    h.request("a2", "A")
    h.request("a3", "A")
    assert h.host.spawned == [("A", 1)]
    assert len(swaps_started(h)) == 1
    h.ready("A")
    assert h.host.granted_ids() == ["a1", "a2", "a3"]


def test_ready_model_with_nothing_to_evict_is_served_on_the_fast_path() -> None:
    h = fifo("A")
    h.request("a1", "A")
    h.ready("A")
    h.request("a2", "A")  # a1 still in flight
    assert h.host.granted_ids() == ["a1", "a2"]
    assert len(swaps_started(h)) == 1


class _FrozenEffects:
    """Effects whose world never moves: a swap once started stays in progress."""

    def __init__(self, states: dict[str, ProcessState]) -> None:
        self.states = states
        self.granted: list[Request] = []
        self.swaps: list[tuple[str, tuple[str, ...]]] = []
        self.queue: list[Request] = []

    def now(self) -> float:
        return 0.0

    def model_state(self, model: str) -> ProcessState | None:
        return self.states.get(model)

    def running_models(self) -> list[str]:
        return sorted(m for m, s in self.states.items() if s is not ProcessState.STOPPED)

    def start_swap(self, model: str, evict: Sequence[str]) -> None:
        self.swaps.append((model, tuple(evict)))

    def cancel_swap(self, model: str) -> None:
        raise AssertionError("not expected")

    def grant_error(self, request: Request, error: RequestError) -> None:
        raise AssertionError(f"unexpected error for {request}: {error}")

    def grant_serve(self, request: Request) -> bool:
        self.granted.append(request)
        return True

    def stop_processes(self, models: Sequence[str], token: Hashable) -> None:
        raise AssertionError("not expected")

    def queue_changed(self, queue: Sequence[Request]) -> None:
        self.queue = list(queue)

    def call_at(self, when: float, key: Hashable) -> TimerHandle:
        return ManualClock().call_at(when, key)


def test_quirk2_ready_model_still_queues_while_a_swap_in_progress_plans_to_evict_it() -> None:
    spec = RoutingSpec.simple("A", "B", "C", scheduler="fifo")
    effects = _FrozenEffects({"A": ProcessState.READY, "B": ProcessState.STOPPED})
    sched = FifoScheduler(spec, effects, TableSwapper({"B": ["A"]}))
    sched.on_request(Request("b1", "B"))
    assert effects.swaps == [("B", ("A",))]
    a1 = Request("a1", "A")
    sched.on_request(a1)
    assert effects.granted == [], "A is ready but B's swap is about to stop it"
    assert effects.queue == [a1]
    sched.on_swap_done("B", None)
    assert [r.id for r in effects.granted] == ["b1", "a1"]


def test_ready_model_is_not_fast_pathed_while_a_co_resident_model_must_go() -> None:
    """Groups are asymmetric: non-exclusive B may load next to exclusive A, but the next request
    for A evicts B first (no fast path while A's eviction set is not empty)."""
    groups = (
        GroupSpec("hard", ("A",), swap=True, exclusive=True),
        GroupSpec("soft", ("B",), swap=True, exclusive=False),
    )
    h = fifo("A", "B", groups=groups)
    h.request("a1", "A")
    h.ready("A")
    h.finish("a1")
    h.request("b1", "B")
    h.ready("B")
    h.finish("b1")
    assert h.router.running_models() == ["A", "B"]
    h.request("a2", "A")
    assert h.host.granted_ids() == ["a1", "b1"], "A waits until B is gone"
    assert h.host.terminated_models() == ["B"]
    h.exited("B")
    assert h.host.granted_ids() == ["a1", "b1", "a2"]
    assert h.host.spawned_models() == ["A", "B"], "A was never restarted"


def test_never_evicts_a_model_with_requests_in_flight() -> None:
    h = fifo("A", "B")
    h.request("a1", "A")
    h.ready("A")
    h.request("b1", "B")
    assert h.host.terminated == []
    assert h.router.scheduler.snapshot()["queued"] == 1
    h.request("a2", "A")  # fast path still open for A
    h.finish("a1")
    assert h.host.terminated == [], "a2 is still in flight"
    h.finish("a2")
    assert h.host.terminated == [("A", 1)]
    h.exited("A")
    h.ready("B")
    assert h.host.granted_ids() == ["a1", "a2", "b1"]


def test_disjoint_swaps_run_in_parallel() -> None:
    groups = (
        GroupSpec("g1", ("A", "B"), swap=True, exclusive=False),
        GroupSpec("g2", ("C", "D"), swap=True, exclusive=False),
    )
    h = fifo("A", "B", "C", "D", groups=groups)
    h.request("a1", "A")
    h.request("c1", "C")
    assert h.host.spawned == [("A", 1), ("C", 1)], "both load at once"
    h.ready("A")
    h.ready("C")
    h.request("b1", "B")  # evicts A only
    h.request("d1", "D")  # evicts C only
    h.finish("a1")
    h.finish("c1")
    assert swaps_started(h)[2:] == [("B", ("A",)), ("D", ("C",))]
    assert sorted(h.host.terminated) == [("A", 1), ("C", 1)]
    h.exited("A")
    h.exited("C")
    assert h.host.spawned[2:] == [("B", 1), ("D", 1)]


def test_overlapping_evict_sets_serialize() -> None:
    swapper = TableSwapper({"B": ["A"], "C": ["A"]})
    h = with_swapper(RoutingSpec.simple("A", "B", "C", scheduler="fifo"), swapper)
    h.request("a1", "A")
    h.ready("A")
    h.finish("a1")
    h.request("b1", "B")
    h.request("c1", "C")  # also wants A gone: collides with B's swap
    assert swapper.started == [("A", ()), ("B", ("A",))]
    assert h.router.scheduler.snapshot()["queued"] == 1
    h.exited("A")
    h.ready("B")
    # B's swap is done; A is already gone, so C starts with nothing to evict.
    assert swapper.started[-1] == ("C", ())
    h.ready("C")
    assert h.host.granted_ids() == ["a1", "b1", "c1"]


def test_a_swap_never_evicts_the_target_of_another_swap_in_progress() -> None:
    h = fifo("A", "B")
    h.request("a1", "A")
    h.request("b1", "B")  # A is loading: B would evict it, so B waits
    assert h.host.spawned == [("A", 1)]
    assert h.host.terminated == []
    h.ready("A")
    h.finish("a1")
    h.exited("A")
    h.ready("B")
    assert h.host.granted_ids() == ["a1", "b1"]


def test_cold_arrivals_abcabc_are_served_aabbcc() -> None:
    h = fifo("A", "B", "C")
    for i, model in enumerate("ABCABC"):
        h.request(f"{model}{i}", model)
    h.settle()
    assert h.host.granted_ids() == ["A0", "A3", "B1", "B4", "C2", "C5"]
    assert h.host.spawned_models() == ["A", "B", "C"]


# ---------------------------------------------------------------------- queue order and drains


def test_priority_orders_the_queue_higher_first_ties_in_arrival_order() -> None:
    h = fifo(
        "A", "B", "C", "D", scheduler_settings={"fifo": {"priority": {"C": 5, "D": 5, "B": -1}}}
    )
    h.request("a1", "A")
    h.ready("A")
    for rid, model in [("b1", "B"), ("c1", "C"), ("d1", "D"), ("b2", "B"), ("c2", "C")]:
        h.request(rid, model)
    assert [r.id for r in h.host.queue] == ["c1", "d1", "c2", "b1", "b2"]
    h.settle()
    assert h.host.granted_ids() == ["a1", "c1", "c2", "d1", "b1", "b2"]


def test_queue_positions_are_reported_as_they_change() -> None:
    h = fifo("A", "B", "C")
    h.request("a1", "A")
    h.ready("A")
    h.request("b1", "B")
    h.request("c1", "C")
    assert [r.id for r in h.host.queue] == ["b1", "c1"]
    h.cancel("b1")
    assert [r.id for r in h.host.queue] == ["c1"]
    h.finish("a1")
    assert h.host.queue == []


def test_queue_drains_when_a_swap_finishes() -> None:
    h = fifo("A", "B")
    h.request("a1", "A")
    h.request("b1", "B")  # collides with A's swap
    h.host.gone.add("a1")
    h.ready("A")  # a1's caller is gone: A has nothing in flight, so the drain starts B at once
    assert h.host.terminated == [("A", 1)]


def test_queue_drains_when_the_last_request_of_a_model_finishes() -> None:
    h = fifo("A", "B")
    h.request("a1", "A")
    h.ready("A")
    h.request("a2", "A")
    h.request("b1", "B")
    h.finish("a1")
    assert h.host.terminated == []
    h.finish("a2")
    assert h.host.terminated == [("A", 1)]


def test_queue_drains_after_an_unload() -> None:
    swapper = TableSwapper({"B": ["A"]})
    h = with_swapper(RoutingSpec.simple("A", "B", "C", scheduler="fifo"), swapper)
    h.request("a1", "A")
    h.ready("A")
    h.request("b1", "B")  # A busy: queued
    h.unload("C", token="u")  # unrelated unload still re-examines the queue
    assert h.host.unloads_done == ["u"]
    assert h.host.spawned == [("A", 1)]
    h.finish("a1")
    h.exited("A")
    h.ready("B")
    assert h.host.granted_ids() == ["a1", "b1"]


def test_multiple_queued_requests_are_promoted_in_one_drain() -> None:
    swapper = TableSwapper({"B": ["A"], "C": ["A"]})
    h = with_swapper(RoutingSpec.simple("A", "B", "C", scheduler="fifo"), swapper)
    h.request("a1", "A")
    h.ready("A")
    h.request("b1", "B")  # both would evict the busy A
    h.request("c1", "C")
    assert [r.id for r in h.host.queue] == ["b1", "c1"]
    h.unload("A", token="u")  # A goes, but a1 is still in flight: both stay queued
    assert [r.id for r in h.host.queue] == ["b1", "c1"]
    h.exited("A")
    h.finish("a1", error="aborted")  # A idle and gone: one drain promotes both
    assert [m for m, _ in h.host.spawned] == ["A", "B", "C"]
    assert h.host.queue == []


# ---------------------------------------------------------------------- cancel


def test_cancel_removes_a_queued_request_and_releases_its_reservation() -> None:
    h = Harness(
        RoutingSpec(
            models={"A": ModelSpec("A"), "B": ModelSpec("B", concurrency_limit=1)},
            scheduler="fifo",
        )
    )
    h.request("a1", "A")
    h.ready("A")
    h.request("b1", "B")
    h.cancel("b1")
    assert h.router.scheduler.snapshot()["queued"] == 0
    h.request("b2", "B")  # the slot is free again
    assert h.host.error_of("b2") is None
    h.finish("a1")
    h.settle()
    assert h.host.granted_ids() == ["a1", "b2"]
    assert h.host.answers.get("b1") is None, "a cancelled request is never answered"


def test_cancel_of_a_swap_waiter_with_nothing_queued_lets_the_load_finish() -> None:
    h = fifo("A", "B")
    h.request("a1", "A")
    h.cancel("a1")
    assert h.state("A") == "starting"
    h.ready("A")
    assert h.state("A") == "ready"
    assert h.host.granted == []
    h.request("a2", "A")
    assert h.host.granted_ids() == ["a2"]


def test_cancel_of_the_last_swap_waiter_aborts_the_load_when_other_work_is_queued() -> None:
    h = fifo("A", "B")
    h.request("a1", "A")
    h.request("b1", "B")  # queued behind A's load
    h.cancel("a1")
    assert h.state("A") == "stopping", "nobody waits for A: its load is aborted"
    assert h.host.terminated == [("A", 1)]
    h.exited("A")
    assert h.host.spawned == [("A", 1), ("B", 1)]
    h.ready("B")
    assert h.host.granted_ids() == ["b1"]
    assert h.host.rejected == []


def test_cancel_loads_false_lets_the_abandoned_load_finish_as_llama_swap_does() -> None:
    """``fifo.cancelLoads: false``: llama-swap's own FIFO, which never aborts a load (#727)."""
    h = fifo("A", "B", scheduler_settings={"fifo": {"cancelLoads": False}})
    h.request("a1", "A")
    h.request("b1", "B")  # queued behind A's load
    h.cancel("a1")
    assert h.state("A") == "starting", "the load nobody waits for runs to its end"
    assert h.host.terminated == []
    h.ready("A")
    assert h.host.granted == [], "nobody is served by the finished load"
    h.settle()
    assert h.host.spawned == [("A", 1), ("B", 1)]
    assert h.host.granted_ids() == ["b1"]
    assert h.host.rejected == []


def test_cancel_loads_is_a_boolean_and_defaults_on() -> None:
    assert FifoSettings.parse({}, ["A"]).cancel_loads is True
    assert FifoSettings.parse({"cancelLoads": False}, ["A"]).cancel_loads is False
    with pytest.raises(ValueError, match=r"fifo\.cancelLoads: must be true or false, got 'no'"):
        FifoSettings.parse({"cancelLoads": "no"}, ["A"])
    with pytest.raises(ValueError, match=r"fifo\.priority\.A: must be an integer, got 'x'"):
        FifoSettings.parse({"priority": {"A": "x"}}, ["A"])


def test_an_aborted_load_fails_its_waiters_as_aborted_not_failed() -> None:
    """The kind travels typed from the process machine: nothing parses a message prefix."""
    h = fifo("A", "B")
    h.request("a1", "A")
    h.unload("A")
    assert h.host.error_of("a1") is ErrorKind.UNLOADED
    h.exited("A")
    h.request("a2", "A")
    h.router.processes["A"].stop(1.0, "evicted by hand")  # as an eviction would
    h.router.handle(TimerFired("nobody", None))  # drives the router's queue
    assert h.host.error_of("a2") is ErrorKind.LOAD_ABORTED
    assert "load aborted: evicted by hand" in h.host.rejected[-1][1].message


def test_an_abandoned_load_is_stopped_even_when_the_queued_work_would_not_evict_it() -> None:
    groups = (
        GroupSpec("soft", ("A",), swap=True, exclusive=False),
        GroupSpec("pair", ("C", "D"), swap=True, exclusive=False),
    )
    h = fifo("A", "C", "D", groups=groups)
    h.request("c1", "C")
    h.ready("C")
    h.request("d1", "D")  # queued: evicting C would hit c1 in flight
    h.request("a1", "A")  # loads alongside
    h.cancel("a1")
    assert h.state("A") == "stopping"
    assert h.host.terminated_models() == ["A"]
    h.exited("A")
    assert h.state("A") == "stopped"
    h.finish("c1")
    h.settle()
    assert h.host.granted_ids() == ["c1", "d1"]


def test_cancel_of_one_of_several_swap_waiters_keeps_the_load() -> None:
    h = fifo("A", "B")
    h.request("a1", "A")
    h.request("a2", "A")
    h.request("b1", "B")
    h.cancel("a1")
    assert h.state("A") == "starting"
    h.ready("A")
    assert h.host.granted_ids() == ["a2"]


def test_cancel_after_grant_is_a_no_op() -> None:
    h = fifo("A")
    h.request("a1", "A")
    h.ready("A")
    h.cancel("a1")
    assert h.router.in_flight() != {}
    h.finish("a1")
    assert h.router.scheduler.snapshot()["reserved"] == {}


# ---------------------------------------------------------------------- unload and shutdown


def test_unload_fails_waiters_and_queued_and_answers_only_after_processes_stopped() -> None:
    h = fifo("A", "B", "C")
    h.request("a1", "A")
    h.ready("A")
    h.finish("a1")
    h.request("b1", "B")  # swap B evicting A
    h.request("b2", "B")  # joins
    h.request("c1", "C")  # queued behind B
    h.unload("B", "C", token="bc")
    for rid in ("b1", "b2", "c1"):
        assert h.host.error_of(rid) is ErrorKind.UNLOADED
    assert h.host.queue == []
    assert h.host.unloads_done == ["bc"], "B and C never started: nothing to wait for"
    h.unload("A", token="a")
    assert h.host.unloads_done == ["bc"], "A is still stopping"
    h.exited("A")
    assert h.host.unloads_done == ["bc", "a"]
    assert h.host.spawned_models() == ["A"], "B's swap is gone with its waiters"


def test_unload_of_a_serving_model_answers_after_exit_and_keeps_in_flight_until_serve_done() -> (
    None
):
    h = fifo("A")
    h.request("a1", "A")
    h.ready("A")
    h.unload(token="all")
    assert h.state("A") == "stopping"
    assert h.host.unloads_done == []
    h.exited("A", "terminated")
    assert h.host.unloads_done == ["all"]
    assert h.host.aborted == [("A", "model stopped: terminated")]
    assert h.router.scheduler.snapshot()["in_flight"] == {"A": 1}
    h.finish("a1", error="aborted")
    assert h.router.scheduler.snapshot()["in_flight"] == {}


def test_unload_of_a_stopped_model_is_answered_at_once() -> None:
    h = fifo("A")
    h.unload("A", token=7)
    assert h.host.unloads_done == [7]


def test_concurrent_unloads_with_the_same_token_are_each_answered() -> None:
    h = fifo("A", "B", groups=co_resident("A", "B"))
    h.request("a1", "A")
    h.request("b1", "B")
    h.ready("A")
    h.ready("B")
    h.finish_all()
    h.unload("A", token=None)
    h.unload("B", token=None)
    h.exited("A")
    assert h.host.unloads_done == [None]
    h.exited("B")
    assert h.host.unloads_done == [None, None]


def test_shutdown_fails_everything_and_completes_once_all_processes_are_down() -> None:
    h = fifo("A", "B", "C")
    h.request("a1", "A")
    h.ready("A")
    h.request("a2", "A")
    h.request("b1", "B")  # queued
    h.shutdown()
    assert h.host.error_of("b1") is ErrorKind.SHUTTING_DOWN
    assert h.host.shutdown_done == 0
    h.request("c1", "C")
    assert h.host.error_of("c1") is ErrorKind.SHUTTING_DOWN
    h.exited("A")
    assert h.host.shutdown_done == 1
    assert set(h.router.process_states().values()) == {ProcessState.SHUTDOWN}
    h.finish_all()
    assert h.router.scheduler.snapshot()["reserved"] == {}
    h.shutdown()
    assert h.host.shutdown_done == 1, "shutdown is answered once"
    h.unload(token="late")
    assert h.host.unloads_done == ["late"]


def test_shutdown_fails_swap_waiters() -> None:
    h = fifo("A")
    h.request("a1", "A")
    h.shutdown()
    assert h.host.error_of("a1") is ErrorKind.SHUTTING_DOWN
    h.ready("A")  # too late: the start was aborted
    assert h.host.granted == []
    h.exited("A")
    assert h.host.shutdown_done == 1


@pytest.mark.parametrize(("timeout", "window"), [(None, 50.0), (0.0, 50.0), (3.0, 3.0)])
def test_shutdown_kills_after_its_budget_or_health_check_timeout(
    timeout: float | None, window: float
) -> None:
    from llamaswap.core import Shutdown

    h = fifo("A", health_check_timeout=50.0)
    h.request("a1", "A")
    h.ready("A")
    h.router.handle(Shutdown(timeout))
    h.advance(window - 0.5)
    assert h.host.killed == []
    h.advance(0.5)
    assert h.host.killed == [("A", 1)]


# ---------------------------------------------------------------------- batching, generalised


@settings(max_examples=150, deadline=None, derandomize=True, database=None)
@given(
    arrivals=st.lists(st.sampled_from("ABCD"), min_size=1, max_size=25),
    priority=st.dictionaries(st.sampled_from("ABCD"), st.integers(-2, 2)),
)
def test_cold_burst_is_served_in_batches_by_priority_then_first_arrival(
    arrivals: list[str], priority: dict[str, int]
) -> None:
    """All models cold, one at a time: each model's requests go together, models ordered by
    priority (higher first) and then by their first arrival; the first model loads first
    whatever its priority (nothing is queued yet when it arrives)."""
    models = {m: ModelSpec(m, concurrency_limit=100) for m in "ABCD"}
    h = Harness(
        RoutingSpec(models, scheduler="fifo", scheduler_settings={"fifo": {"priority": priority}})
    )
    for i, model in enumerate(arrivals):
        h.request(f"{model}{i}", model)
    h.settle()
    first, rest = arrivals[0], list(dict.fromkeys(arrivals[1:]))
    rest = [m for m in rest if m != first]
    rest.sort(key=lambda m: -priority.get(m, 0))  # stable: ties keep first-arrival order
    expected = [f"{m}{i}" for m in [first, *rest] for i, a in enumerate(arrivals) if a == m]
    assert h.host.granted_ids() == expected
    assert h.host.spawned_models() == [first, *rest], "one load per model"
