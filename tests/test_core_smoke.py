from recording_host import Harness

from llamaswap.core import RoutingSpec


def _drive(h: Harness) -> None:
    """Play the world: processes start and stop at once, granted requests finish at once."""
    finished: set[object] = set()
    for _ in range(100):
        for model in h.router.processes:
            if h.state(model) == "starting":
                h.ready(model)
            elif h.state(model) == "stopping":
                h.exited(model)
        for req in list(h.host.granted):
            if req.id not in finished:
                finished.add(req.id)
                h.finish(req.id)


def test_fifo_batches_cold_arrivals_abcabc_as_aabbcc() -> None:
    h = Harness(RoutingSpec.simple("A", "B", "C", scheduler="fifo"))
    for i, model in enumerate("ABCABC"):
        h.request(f"{model}{i}", model)
    _drive(h)
    assert h.host.granted_ids() == ["A0", "A3", "B1", "B4", "C2", "C5"]


def test_serial_serves_abcabc_in_arrival_order() -> None:
    h = Harness(RoutingSpec.simple("A", "B", "C", scheduler="serial"))
    for i, model in enumerate("ABCABC"):
        h.request(f"{model}{i}", model)
    _drive(h)
    assert h.host.granted_ids() == ["A0", "B1", "C2", "A3", "B4", "C5"]
    assert len(h.host.spawned) == 6
