"""``serial``: exact arrival order, one request in flight, one model in memory."""

from hypothesis import given, settings
from hypothesis import strategies as st
from recording_host import Harness

from llamaswap.core import ErrorKind, GroupSpec, ModelSpec, RoutingSpec
from llamaswap.core.process import ProcessState


def serial(*models: str, **kwargs: object) -> Harness:
    return Harness(RoutingSpec.simple(*models, scheduler="serial", **kwargs))  # type: ignore[arg-type]


def test_serves_requests_in_exact_arrival_order_with_a_load_per_switch() -> None:
    h = serial("A", "B", "C")
    for i, model in enumerate("ABCABC"):
        h.request(f"{model}{i}", model)
    h.settle()
    assert h.host.granted_ids() == ["A0", "B1", "C2", "A3", "B4", "C5"]
    assert h.host.spawned_models() == ["A", "B", "C", "A", "B", "C"]


def test_at_most_one_request_in_flight_even_for_the_same_model() -> None:
    h = serial("A")
    h.request("a1", "A")
    h.request("a2", "A")
    h.ready("A")
    assert h.host.granted_ids() == ["a1"]
    assert len(h.router.in_flight()) == 1
    h.finish("a1")
    assert h.host.granted_ids() == ["a1", "a2"]
    assert h.host.spawned == [("A", 1)], "same model, no reload"


def test_ready_model_serves_the_next_request_without_a_swap() -> None:
    h = serial("A")
    h.request("a1", "A")
    h.ready("A")
    h.finish("a1")
    h.request("a2", "A")
    assert h.host.granted_ids() == ["a1", "a2"]
    assert h.host.spawned == [("A", 1)]


def test_never_reorders_same_model_requests_around_other_models() -> None:
    h = serial("A", "B")
    h.request("a1", "A")
    h.ready("A")
    h.request("b1", "B")
    h.request("a2", "A")  # A is loaded, but b1 came first
    h.finish("a1")
    assert h.host.granted_ids() == ["a1"]
    assert h.host.terminated == [("A", 1)]
    h.settle()
    assert h.host.granted_ids() == ["a1", "b1", "a2"]


def test_switching_evicts_every_other_model_even_when_groups_allow_co_residency() -> None:
    groups = (
        GroupSpec("free", ("A", "B"), swap=False, exclusive=False),
        GroupSpec("pinned", ("C",), swap=False, exclusive=False, persistent=True),
    )
    h = serial("A", "B", "C", groups=groups)
    h.request("a1", "A")
    h.ready("A")
    h.finish("a1")
    h.request("b1", "B")
    assert h.host.terminated == [("A", 1)]
    assert h.host.spawned_models() == ["A"], "B starts only once A is gone"
    h.exited("A")
    assert h.host.spawned_models() == ["A", "B"]
    h.ready("B")
    h.finish("b1")
    h.request("c1", "C")  # persistent groups get no special treatment either
    assert h.host.terminated[-1] == ("B", 1)


def test_waits_for_a_model_still_stopping_before_loading_the_next() -> None:
    h = Harness(
        RoutingSpec(models={"A": ModelSpec("A", ttl=5.0), "B": ModelSpec("B")}, scheduler="serial")
    )
    h.request("a1", "A")
    h.ready("A")
    h.finish("a1")
    h.advance(5.0)
    assert h.state("A") == "stopping"
    h.request("b1", "B")
    assert h.host.spawned_models() == ["A"]
    h.exited("A")
    h.ready("B")
    assert h.host.granted_ids() == ["a1", "b1"]


def test_cancelled_request_never_triggers_a_load() -> None:
    h = serial("A", "B")
    h.request("a1", "A")
    h.ready("A")
    h.request("b1", "B")
    h.cancel("b1")
    h.finish("a1")
    assert h.host.spawned_models() == ["A"]
    assert h.host.terminated == []
    assert h.host.answers.get("b1") is None


def test_failed_load_fails_every_queued_request_for_that_model_with_one_spawn() -> None:
    h = serial("A", "B")
    h.request("a1", "A")
    h.request("b1", "B")
    h.request("a2", "A")
    h.request("a3", "A")
    h.exited("A", "missing gguf")
    assert [h.host.error_of(r) for r in ("a1", "a2", "a3")] == [ErrorKind.LOAD_FAILED] * 3
    assert h.host.spawned_models() == ["A", "B"], "one doomed load, not three"
    assert [r.id for r in h.host.queue] == ["b1"]
    h.ready("B")
    assert h.host.granted_ids() == ["b1"]


def test_health_timeout_counts_as_a_failed_load_and_the_rest_continue_in_order() -> None:
    h = serial("A", "B", "C", health_check_timeout=20.0)
    h.request("a1", "A")
    h.request("b1", "B")
    h.request("a2", "A")
    h.request("c1", "C")
    h.advance(20.0)
    assert h.host.error_of("a1") is ErrorKind.LOAD_FAILED
    assert h.host.error_of("a2") is ErrorKind.LOAD_FAILED
    assert h.host.spawned_models() == ["A"], "B waits until A is really gone"
    h.exited("A", "terminated")
    h.settle()
    assert h.host.granted_ids() == ["b1", "c1"]


def test_cancel_of_the_only_request_for_a_loading_model_aborts_it_when_others_wait() -> None:
    h = serial("A", "B")
    h.request("a1", "A")
    h.request("b1", "B")
    h.cancel("a1")
    assert h.state("A") == "stopping"
    assert h.host.spawned_models() == ["A"]
    h.exited("A")
    assert h.host.spawned_models() == ["A", "B"]
    h.ready("B")
    assert h.host.granted_ids() == ["b1"]
    assert h.host.rejected == []


def test_cancel_during_a_load_with_nothing_else_waiting_lets_the_load_finish() -> None:
    h = serial("A")
    h.request("a1", "A")
    h.cancel("a1")
    assert h.state("A") == "starting"
    h.ready("A")
    assert h.state("A") == "ready"
    assert h.host.granted == []


def test_cancel_of_the_head_aborts_its_load_when_the_next_head_needs_another_model() -> None:
    h = serial("A", "B")
    h.request("a1", "A")
    h.request("b1", "B")
    h.request("a2", "A")  # still wants A, but only after b1
    h.cancel("a1")
    assert h.state("A") == "stopping", "A would be evicted for b1 before a2's turn anyway"
    assert h.host.error_of("a2") is None, "an aborted load is not a failed load"
    h.settle()
    assert h.host.granted_ids() == ["b1", "a2"]
    assert h.host.spawned_models() == ["A", "B", "A"]
    assert h.host.rejected == []


def test_a_load_left_without_waiters_is_aborted_when_a_request_for_another_model_arrives() -> None:
    h = serial("A", "B")
    h.request("a1", "A")
    h.cancel("a1")
    assert h.state("A") == "starting", "nobody else waits: the load may finish"
    h.request("b1", "B")
    assert h.state("A") == "stopping", "b1 is next in line: A would only be evicted again"
    h.exited("A")
    h.ready("B")
    assert h.host.granted_ids() == ["b1"]
    assert h.host.rejected == []


def test_a_load_left_without_waiters_serves_a_new_request_for_the_same_model() -> None:
    h = serial("A")
    h.request("a1", "A")
    h.cancel("a1")
    h.request("a2", "A")
    assert h.state("A") == "starting"
    h.ready("A")
    assert h.host.granted_ids() == ["a2"]
    assert h.host.spawned == [("A", 1)]


def test_cancel_of_the_head_keeps_the_load_when_the_next_head_wants_the_same_model() -> None:
    h = serial("A", "B")
    h.request("a1", "A")
    h.request("a2", "A")
    h.request("b1", "B")
    h.cancel("a1")
    assert h.state("A") == "starting"
    h.ready("A")
    assert h.host.granted_ids() == ["a2"]


def test_cancel_behind_the_head_does_not_touch_the_load() -> None:
    h = serial("A", "B")
    h.request("a1", "A")
    h.request("b1", "B")
    h.cancel("b1")
    assert h.state("A") == "starting"
    h.ready("A")
    assert h.host.granted_ids() == ["a1"]
    h.finish("a1")
    assert h.host.spawned_models() == ["A"]


def test_cancel_of_a_load_still_evicting_aborts_before_spawning() -> None:
    h = serial("A", "B", "C")
    h.request("a1", "A")
    h.ready("A")
    h.finish("a1")
    h.request("b1", "B")  # evicting A
    h.request("c1", "C")
    h.cancel("b1")
    h.exited("A")
    assert h.host.spawned_models() == ["A", "C"], "B is never loaded"


def test_grant_to_a_gone_caller_moves_on_to_the_next_request() -> None:
    h = serial("A")
    h.request("a1", "A")
    h.request("a2", "A")
    h.host.gone.add("a1")
    h.ready("A")
    assert h.host.granted_ids() == ["a2"]
    assert h.router.scheduler.snapshot()["reserved"] == {"A": 1}


def test_admission_limit_counts_queued_and_serving() -> None:
    h = Harness(RoutingSpec(models={"A": ModelSpec("A", concurrency_limit=2)}, scheduler="serial"))
    h.request("a1", "A")
    h.request("a2", "A")
    h.request("a3", "A")
    assert h.host.error_of("a3") is ErrorKind.OVER_LIMIT
    h.ready("A")
    h.finish("a1")
    h.request("a4", "A")
    assert h.host.error_of("a4") is None


def test_unknown_model_is_rejected_not_found() -> None:
    h = serial("A")
    h.request("x", "X")
    assert h.host.error_of("x") is ErrorKind.NOT_FOUND


def test_crash_while_serving_lets_the_next_request_start_the_model_again() -> None:
    h = serial("A")
    h.request("a1", "A")
    h.request("a2", "A")
    h.ready("A")
    h.exited("A", "segfault")
    assert h.host.aborted == [("A", "upstream process exited unexpectedly: segfault")]
    h.finish("a1", error="upstream crashed")
    assert h.host.spawned == [("A", 1), ("A", 2)]
    h.ready("A")
    assert h.host.granted_ids() == ["a1", "a2"]


def test_queue_positions_include_the_request_being_loaded_for() -> None:
    h = serial("A", "B")
    h.request("a1", "A")
    h.request("b1", "B")
    assert [r.id for r in h.host.queue] == ["a1", "b1"]
    h.ready("A")
    assert [r.id for r in h.host.queue] == ["b1"]


def test_queue_positions_are_reported_after_a_cancel() -> None:
    h = serial("A", "B", "C")
    h.request("a1", "A")
    h.ready("A")
    h.request("b1", "B")
    h.request("c1", "C")
    h.cancel("b1")
    assert [r.id for r in h.host.queue] == ["c1"]


def test_unload_fails_queued_requests_for_its_targets_and_the_rest_continue() -> None:
    h = serial("A", "B", "C")
    h.request("a1", "A")
    h.ready("A")
    h.request("b1", "B")
    h.request("c1", "C")
    h.request("b2", "B")
    h.unload("B", token="u")
    assert h.host.unloads_done == ["u"]
    assert h.host.error_of("b1") is ErrorKind.UNLOADED
    assert h.host.error_of("b2") is ErrorKind.UNLOADED
    h.finish("a1")
    h.settle()
    assert h.host.granted_ids() == ["a1", "c1"]


def test_unload_of_the_model_being_loaded_fails_its_requests_and_answers_after_stop() -> None:
    h = serial("A", "B")
    h.request("a1", "A")
    h.request("b1", "B")
    h.unload("A", token="u")
    assert h.host.error_of("a1") is ErrorKind.UNLOADED
    assert h.host.unloads_done == []
    assert h.host.spawned_models() == ["A"]
    h.exited("A")
    assert h.host.unloads_done == ["u"]
    h.ready("B")
    assert h.host.granted_ids() == ["b1"]


def test_unload_of_the_serving_model_keeps_one_in_flight_until_serve_done() -> None:
    h = serial("A", "B")
    h.request("a1", "A")
    h.ready("A")
    h.request("b1", "B")
    h.unload("A", token="a")
    h.exited("A")
    assert h.host.unloads_done == ["a"]
    assert h.host.spawned_models() == ["A"], "a1 is still being answered"
    h.finish("a1", error="aborted")
    h.ready("B")
    assert h.host.granted_ids() == ["a1", "b1"]


def test_shutdown_fails_everything_queued_and_completes_when_processes_are_down() -> None:
    h = serial("A", "B")
    h.request("a1", "A")
    h.ready("A")
    h.request("b1", "B")
    h.request("a2", "A")
    h.shutdown()
    assert h.host.error_of("b1") is ErrorKind.SHUTTING_DOWN
    assert h.host.error_of("a2") is ErrorKind.SHUTTING_DOWN
    h.finish("a1")
    assert h.host.spawned_models() == ["A"]
    assert h.host.shutdown_done == 0
    h.exited("A")
    assert h.host.shutdown_done == 1
    assert set(h.router.process_states().values()) == {ProcessState.SHUTDOWN}
    assert h.router.scheduler.snapshot() == {
        "queued": 0,
        "swapping": [],
        "in_flight": {},
        "reserved": {},
    }


def test_shutdown_during_a_load_fails_the_head() -> None:
    h = serial("A")
    h.request("a1", "A")
    h.shutdown()
    assert h.host.error_of("a1") is ErrorKind.SHUTTING_DOWN
    h.exited("A")
    assert h.host.shutdown_done == 1


def test_snapshot_reports_the_swap_and_the_request_in_flight() -> None:
    h = serial("A", "B")
    h.request("a1", "A")
    h.request("b1", "B")
    assert h.router.scheduler.snapshot()["swapping"] == ["A"]
    h.ready("A")
    snap = h.router.scheduler.snapshot()
    assert (snap["swapping"], snap["in_flight"], snap["queued"]) == ([], {"A": 1}, 1)


@settings(max_examples=150, deadline=None, derandomize=True, database=None)
@given(arrivals=st.lists(st.sampled_from("ABC"), min_size=1, max_size=25))
def test_any_cold_burst_is_served_in_arrival_order_with_one_load_per_model_change(
    arrivals: list[str],
) -> None:
    h = Harness(
        RoutingSpec({m: ModelSpec(m, concurrency_limit=100) for m in "ABC"}, scheduler="serial")
    )
    for i, model in enumerate(arrivals):
        h.request(f"r{i}", model)
    h.settle()
    assert h.host.granted_ids() == [f"r{i}" for i in range(len(arrivals))]
    changes = [m for k, m in enumerate(arrivals) if k == 0 or arrivals[k - 1] != m]
    assert h.host.spawned_models() == changes
