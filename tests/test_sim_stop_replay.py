"""Measured replay: recorded stop (and load) durations replayed in order by the simulator."""

from __future__ import annotations

from pathlib import Path

import pytest

from llamaswap.core.spec import ModelSpec, RoutingSpec
from llamaswap.record import read_log
from llamaswap.record.calibrate import collect_requests
from llamaswap.timing import Distribution, TimingProfile
from sim.eventlog import ReplayedDurations, simulate_recorded
from sim.trace import Trace

SPEC = RoutingSpec(models={"a": ModelSpec("a"), "b": ModelSpec("b")}, scheduler="serial")
PROFILE = TimingProfile(load_time=Distribution("constant", 0.5), unload_time=0.15, decode_tps=100.0)
# a b a b a: four swaps, each stopping the other model first.
TRACE = Trace.build(
    [0.0, 5.0, 10.0, 15.0, 20.0],
    ["a", "b", "a", "b", "a"],
    prompt_tokens=[10] * 5,
    output_tokens=[10] * 5,
    ids=[f"q{i}" for i in range(5)],
)


def stops(path: Path) -> dict[str, list[float]]:
    _, _, _, unloads = collect_requests(read_log(path))
    return {m: [round(x, 9) for x in xs] for m, xs in unloads.items()}


def test_stop_durations_are_replayed_in_order_per_model(tmp_path: Path) -> None:
    path = tmp_path / "sim.jsonl"
    profiles = {"a": PROFILE, "b": PROFILE}
    simulate_recorded(
        SPEC, "serial", TRACE, profiles, 0, path, stop_durations={"a": [0.1, 0.3], "b": [0.25]}
    )
    assert stops(path) == {"a": [0.1, 0.3], "b": [0.25, 0.25]}  # cycles when short
    plain = tmp_path / "plain.jsonl"
    simulate_recorded(SPEC, "serial", TRACE, profiles, 0, plain)
    assert stops(plain) == {"a": [0.15, 0.15], "b": [0.15, 0.15]}  # the profile's median


def test_a_stop_replay_for_one_model_leaves_the_other_on_its_profile(tmp_path: Path) -> None:
    path = tmp_path / "sim.jsonl"
    simulate_recorded(
        SPEC, "serial", TRACE, {"a": PROFILE, "b": PROFILE}, 0, path, stop_durations={"b": [0.4]}
    )
    assert stops(path) == {"a": [0.15, 0.15], "b": [0.4, 0.4]}


def test_replayed_durations_cycle_and_refuse_an_empty_record() -> None:
    replay = ReplayedDurations([1.0, 2.0])
    assert [replay.sample() for _ in range(5)] == [1.0, 2.0, 1.0, 2.0, 1.0]
    assert replay.mean() == pytest.approx(1.5)
    with pytest.raises(ValueError, match="at least one recorded duration"):
        ReplayedDurations([])
