"""The first request on a freshly loaded process: calibrated from a log, honoured by the simulator."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from llamaswap.core.spec import ModelSpec, RoutingSpec
from llamaswap.record import read_log
from llamaswap.record.calibrate import (
    calibrate,
    collect_requests,
    fit_service_samples,
    service_samples,
)
from llamaswap.timing import Distribution, TimingError, TimingProfile
from sim.eventlog import simulate_recorded
from sim.trace import Trace

PREFILL, DECODE, WARM = 500.0, 50.0, 0.08


def service(prompt: int, output: int, first: bool) -> float:
    return prompt / PREFILL + output / DECODE + (WARM if first else 0.0)


def synthetic_log(warm: float = WARM, per_load: int = 3, loads: int = 4) -> list[dict[str, Any]]:
    """A serial daemon-style log: each load of ``m`` serves ``per_load`` requests back to back."""
    records: list[dict[str, Any]] = [
        {"ev": "meta", "t": 0.0, "routing": {"models": {"m": {}}, "scheduler": "serial"}}
    ]
    t, n = 1.0, 0
    for gen in range(1, loads + 1):
        records.append({"ev": "process", "t": t, "model": "m", "generation": gen, "to": "starting"})
        t += 0.5
        records.append({"ev": "process", "t": t, "model": "m", "generation": gen, "to": "ready"})
        for k in range(per_load):
            n += 1
            prompt, output = 40 * (n % 5 + 1), 3 * (n % 4 + 2)
            rid = f"r{n}"
            took = prompt / PREFILL + output / DECODE + (warm if k == 0 else 0.0)
            records += [
                {"ev": "arrival", "t": t, "id": rid, "model": "m"},
                {"ev": "grant", "t": t, "id": rid, "model": "m"},
                {
                    "ev": "done",
                    "t": t + took,
                    "id": rid,
                    "status": 200,
                    "prompt_tokens": prompt,
                    "output_tokens": output,
                },
            ]
            t += took
        records.append({"ev": "process", "t": t, "model": "m", "generation": gen, "to": "stopping"})
        t += 0.2
        records.append({"ev": "process", "t": t, "model": "m", "generation": gen, "to": "stopped"})
        t += 1.0
    return records


def test_calibration_separates_the_warm_up_of_the_first_request_on_each_process() -> None:
    calibration = calibrate(synthetic_log())
    fit = calibration.fits["m"]
    assert fit.first_samples == 4
    assert fit.first_request_overhead == pytest.approx(WARM, abs=1e-6)
    assert fit.prefill_tps == pytest.approx(PREFILL, rel=1e-6)
    assert fit.decode_tps == pytest.approx(DECODE, rel=1e-6)
    assert fit.mape < 1e-6
    assert fit.noise_samples == pytest.approx([1.0] * 12)  # nothing left unexplained
    profile = TimingProfile.parse(fit.profile(), "calibrated")
    assert profile.first_request_overhead == pytest.approx(WARM, abs=1e-6)


def test_without_the_warm_up_term_the_fit_is_biased_and_the_noise_wider() -> None:
    """What the old three-term fit did on the same log: the warm-up leaks into the noise."""
    requests, _, _, _ = collect_requests(synthetic_log())
    samples = service_samples(requests)["m"]
    warm = fit_service_samples(samples)
    cold_blind = fit_service_samples([s._replace(first=False) for s in samples])
    assert warm.mape < 1e-6 < 0.02 < cold_blind.mape
    assert cold_blind.first_overhead == 0.0


def test_no_warm_up_in_the_log_means_no_warm_up_in_the_profile() -> None:
    fit = calibrate(synthetic_log(warm=0.0)).fits["m"]
    assert fit.first_request_overhead == pytest.approx(0.0, abs=1e-9)
    assert "first_request_overhead" not in fit.profile()


def test_warm_up_is_not_fitted_when_every_request_is_first_on_its_process() -> None:
    """One request per load: the term cannot be told apart from ttft_overhead, so it is left out."""
    fit = calibrate(synthetic_log(per_load=1, loads=6)).fits["m"]
    assert fit.first_samples == 6
    assert fit.first_request_overhead == 0.0
    assert fit.ttft_overhead == pytest.approx(WARM, abs=1e-6)


def test_a_request_served_before_the_log_saw_a_load_is_not_counted_as_first() -> None:
    log = [r for r in synthetic_log() if not (r["ev"] == "process" and r["generation"] == 1)]
    requests, _, _, _ = collect_requests(log)
    firsts = [s.first for s in service_samples(requests)["m"]]
    assert firsts.count(True) == 3 and firsts[0] is False


def test_the_simulator_adds_the_warm_up_to_the_first_request_of_each_process(
    tmp_path: Path,
) -> None:
    spec = RoutingSpec(models={"a": ModelSpec("a"), "b": ModelSpec("b")}, scheduler="serial")
    profile = TimingProfile(
        load_time=Distribution("constant", 1.0),
        unload_time=0.1,
        prefill_tps=1000.0,
        decode_tps=100.0,
        first_request_overhead=0.25,
    )
    # a a a b b a: three loads; each load's first request pays the warm-up, the rest do not.
    models = ["a", "a", "a", "b", "b", "a"]
    trace = Trace.build(
        [0.0, 0.1, 0.2, 10.0, 10.1, 20.0],
        models,
        prompt_tokens=[100] * 6,
        output_tokens=[10] * 6,
        ids=[f"q{i}" for i in range(6)],
    )
    path = tmp_path / "sim.jsonl"
    simulate_recorded(spec, "serial", trace, {"a": profile, "b": profile}, 0, path)
    requests, _, _, _ = collect_requests(read_log(path))
    took = {r.id: r.done - r.grant for r in requests if r.done is not None and r.grant is not None}
    base = 100 / 1000 + 10 / 100
    assert took == pytest.approx(
        {
            "q0": base + 0.25,
            "q1": base,
            "q2": base,
            "q3": base + 0.25,
            "q4": base,
            "q5": base + 0.25,
        }
    )
    first_byte = {r.id: r.first_byte - r.grant for r in requests if r.first_byte and r.grant}
    assert first_byte["q0"] == pytest.approx(0.1 + 0.25) and first_byte["q1"] == pytest.approx(0.1)
    # And the round trip: calibrating on the simulated log finds the warm-up it was given.
    fits = calibrate(read_log(path)).fits
    assert fits["a"].first_request_overhead == pytest.approx(0.25, abs=1e-5)


def test_the_profile_refuses_a_negative_warm_up_and_names_the_key() -> None:
    with pytest.raises(TimingError, match=r"timing\.first_request_overhead: must be >= 0"):
        TimingProfile.parse({"first_request_overhead": -0.1})
