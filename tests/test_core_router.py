"""Router plumbing: the single event path, Effects edge cases, observations, clock and registry."""

import dataclasses
from collections.abc import Hashable, Mapping

import pytest
from recording_host import Harness, RecordingHost

from llamaswap.core import (
    ErrorKind,
    ManualClock,
    ModelSpec,
    Request,
    RequestArrived,
    RequestError,
    Router,
    RoutingSpec,
    ServeDone,
    UnloadRequested,
)
from llamaswap.core.admission import Admission
from llamaswap.core.errors import LoadFailure
from llamaswap.core.events import TimerFired
from llamaswap.core.fifo import FifoScheduler
from llamaswap.core.observe import (
    ProcessStateChanged,
    QueueDepth,
    RequestFailed,
    RequestGranted,
    SwapFinished,
    SwapStarted,
)
from llamaswap.core.policies import make_scheduler, scheduler_names
from llamaswap.core.scheduler import Effects, Scheduler
from llamaswap.core.swapper import Swapper


def test_one_request_flows_arrival_swap_start_ready_grant_done_in_that_order() -> None:
    h = Harness(RoutingSpec.simple("A", "B", scheduler="fifo"))
    h.clock.advance(1.0)
    h.request("a1", "A")
    h.clock.advance(2.0)
    h.ready("A")
    h.clock.advance(3.0)
    h.finish("a1")
    flow = [
        (type(o).__name__, o.at, getattr(o, "new", getattr(o, "model", "")))
        for o in h.host.observations
    ]
    assert flow == [
        ("SwapStarted", 1.0, "A"),
        ("ProcessStateChanged", 1.0, "starting"),
        ("ProcessStateChanged", 3.0, "ready"),
        ("SwapFinished", 3.0, "A"),
        ("RequestGranted", 3.0, "A"),
    ]
    # The core keeps its own records (the arrival time is the scheduler's); the host's object is
    # the host's: frozen, and exactly as the host made it.
    assert dataclasses.astuple(h.req("a1")) == ("a1", "A", 0.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        h.req("a1").model = "B"  # type: ignore[misc]
    assert h.router.events_handled == 4  # arrived, ready, swap done (internal), serve done
    assert h.router.in_flight() == {}


def test_observations_cover_failures_and_queue_depth() -> None:
    h = Harness(RoutingSpec.simple("A", "B", scheduler="fifo"))
    h.request("a1", "A")
    h.request("b1", "B")
    h.exited("A", "boom")
    kinds = {type(o) for o in h.host.observations}
    assert {SwapStarted, SwapFinished, ProcessStateChanged, RequestFailed, QueueDepth} <= kinds
    failed = [o for o in h.host.observations if isinstance(o, RequestFailed)]
    assert (failed[0].request_id, failed[0].kind) == ("a1", "load_failed")
    depths = [o.depth for o in h.host.observations if isinstance(o, QueueDepth)]
    assert depths == [1, 0]
    finished = [o for o in h.host.observations if isinstance(o, SwapFinished)]
    assert finished[0].error is not None and "boom" in finished[0].error
    assert not any(isinstance(o, RequestGranted) for o in h.host.observations)


def test_a_host_that_reenters_the_router_is_queued_not_nested() -> None:
    """Hosts must not call handle() from a callback; if one does, the event waits its turn."""

    class EagerHost(RecordingHost):
        router: Router

        def grant(self, request: Request) -> bool:
            took = super().grant(request)
            # Finishes "instantly", re-entrantly. Handled nested, this ServeDone would arrive before
            # the grant is recorded, be ignored, and leak the in-flight count and reservation.
            self.router.handle(ServeDone(request))
            return took

    host = EagerHost()
    h = Harness(RoutingSpec.simple("A", scheduler="fifo"), host=host)
    host.router = h.router
    h.request("a1", "A")
    h.ready("A")
    assert h.router.in_flight() == {}
    assert h.router.processes["A"].in_flight == 0
    assert h.router.scheduler.snapshot()["reserved"] == {}


def test_serve_done_for_an_unknown_or_already_finished_request_is_ignored() -> None:
    h = Harness(RoutingSpec.simple("A", scheduler="fifo"))
    h.router.handle(ServeDone(Request("stranger", "A")))
    h.request("a1", "A")
    h.ready("A")
    h.finish("a1")
    h.finish("a1")
    assert h.router.scheduler.snapshot()["reserved"] == {}
    assert h.router.processes["A"].in_flight == 0


def test_reports_for_unknown_models_are_ignored() -> None:
    from llamaswap.core import ProcessExited, ProcessReady

    h = Harness(RoutingSpec.simple("A"))
    h.router.handle(ProcessReady("nope", 1))
    h.router.handle(ProcessExited("nope", 1))
    assert h.router.process_states() == {"A": h.router.processes["A"].state}


def test_something_that_is_not_an_event_is_refused() -> None:
    h = Harness(RoutingSpec.simple("A"))
    with pytest.raises(TypeError, match="not an event"):
        h.router.handle("hello")


def test_unload_of_unknown_models_is_refused_before_anything_changes() -> None:
    h = Harness(RoutingSpec.simple("A"))
    h.request("a1", "A")
    handled = h.router.events_handled
    with pytest.raises(ValueError, match=r"unknown models \['ghost'\]"):
        h.router.handle(UnloadRequested(("A", "ghost"), "t"))
    assert h.router.events_handled == handled
    assert h.host.rejected == [] and h.host.unloads_done == []
    h.ready("A")
    assert h.host.granted_ids() == ["a1"]


def test_grant_serve_on_a_model_that_is_not_ready_rejects_instead_of_serving() -> None:
    h = Harness(RoutingSpec.simple("A"))
    req = Request("a1", "A")
    assert h.router.grant_serve(req) is False
    assert h.host.error_of("a1") is ErrorKind.LOAD_FAILED
    assert h.host.granted == []


def test_start_swap_after_shutdown_reports_a_failed_swap() -> None:
    seen: list[tuple[str, LoadFailure | None]] = []

    class Spy(FifoScheduler):
        def on_swap_done(self, model: str, failure: LoadFailure | None) -> None:
            seen.append((model, failure))

    def factory(spec: RoutingSpec, router: Router, swapper: Swapper) -> Scheduler:
        return Spy(spec, router, swapper)

    h = Harness(RoutingSpec.simple("A"), scheduler_factory=factory)
    h.shutdown()
    h.router.handle(TimerFired("nobody", None))  # drives the loop; unknown owners are ignored
    h.router.start_swap("A", [])
    h.router.handle(TimerFired("nobody", None))
    assert seen == [("A", LoadFailure(ErrorKind.LOAD_FAILED, "shutting down"))]
    assert h.host.spawned == []


def test_cancel_swap_without_a_swap_is_a_no_op() -> None:
    h = Harness(RoutingSpec.simple("A"))
    h.router.cancel_swap("A")
    assert h.host.terminated == []


class TimerScheduler(FifoScheduler):
    """A policy that uses scheduler timers (as an aging policy would)."""

    fired: list[Hashable]

    def __init__(self, spec: RoutingSpec, effects: Effects, swapper: Swapper) -> None:
        super().__init__(spec, effects, swapper)
        self.fired = []
        self.effects = effects

    def on_request(self, request: Request) -> None:
        self.effects.call_at(self.effects.now() + 5.0, ("aging", request.id))
        super().on_request(request)

    def on_timer(self, key: Hashable) -> None:
        self.fired.append(key)

    def snapshot(self) -> Mapping[str, object]:
        return {**super().snapshot(), "fired": list(self.fired)}


def test_scheduler_timers_come_back_through_the_event_path_and_stop_at_shutdown() -> None:
    h = Harness(RoutingSpec.simple("A"), scheduler_factory=TimerScheduler)
    h.request("a1", "A")
    h.request("a2", "A")
    h.advance(5.0)
    sched = h.router.scheduler
    assert isinstance(sched, TimerScheduler)
    assert sched.fired == [("aging", "a1"), ("aging", "a2")]
    h.request("a3", "A")
    h.shutdown()
    h.advance(10.0)
    assert sched.fired == [("aging", "a1"), ("aging", "a2")], "no scheduler timers after shutdown"


def test_unknown_scheduler_name_lists_the_valid_ones() -> None:
    assert {"fifo", "serial"} <= set(scheduler_names())
    with pytest.raises(ValueError, match=r"unknown scheduler 'lifo'; valid: .*fifo.*serial"):
        Router(RoutingSpec.simple("A", scheduler="lifo"), RecordingHost(), ManualClock())


def test_make_scheduler_builds_the_named_policy() -> None:
    h = Harness(RoutingSpec.simple("A", scheduler="serial"))
    assert h.router.scheduler.name == "serial"
    sched = make_scheduler(RoutingSpec.simple("A"), h.router, h.router.swapper)
    assert sched.name == "fifo"


def test_spec_built_in_code_defaults_to_fifo() -> None:
    assert RoutingSpec(models={}).scheduler == "fifo"
    assert RoutingSpec.simple("A").settings_for("fifo") == {}
    odd = RoutingSpec.simple("A", scheduler_settings={"fifo": "not a mapping"})
    assert odd.settings_for("fifo") == {}
    assert ModelSpec("A", concurrency_limit=0).limit() == 10
    assert ModelSpec("A", concurrency_limit=3).limit() == 3


def test_releasing_a_reservation_never_taken_is_an_invariant_violation() -> None:
    admission = Admission({"A": ModelSpec("A")})
    with pytest.raises(AssertionError, match="does not hold"):
        admission.release("A")


def test_request_error_and_request_print_for_humans() -> None:
    err = RequestError(ErrorKind.OVER_LIMIT, "too many")
    assert str(err) == "too many"
    assert repr(Request("r1", "A")) == "Request('r1', 'A')"


# ---------------------------------------------------------------------- ManualClock


def test_manual_clock_fires_due_timers_in_order_and_skips_cancelled_ones() -> None:
    seen: list[object] = []
    clock = ManualClock(start=10.0, sink=seen.append)
    clock.call_at(15.0, "b")
    t = clock.call_at(12.0, "cancelled")
    clock.call_at(12.0, "a")
    clock.call_at(5.0, "overdue")
    t.cancel()
    t.cancel()
    assert clock.pending() == 3
    assert clock.next_deadline() == 5.0
    clock.advance(2.0)
    assert seen == ["overdue", "a"]
    assert clock.now() == 12.0
    clock.advance_to(11.0)  # never goes backwards
    assert clock.now() == 12.0
    assert clock.fire_next() is True
    assert (seen[-1], clock.now()) == ("b", 15.0)
    assert clock.fire_next() is False
    assert clock.next_deadline() is None


def test_manual_clock_without_a_sink_refuses_to_drop_events() -> None:
    clock = ManualClock()
    clock.call_at(1.0, "x")
    with pytest.raises(RuntimeError, match="no sink"):
        clock.advance(1.0)


def test_router_runs_unchanged_on_any_clock_implementation() -> None:
    """The core only needs now() and call_at(); a trivial clock is enough."""

    class Handle:
        def cancel(self) -> None:
            pass

    class FrozenClock:
        def __init__(self) -> None:
            self.timers: list[tuple[float, object]] = []

        def now(self) -> float:
            return 42.0

        def call_at(self, when: float, event: object) -> Handle:
            self.timers.append((when, event))
            return Handle()

    clock = FrozenClock()
    host = RecordingHost()
    router = Router(
        RoutingSpec(models={"A": ModelSpec("A")}, health_check_timeout=9.0), host, clock
    )
    req = Request("a1", "A")
    router.handle(RequestArrived(req))
    assert dataclasses.astuple(req) == ("a1", "A", 0.0), "the core never writes the host's request"
    assert clock.timers == [(51.0, TimerFired("process", ("A", "health", 1)))]


def test_manual_clock_reports_a_timer_storm_instead_of_hanging() -> None:
    clock = ManualClock()

    def rearm(event: object) -> None:
        clock.call_at(clock.now(), event)  # a buggy policy re-arming "now" forever

    clock.sink = rearm
    clock.call_at(0.0, "tick")
    with pytest.raises(RuntimeError, match="timer storm"):
        clock.advance(1.0)
