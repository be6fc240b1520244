"""The simulator with peers, selectors and profiles (sim/federation.py): real SimPy, real core."""

from __future__ import annotations

import statistics
from typing import Any

import numpy as np

from llamaswap.config import Config, parse_config
from llamaswap.timing import Distribution, TimingProfile
from sim.federation import simulate_federated
from sim.host import ERROR, OK
from sim.trace import Trace

LOCAL = TimingProfile(load_time=Distribution("constant", 2.0), parallel=2, decode_tps=50.0)
PEER = TimingProfile(parallel=4, decode_tps=25.0, ttft_overhead=0.3)  # a slower box, farther away


def _config(**top: Any) -> Config:
    data: dict[str, Any] = {
        "models": {
            "loc": {"proxy": "http://127.0.0.1:1", "concurrencyLimit": 50},
            "other": {"proxy": "http://127.0.0.1:2"},
        },
        "peers": {"box": {"proxy": "http://10.0.0.2:8080", "models": ["w", "m"]}},
        **top,
    }
    return parse_config(data, require_cmd=False)


def _trace(names: list[str], gap: float = 0.0) -> Trace:
    n = len(names)
    return Trace.build(
        [i * gap for i in range(n)], names, prompt_tokens=[100] * n, output_tokens=[50] * n
    )


def test_trace_mixing_local_and_peer_models() -> None:
    names = ["loc", "box/w", "m", "other", "box/w", "loc"] * 5
    trace = _trace(names, gap=0.5)
    profiles = {"loc": LOCAL, "other": LOCAL, "box/w": PEER, "box/m": PEER}
    record, host = simulate_federated(_config(), "fifo", trace, profiles, seed=1)
    assert all(s == OK for s in record.status)
    assert host.routed_to == {"loc": 10, "other": 5, "box/w": 10, "box/m": 5}
    # peers never load or swap: every swap is a local model's
    assert {row[2] for row in record.swaps} <= {"loc", "other"}
    # a peer request takes its profile's service time, from its arrival (no queue, warm)
    expected = PEER.service_time(100, 50)
    for i, name in enumerate(names):
        if name in ("box/w", "m"):
            assert abs((record.end[i] - record.start[i]) - expected) < 1e-9
            assert record.start[i] == trace.arrival[i]


def test_spillover_to_a_peer_cuts_latency_on_a_burst() -> None:
    """20 requests at once: pinned to the local model they queue on its 2 slots; spillover
    (2 per target) moves the overflow to the peer's 4 slots."""
    selectors = {
        "pinned": {"strategy": "pin", "targets": ["loc"]},
        "pool": {
            "strategy": "spillover",
            "targets": ["loc", "box/w"],
            "settings": {"spillover": 2},
        },
    }
    config = _config(selectors=selectors)
    profiles = {"loc": LOCAL, "box/w": PEER}
    results = {}
    for name in ("pinned", "pool"):
        record, host = simulate_federated(config, "fifo", _trace([name] * 20), profiles, seed=3)
        assert all(s == OK for s in record.status)
        results[name] = (statistics.median(record.end[i] for i in range(20)), host)
    pinned_p50, pinned_host = results["pinned"]
    pool_p50, pool_host = results["pool"]
    assert pinned_host.routed_to == {"loc": 20}
    assert pool_host.routed_to["box/w"] > 0 and pool_host.routed_to["loc"] > 0
    assert pool_p50 < pinned_p50 * 0.75
    # the spillover counts drained: every reservation was released exactly once
    assert pool_host.selectors.in_flight("pool", "loc") == 0
    assert pool_host.selectors.in_flight("pool", "box/w") == 0


def test_same_seed_same_result() -> None:
    selectors = {"pool": {"strategy": "spillover", "targets": ["loc", "box/w"]}}
    noisy = TimingProfile(parallel=2, service_noise=Distribution("lognormal", 1.0, 0.3))
    trace = _trace(["pool", "loc", "box/m"] * 30, gap=0.2)
    runs = [
        simulate_federated(_config(selectors=selectors), "fifo", trace, {"box/w": noisy}, seed=7)
        for _ in range(2)
    ]
    (a, host_a), (b, host_b) = runs
    assert np.array_equal(np.array(a.end), np.array(b.end))
    assert bytes(a.status) == bytes(b.status) and host_a.routed_to == host_b.routed_to


def test_active_profile_pins_first() -> None:
    profiles_cfg = {"p": {"pins": {"public": "box/m", "other": None, "tosel": "pool"}}}
    selectors = {"pool": {"strategy": "pin", "targets": ["loc"]}}
    config = _config(profiles=profiles_cfg, selectors=selectors)
    trace = _trace(["public", "other", "tosel", "loc"])
    record, host = simulate_federated(config, "fifo", trace, {}, seed=1, active_profile="p")
    assert list(record.status) == [OK, ERROR, OK, OK]
    assert record.error[1] == "model 'other' is disabled by the active profile"
    assert host.routed_to == {"box/m": 1, "loc": 2}
    _, plain = simulate_federated(config, "fifo", trace, {}, seed=1)
    # no profile active: public and tosel are unknown names, other is the local model
    assert plain.routed_to == {"public": 1, "other": 1, "tosel": 1, "loc": 1}
