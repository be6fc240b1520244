"""ProcessMachine lifecycle, driven directly through a recording port and a manual clock."""

from recording_host import Harness, RecordingPort

from llamaswap.core import ErrorKind, ModelSpec, RoutingSpec
from llamaswap.core.process import ProcessState
from llamaswap.core.spec import START_ABORT_GRACE

S = ProcessState


def test_cold_start_goes_stopped_starting_ready_and_settles_ready() -> None:
    port = RecordingPort()
    m = port.make()
    m.ensure_ready()
    assert m.state is S.STARTING
    assert port.calls == [("spawn", "M", 1)]
    m.on_ready(1)
    assert m.state is S.READY
    assert port.transitions == [("stopped", "starting"), ("starting", "ready")]
    assert port.settles == [(S.READY, None)]


def test_full_cycle_ready_stop_exit_returns_to_stopped() -> None:
    port = RecordingPort()
    m = port.make(unload_timeout=7.0)
    m.ensure_ready()
    m.on_ready(1)
    m.stop(7.0)
    assert m.state is S.STOPPING
    assert port.calls[-1] == ("terminate", "M", 1)
    m.on_exited(1, "terminated")
    assert m.state is S.STOPPED
    assert port.states() == ["starting", "ready", "stopping", "stopped"]
    assert port.settles[-1] == (S.STOPPED, None)
    assert port.clock.pending() == 0, "the kill deadline must be cancelled once the process exited"


def test_ensure_ready_when_ready_settles_at_once_without_spawning() -> None:
    port = RecordingPort()
    m = port.make()
    m.ensure_ready()
    m.on_ready(1)
    m.ensure_ready()
    assert port.verbs() == ["spawn"]
    assert port.settles == [(S.READY, None), (S.READY, None)]


def test_ensure_ready_while_starting_joins_the_start_in_progress() -> None:
    port = RecordingPort()
    m = port.make()
    m.ensure_ready()
    m.ensure_ready()
    assert port.verbs() == ["spawn"]
    assert port.settles == []
    m.on_ready(1)
    assert port.settles == [(S.READY, None)]


def test_ensure_ready_while_stopping_starts_again_after_the_exit() -> None:
    port = RecordingPort()
    m = port.make()
    m.ensure_ready()
    m.on_ready(1)
    m.stop(10.0)
    m.ensure_ready()
    assert m.restart_pending
    assert port.verbs() == ["spawn", "terminate"], "no spawn before the old process is gone"
    m.on_exited(1, "terminated")
    assert m.state is S.STARTING
    assert m.generation == 2
    assert port.calls[-1] == ("spawn", "M", 2)
    m.on_ready(2)
    assert port.settles[-1] == (S.READY, None)


def test_ensure_ready_after_shutdown_settles_with_an_error() -> None:
    port = RecordingPort()
    m = port.make()
    m.shutdown(5.0)
    assert m.state is S.SHUTDOWN
    m.ensure_ready()
    assert port.settles[-1] == (S.SHUTDOWN, "process is shut down")
    assert port.verbs() == []


def test_stale_generation_reports_and_timers_are_ignored() -> None:
    port = RecordingPort()
    m = port.make(health_check_timeout=30.0)
    m.ensure_ready()
    m.on_exited(1, "crashed")  # start failed: generation 1 is gone
    m.ensure_ready()  # generation 2
    assert m.generation == 2
    m.on_ready(1)  # a late report about generation 1
    m.on_exited(1, "late")
    m.on_timer("health", 1)
    assert m.state is S.STARTING
    m.on_ready(2)
    assert m.state is S.READY
    m.on_timer("ttl", 1)
    m.on_timer("kill", 1)
    assert m.state is S.READY
    assert "kill" not in port.verbs()


def test_ready_report_after_the_start_was_aborted_is_ignored() -> None:
    port = RecordingPort()
    m = port.make()
    m.ensure_ready()
    m.stop(5.0, "abort")
    m.on_ready(1)  # the health check passed just as we aborted: too late
    assert m.state is S.STOPPING


def test_health_check_timeout_fails_the_start_and_kills_after_the_grace() -> None:
    port = RecordingPort()
    m = port.make(health_check_timeout=30.0)
    m.ensure_ready()
    port.clock.advance(29.9)
    assert m.state is S.STARTING
    port.clock.advance(0.1)
    assert m.state is S.STOPPING
    assert port.settles == [(S.STOPPING, "health check timed out after 30s")]
    assert port.verbs() == ["spawn", "terminate"]
    port.clock.advance(START_ABORT_GRACE - 0.01)
    assert port.verbs() == ["spawn", "terminate"]
    port.clock.advance(0.01)
    assert port.verbs() == ["spawn", "terminate", "kill"]
    m.on_exited(1, "killed")
    assert m.state is S.STOPPED


def test_exit_while_starting_settles_stopped_with_a_start_failure() -> None:
    port = RecordingPort()
    m = port.make()
    m.ensure_ready()
    m.on_exited(1, "exit status 1")
    assert m.state is S.STOPPED
    assert port.settles == [(S.STOPPED, "upstream failed to start: exit status 1")]
    assert port.clock.pending() == 0, "the health deadline must be cancelled"


def test_crash_while_ready_goes_to_stopped_and_aborts_serving() -> None:
    port = RecordingPort()
    m = port.make(ttl=60.0)
    m.ensure_ready()
    m.on_ready(1)
    m.serve_started()
    m.on_exited(1, "segfault")
    assert m.state is S.STOPPED
    assert port.aborts == ["upstream process exited unexpectedly: segfault"]
    assert port.settles[-1] == (S.STOPPED, None)
    assert port.clock.pending() == 0


def test_ttl_counts_from_the_last_completed_request_not_from_the_grant() -> None:
    port = RecordingPort()
    m = port.make(ttl=10.0)
    m.ensure_ready()
    m.on_ready(1)
    port.clock.advance(3.0)
    m.serve_started()
    port.clock.advance(20.0)  # a long request: the TTL must not count while it runs
    assert m.state is S.READY
    m.serve_finished()  # completed at t=23
    port.clock.advance(9.99)
    assert m.state is S.READY
    port.clock.advance(0.01)
    assert m.state is S.STOPPING
    assert port.clock.now() == 33.0


def test_ttl_does_not_fire_while_a_request_is_in_flight() -> None:
    port = RecordingPort()
    m = port.make(ttl=5.0)
    m.ensure_ready()
    m.on_ready(1)
    m.serve_started()
    m.serve_started()
    m.serve_finished()  # one still in flight
    port.clock.advance(100.0)
    assert m.state is S.READY
    m.serve_finished()
    port.clock.advance(5.0)
    assert m.state is S.STOPPING


def test_ttl_counts_from_ready_when_the_model_was_never_used() -> None:
    """Quirk 9 decided: llama-swap's lastUse=0 unloads an unused model at once; we count from ready."""
    port = RecordingPort()
    m = port.make(ttl=30.0)
    port.clock.advance(1000.0)
    m.ensure_ready()
    port.clock.advance(2.0)
    m.on_ready(1)
    port.clock.advance(29.0)
    assert m.state is S.READY
    port.clock.advance(1.0)
    assert m.state is S.STOPPING


def test_ttl_timer_that_fires_early_is_rearmed_for_the_real_deadline() -> None:
    port = RecordingPort()
    m = port.make(ttl=10.0)
    m.ensure_ready()
    m.on_ready(1)
    m.last_use = 5.0  # a completion the timer did not know about
    port.clock.advance(10.0)
    assert m.state is S.READY
    port.clock.advance(5.0)
    assert m.state is S.STOPPING


def test_zero_ttl_never_unloads() -> None:
    port = RecordingPort()
    m = port.make(ttl=0.0)
    m.ensure_ready()
    m.on_ready(1)
    assert port.clock.pending() == 0
    port.clock.advance(1e6)
    assert m.state is S.READY


def test_stop_sends_sigkill_after_the_graceful_timeout() -> None:
    port = RecordingPort()
    m = port.make()
    m.ensure_ready()
    m.on_ready(1)
    m.stop(8.0)
    port.clock.advance(7.99)
    assert port.verbs() == ["spawn", "terminate"]
    port.clock.advance(0.01)
    assert port.calls[-1] == ("kill", "M", 1)
    assert m.state is S.STOPPING, "still stopping until the host reports the exit"
    m.on_exited(1, "killed")
    assert m.state is S.STOPPED


def test_stop_while_starting_aborts_the_load() -> None:
    port = RecordingPort()
    m = port.make()
    m.ensure_ready()
    m.stop(5.0, "evicted")
    assert m.state is S.STOPPING
    assert port.settles == [(S.STOPPING, "load aborted: evicted")]
    m.on_exited(1, "terminated")
    assert m.state is S.STOPPED


def test_stop_while_stopping_cancels_a_pending_restart() -> None:
    port = RecordingPort()
    m = port.make()
    m.ensure_ready()
    m.on_ready(1)
    m.stop(5.0)
    m.ensure_ready()
    m.stop(5.0, "unload")
    assert not m.restart_pending
    assert port.settles[-1] == (S.STOPPING, "load aborted: unload")
    m.on_exited(1, "terminated")
    assert m.state is S.STOPPED
    assert port.verbs() == ["spawn", "terminate"]


def test_stop_while_stopping_without_restart_waits_for_the_running_stop() -> None:
    port = RecordingPort()
    m = port.make()
    m.ensure_ready()
    m.on_ready(1)
    m.stop(5.0)
    settles = len(port.settles)
    m.stop(5.0)
    assert len(port.settles) == settles
    assert port.verbs() == ["spawn", "terminate"], "no second SIGTERM"


def test_stop_when_stopped_settles_stopped_at_once() -> None:
    port = RecordingPort()
    m = port.make()
    m.stop(5.0)
    assert port.settles == [(S.STOPPED, None)]
    assert port.verbs() == []


def test_exit_during_stop_with_requests_in_flight_aborts_them() -> None:
    port = RecordingPort()
    m = port.make()
    m.ensure_ready()
    m.on_ready(1)
    m.serve_started()
    m.stop(5.0, "unload")
    m.on_exited(1, "terminated")
    assert port.aborts == ["model stopped: terminated"]


def test_shutdown_is_terminal_from_ready() -> None:
    port = RecordingPort()
    m = port.make()
    m.ensure_ready()
    m.on_ready(1)
    m.shutdown(3.0)
    assert m.state is S.STOPPING
    port.clock.advance(3.0)
    assert port.verbs() == ["spawn", "terminate", "kill"]
    m.on_exited(1, "killed")
    assert m.state is S.SHUTDOWN
    assert port.settles[-2:] == [(S.STOPPED, None), (S.SHUTDOWN, None)]
    m.stop(1.0)
    assert port.settles[-1] == (S.SHUTDOWN, None)
    m.ensure_ready()
    assert m.state is S.SHUTDOWN
    assert port.verbs().count("spawn") == 1


def test_shutdown_while_stopping_with_pending_restart_does_not_restart() -> None:
    port = RecordingPort()
    m = port.make()
    m.ensure_ready()
    m.on_ready(1)
    m.stop(5.0)
    m.ensure_ready()
    m.shutdown(5.0)
    m.on_exited(1, "terminated")
    assert m.state is S.SHUTDOWN
    assert port.verbs().count("spawn") == 1


# ---------------------------------------------------------------------- through the router


def test_start_failure_fails_every_waiter_with_load_failed() -> None:
    h = Harness(RoutingSpec.simple("A", scheduler="fifo"))
    h.request("a1", "A")
    h.request("a2", "A")
    h.exited("A", "exit status 127")
    assert h.host.error_of("a1") is ErrorKind.LOAD_FAILED
    assert h.host.error_of("a2") is ErrorKind.LOAD_FAILED
    assert "exit status 127" in h.host.rejected[0][1].message
    assert h.state("A") == "stopped"
    h.request("a3", "A")  # the next request tries again
    assert h.host.spawned == [("A", 1), ("A", 2)]


def test_health_check_timeout_fails_waiters_and_escalates_to_kill() -> None:
    h = Harness(RoutingSpec.simple("A", scheduler="fifo", health_check_timeout=15.0))
    h.request("a1", "A")
    h.advance(15.0)
    assert h.host.error_of("a1") is ErrorKind.LOAD_FAILED
    assert "health check timed out" in h.host.rejected[0][1].message
    assert h.host.terminated == [("A", 1)]
    h.advance(START_ABORT_GRACE)
    assert h.host.killed == [("A", 1)]
    h.exited("A", "killed")
    assert h.state("A") == "stopped"


def test_crash_while_ready_aborts_serving_and_the_next_request_starts_it_again() -> None:
    h = Harness(RoutingSpec.simple("A", scheduler="fifo"))
    h.request("a1", "A")
    h.ready("A")
    assert h.host.granted_ids() == ["a1"]
    h.exited("A", "oom")
    assert h.state("A") == "stopped"
    assert h.host.aborted == [("A", "upstream process exited unexpectedly: oom")]
    h.finish("a1", error="upstream crashed")
    h.request("a2", "A")
    assert h.host.spawned == [("A", 1), ("A", 2)]
    h.ready("A")
    assert h.host.granted_ids() == ["a1", "a2"]


def test_ttl_unload_through_the_router_counts_from_the_completed_request() -> None:
    spec = RoutingSpec(models={"A": ModelSpec("A", ttl=60.0, unload_timeout=4.0)})
    h = Harness(spec)
    h.request("a1", "A")
    h.ready("A")
    h.advance(100.0)  # serving for 100 s
    assert h.state("A") == "ready"
    h.finish("a1")
    h.advance(59.0)
    assert h.state("A") == "ready"
    h.advance(1.0)
    assert h.state("A") == "stopping"
    h.advance(4.0)
    assert h.host.killed == [("A", 1)], "TTL unloads use the model's unloadTimeout"


def test_a_second_stop_with_a_shorter_window_brings_the_kill_forward() -> None:
    """E.g. shutdown (5 s budget) while a swap eviction (120 s window) is still waiting."""
    port = RecordingPort()
    m = port.make()
    m.ensure_ready()
    m.on_ready(1)
    m.stop(120.0, "evicted")
    port.clock.advance(10.0)
    m.shutdown(5.0)
    port.clock.advance(5.0)
    assert port.verbs() == ["spawn", "terminate", "kill"]
    assert port.clock.now() == 15.0
    m.on_exited(1, "killed")
    assert m.state is S.SHUTDOWN


def test_a_second_stop_with_a_longer_window_keeps_the_earlier_kill() -> None:
    port = RecordingPort()
    m = port.make()
    m.ensure_ready()
    m.on_ready(1)
    m.stop(3.0)
    m.stop(60.0)
    port.clock.advance(3.0)
    assert port.verbs() == ["spawn", "terminate", "kill"]
    assert port.clock.pending() == 0
