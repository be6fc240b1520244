"""Event log writing/rotation and calibration of timing profiles from recorded logs."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from recording_host import Harness

from llamaswap.core import RoutingSpec
from llamaswap.record import EventLog, Recorder, read_log
from llamaswap.record.calibrate import ServiceSample, calibrate, fit_service_samples


def test_event_log_rotates_and_reader_returns_records_oldest_first(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    with EventLog(path, max_bytes=400, backups=2, threaded=False) as log:
        for i in range(40):
            log.write({"ev": "arrival", "t": i, "id": str(i), "model": "m"})
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["events.jsonl", "events.jsonl.1", "events.jsonl.2"]
    assert sum(p.stat().st_size for p in tmp_path.iterdir()) <= 3 * 400
    ids = [int(r["id"]) for r in read_log(path)]
    assert ids == sorted(ids) and ids[-1] == 39  # oldest backups dropped, order kept


def test_threaded_event_log_flushes_everything_on_close(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    log = EventLog(path)
    for i in range(5000):
        log.write({"ev": "cancel", "t": i, "id": str(i)})
    log.close()
    assert len(read_log(path)) == 5000


def test_reader_names_file_and_line_of_a_corrupt_record(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"ev": "meta", "t": 0}\n{not json\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2: not a JSON line"):
        read_log(path)


def test_recorder_logs_core_observations_without_payloads(tmp_path: Path) -> None:
    h = Harness(RoutingSpec.simple("A", "B", scheduler="serial"))
    log = EventLog(tmp_path / "log.jsonl", threaded=False)
    recorder = Recorder(log, h.clock.now, {"scheduler": "serial"})
    h.host.observe = recorder.observe  # type: ignore[method-assign]
    recorder.arrival("r1", "A", prompt_tokens=10, output_tokens=5)
    h.request("r1", "A")
    h.clock.advance(1.5)
    h.ready("A")
    h.clock.advance(0.5)
    recorder.done("r1", 200, prompt_tokens=10, output_tokens=5)
    h.finish("r1")
    log.close()
    kinds = [r["ev"] for r in read_log(tmp_path / "log.jsonl")]
    assert kinds == [
        "meta",
        "arrival",
        "swap_start",
        "process",
        "process",
        "swap_end",
        "grant",
        "done",
    ]
    records = read_log(tmp_path / "log.jsonl")
    load = next(r for r in records if r["ev"] == "process" and r["to"] == "ready")
    assert load["t"] == 1.5
    assert all(
        set(r)
        <= {
            "ev",
            "t",
            "id",
            "model",
            "prompt_tokens",
            "output_tokens",
            "stream",
            "status",
            "scheduler",
            "version",
            "evict",
            "ok",
            "from",
            "to",
            "generation",
            "reason",
        }
        for r in records
    )


def test_fit_service_recovers_known_parameters_from_noisy_samples() -> None:
    rng = random.Random(7)
    rows = []
    for _ in range(400):
        p, o = rng.randint(10, 4000), rng.randint(1, 600)
        true = 0.05 + p / 1500 + o / 40
        rows.append(ServiceSample(p, o, true * rng.uniform(0.97, 1.03)))
    overhead, per_prompt, per_output, _, mape = fit_service_samples(rows)
    assert 1 / per_prompt == pytest.approx(1500, rel=0.05)
    assert 1 / per_output == pytest.approx(40, rel=0.02)
    assert overhead == pytest.approx(0.05, abs=0.03)
    assert mape < 0.03


def test_fit_service_never_returns_negative_coefficients() -> None:
    rows = [
        ServiceSample(*r) for r in [(100, 10, 1.0), (200, 10, 0.9), (300, 10, 0.8), (400, 20, 1.2)]
    ]
    overhead, per_prompt, per_output, _, _ = fit_service_samples(rows)
    assert overhead >= 0 and per_prompt >= 0 and per_output >= 0


def test_calibrate_builds_trace_and_profile_from_a_log(tmp_path: Path) -> None:
    records = [
        {"ev": "meta", "t": 0, "scheduler": "fifo"},
        {
            "ev": "arrival",
            "t": 1.0,
            "id": "a",
            "model": "m",
            "prompt_tokens": 100,
            "output_tokens": 20,
        },
        {
            "ev": "process",
            "t": 1.0,
            "model": "m",
            "from": "stopped",
            "to": "starting",
            "generation": 1,
        },
        {
            "ev": "arrival",
            "t": 1.5,
            "id": "b",
            "model": "m",
            "prompt_tokens": 300,
            "output_tokens": 40,
        },
        {"ev": "arrival", "t": 1.6, "id": "c", "model": "m"},
        {"ev": "cancel", "t": 2.1, "id": "c"},
        {
            "ev": "process",
            "t": 3.0,
            "model": "m",
            "from": "starting",
            "to": "ready",
            "generation": 1,
        },
        {"ev": "grant", "t": 3.0, "id": "a", "model": "m"},
        {"ev": "grant", "t": 3.0, "id": "b", "model": "m"},
        {"ev": "done", "t": 3.0 + 0.1 + 100 / 1000 + 20 / 50, "id": "a", "status": 200},
        {"ev": "done", "t": 3.0 + 0.1 + 300 / 1000 + 40 / 50, "id": "b", "status": 200},
    ]
    cal = calibrate(records)
    rows = cal.trace_rows()
    assert [r["id"] for r in rows] == ["a", "b", "c"]
    assert rows[0]["arrival"] == 0.0 and rows[2]["cancel_after"] == pytest.approx(0.5)
    fit = cal.fits["m"]
    assert fit.load_samples == [2.0]
    assert fit.samples == 2
    cal.write_trace(tmp_path / "trace.csv")
    assert (tmp_path / "trace.csv").read_text().splitlines()[0] == (
        "id,arrival,model,prompt_tokens,output_tokens,service_time,cancel_after"
    )
    json.dumps(cal.timing())  # serialisable profile


def _log(order: list[tuple[str, float, float, float]], loads: list[str]) -> list[dict[str, object]]:
    records: list[dict[str, object]] = [{"ev": "meta", "t": 0}]
    for gen, model in enumerate(loads, 1):
        records.append(
            {
                "ev": "process",
                "t": 0,
                "model": model,
                "from": "stopped",
                "to": "starting",
                "generation": gen,
            }
        )
    for rid, arrival, grant, done in order:
        records += [
            {"ev": "arrival", "t": arrival, "id": rid, "model": "m"},
            {"ev": "grant", "t": grant, "id": rid, "model": "m"},
            {"ev": "done", "t": done, "id": rid, "status": 200},
        ]
    return records


def test_compare_reports_identical_runs_as_identical() -> None:
    from llamaswap.record.compare import compare

    log = _log([("a", 0, 1, 2), ("b", 0.1, 2, 3)], ["m"])
    verdict = compare(log, log)
    assert verdict["grant_order"]["identical"] and verdict["loads"]["identical"]
    assert verdict["latency"]["p50"]["rel_error"] == 0


def test_compare_finds_first_divergence_and_latency_error() -> None:
    from llamaswap.record.compare import compare

    real = _log([("a", 0, 1, 2), ("b", 0.1, 2, 3), ("c", 0.2, 3, 4)], ["m", "n"])
    sim = _log([("a", 0, 1, 2.2), ("c", 0.2, 2, 3.2), ("b", 0.1, 3, 4.2)], ["m"])
    verdict = compare(real, sim)
    assert verdict["grant_order"]["first_divergence"]["index"] == 1
    assert verdict["loads"]["count"] == {"real": 2, "sim": 1}
    assert verdict["latency"]["p50"]["rel_error"] > 0


def test_calibration_reconstructs_service_start_behind_upstream_slots() -> None:
    """fifo grants three requests at once to a one-slot upstream: each really took 1 s, not 1/2/3 s."""
    records: list[dict[str, object]] = [{"ev": "meta", "t": 0}]
    for i in range(3):
        records.append(
            {
                "ev": "arrival",
                "t": 0.0,
                "id": f"r{i}",
                "model": "m",
                "prompt_tokens": 10 * (i + 1),
                "output_tokens": 10,
            }
        )
        records.append({"ev": "grant", "t": 0.0, "id": f"r{i}", "model": "m"})
        records.append({"ev": "done", "t": float(i + 1), "id": f"r{i}", "status": 200})
    naive = calibrate(records)
    sloted = calibrate(records, slots={"m": 1})
    from llamaswap.record.calibrate import service_samples

    assert [s.service for s in service_samples(sloted.requests, {"m": 1})["m"]] == [1.0, 1.0, 1.0]
    assert [s.service for s in service_samples(naive.requests)["m"]] == [1.0, 2.0, 3.0]
    assert sloted.fits["m"].mape < 1e-6
    two_slots = service_samples(sloted.requests, {"m": 2})["m"]
    assert [s.service for s in two_slots] == [
        1.0,
        2.0,
        2.0,
    ]  # r2 starts when r0 frees a slot at t=1


def test_calibrated_profile_carries_the_service_noise_the_formula_cannot_explain() -> None:
    from llamaswap.timing import TimingProfile

    rng = random.Random(3)
    records: list[dict[str, object]] = [{"ev": "meta", "t": 0}]
    t = 0.0
    for i in range(200):
        p, o = rng.randint(10, 500), rng.randint(5, 50)
        service = (0.05 + p / 2000 + o / 40) * (3.0 if i % 20 == 0 else 1.0)  # 5% slow outliers
        records += [
            {
                "ev": "arrival",
                "t": t,
                "id": str(i),
                "model": "m",
                "prompt_tokens": p,
                "output_tokens": o,
            },
            {"ev": "grant", "t": t, "id": str(i), "model": "m"},
            {"ev": "done", "t": t + service, "id": str(i), "status": 200},
        ]
        t += service + 1
    fit = calibrate(records).fits["m"]
    profile = TimingProfile.parse(fit.profile(), "calibrated")
    assert profile.service_noise.kind == "empirical"
    assert max(profile.service_noise.samples) > 2.0  # the outliers survive calibration
    draws = sorted(profile.noise_factor(random.Random(i)) for i in range(400))
    assert draws[int(0.99 * len(draws))] > 2.0 and draws[len(draws) // 2] < 1.2


def test_profile_without_noise_draws_exactly_one_and_leaves_the_rng_alone() -> None:
    from llamaswap.timing import TimingError, TimingProfile

    rng = random.Random(1)
    state = rng.getstate()
    assert TimingProfile().noise_factor(rng) == 1.0 and rng.getstate() == state
    with pytest.raises(TimingError, match=r"timing\.service_noise: the factor's mean must be > 0"):
        TimingProfile.parse({"service_noise": [0, 0]})
