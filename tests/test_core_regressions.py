"""Deterministic replays of race bugs that other model-swapping systems shipped.

Each test is named after the bug it pins down and runs under both schedulers where it applies.
"""

import pytest
from recording_host import Harness

from llamaswap.core import ErrorKind, ModelSpec, RoutingSpec

SCHEDULERS = ["fifo", "serial"]


@pytest.mark.parametrize("scheduler", SCHEDULERS)
def test_llama_swap_946_ttl_unload_racing_an_incoming_request_does_not_wedge(
    scheduler: str,
) -> None:
    """The TTL stop is in progress when a request arrives: the request must be served after a
    restart, never fail and never join a zombie swap."""
    spec = RoutingSpec(models={"A": ModelSpec("A", ttl=5.0)}, scheduler=scheduler)
    h = Harness(spec)
    h.request("a1", "A")
    h.ready("A")
    h.finish("a1")
    h.advance(5.0)
    assert h.state("A") == "stopping"  # TTL unload in progress
    h.request("a2", "A")  # ... and a request arrives right now
    h.request("a3", "A")
    assert h.host.spawned == [("A", 1)], "no start before the old process is gone"
    h.exited("A", "terminated")
    assert h.state("A") == "starting"
    h.ready("A")
    assert h.host.granted_ids()[1:] == ["a2"] if scheduler == "serial" else ["a2", "a3"]
    assert h.host.rejected == []
    h.settle()
    assert h.host.granted_ids() == ["a1", "a2", "a3"]
    # The model is not wedged: later requests are served by the fast path.
    h.request("a4", "A")
    assert h.host.granted_ids()[-1] == "a4"
    assert h.host.spawned == [("A", 1), ("A", 2)]


@pytest.mark.parametrize("scheduler", SCHEDULERS)
def test_llama_swap_946_unload_then_request_answers_the_unload_and_serves_the_request(
    scheduler: str,
) -> None:
    h = Harness(RoutingSpec.simple("A", scheduler=scheduler))
    h.request("a1", "A")
    h.ready("A")
    h.finish("a1")
    h.unload("A", token="u1")
    h.request("a2", "A")
    h.exited("A")
    assert h.host.unloads_done == ["u1"]
    h.ready("A")
    assert h.host.granted_ids() == ["a1", "a2"]
    assert h.host.rejected == []


@pytest.mark.parametrize("scheduler", SCHEDULERS)
@pytest.mark.parametrize("a_state", ["idle", "stopping"])
def test_llama_cpp_28443_two_simultaneous_loads_with_room_for_one_never_queue_forever(
    scheduler: str, a_state: str
) -> None:
    """A is loaded and idle (or unloading); B and C arrive together; room for one model."""
    h = Harness(RoutingSpec.simple("A", "B", "C", scheduler=scheduler))
    h.request("a1", "A")
    h.ready("A")
    h.finish("a1")
    if a_state == "stopping":
        h.unload("A")
    h.request("b1", "B")
    h.request("c1", "C")
    h.settle()
    assert sorted(h.host.granted_ids()) == ["a1", "b1", "c1"]
    assert h.host.rejected == []
    assert h.router.scheduler.snapshot()["queued"] == 0
    running = h.router.running_models()
    assert len(running) == 1


@pytest.mark.parametrize("scheduler", SCHEDULERS)
def test_llama_cpp_28698_a_just_loaded_model_is_not_evicted_before_its_own_request_is_served(
    scheduler: str,
) -> None:
    """Cold A requested, then B while A loads (room for one): A's request must be proxied to a
    live A, and A must not be stopped while it serves."""
    h = Harness(RoutingSpec.simple("A", "B", scheduler=scheduler))
    h.request("a1", "A")
    h.request("b1", "B")
    h.ready("A")
    assert h.host.granted_ids() == ["a1"]
    assert h.state("A") == "ready"
    assert h.host.terminated == [], "A must not be evicted while its first request is in flight"
    h.finish("a1")
    assert h.host.terminated == [("A", 1)]
    h.exited("A")
    h.ready("B")
    assert h.host.granted_ids() == ["a1", "b1"]


def test_llama_cpp_28698_fifo_with_many_waiters_serves_them_all_before_evicting() -> None:
    h = Harness(RoutingSpec.simple("A", "B", scheduler="fifo"))
    h.request("a1", "A")
    h.request("b1", "B")
    h.request("a2", "A")  # joins A's swap
    h.ready("A")
    assert h.host.granted_ids() == ["a1", "a2"]
    h.finish("a1")
    assert h.host.terminated == []
    h.finish("a2")
    assert h.host.terminated == [("A", 1)]


@pytest.mark.parametrize("scheduler", SCHEDULERS)
def test_ollama_17408_pending_load_is_not_blocked_when_its_eviction_target_is_revived(
    scheduler: str,
) -> None:
    """B must evict A, which is busy; new requests revive A before it drains. Once A's work is
    done, B's pending load must proceed instead of waiting forever for an idle event."""
    h = Harness(RoutingSpec.simple("A", "B", scheduler=scheduler))
    h.request("a1", "A")
    h.ready("A")
    h.request("b1", "B")  # needs A evicted; A is busy
    h.request("a2", "A")  # A revived
    if scheduler == "fifo":
        assert h.host.granted_ids() == ["a1", "a2"]  # fast path: A is ready and not being evicted
    h.finish("a1")
    if scheduler == "fifo":
        h.request("a3", "A")  # revived again while still busy
        assert h.host.granted_ids() == ["a1", "a2", "a3"]
        h.finish("a2")
        h.finish("a3")
    assert h.host.terminated == [("A", 1)], "A is evicted once its revived work is done"
    h.exited("A")
    h.ready("B")
    assert "b1" in h.host.granted_ids()
    h.settle()
    assert h.host.rejected == []
    assert h.router.scheduler.snapshot()["queued"] == 0
    if scheduler == "serial":
        assert h.host.granted_ids() == ["a1", "b1", "a2"]


@pytest.mark.parametrize("scheduler", SCHEDULERS)
def test_ollama_17408_request_for_a_model_being_evicted_waits_and_reloads_it(
    scheduler: str,
) -> None:
    """A is already being stopped for B when a request revives A: A's request must wait for B's
    swap, then reload A; nobody blocks forever."""
    h = Harness(RoutingSpec.simple("A", "B", scheduler=scheduler))
    h.request("a1", "A")
    h.ready("A")
    h.finish("a1")
    h.request("b1", "B")
    assert h.state("A") == "stopping"
    h.request("a2", "A")
    h.exited("A")
    h.ready("B")
    assert h.host.granted_ids() == ["a1", "b1"]
    h.finish("b1")
    h.exited("B")
    h.ready("A")
    assert h.host.granted_ids() == ["a1", "b1", "a2"]
    assert h.host.error_of("a2") is None


def test_fifo_load_failure_then_retry_is_not_wedged() -> None:
    h = Harness(RoutingSpec.simple("A", scheduler="fifo"))
    h.request("a1", "A")
    h.exited("A", "bad flag")
    assert h.host.error_of("a1") is ErrorKind.LOAD_FAILED
    h.request("a2", "A")
    h.ready("A")
    assert h.host.granted_ids() == ["a2"]
