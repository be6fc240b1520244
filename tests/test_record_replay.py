"""The simulator's event log, routing meta, usage tap and replay of a recorded log (no processes)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from llamaswap.cli import main
from llamaswap.core.spec import GroupSpec, ModelSpec, RoutingSpec
from llamaswap.record import read_log
from llamaswap.record.compare import compare, facts
from llamaswap.record.meta import MetaError, spec_from_meta, spec_meta
from llamaswap.record.usage import TAIL_BYTES, UsageTap, usage_of
from llamaswap.timing import Distribution, TimingProfile
from sim.eventlog import simulate_recorded
from sim.metrics import summarize
from sim.replay import log_metrics, observed_parallel, replay_inputs
from sim.run import simulate
from sim.synthetic import synthetic_trace

SPEC = RoutingSpec(
    models={
        "a": ModelSpec("a", concurrency_limit=16),
        "b": ModelSpec("b", concurrency_limit=16, ttl=30.0),
        "c": ModelSpec("c", concurrency_limit=16),
    },
    scheduler="fifo",
)
PROFILES = {
    m: TimingProfile(
        load_time=Distribution("constant", 1.0 + i / 2),
        unload_time=0.1,
        parallel=2,
        ttft_overhead=0.02,
        prefill_tps=4000.0,
        decode_tps=100.0 + 20 * i,
    )
    for i, m in enumerate("abc")
}


def small_trace(duration: float = 300.0, cancel: bool = False):  # type: ignore[no-untyped-def]
    spec = {
        "duration": duration,
        "rate": 0.5,
        "models": ["a", "b", "c"],
        "zipf": 1.0,
        "prompt_tokens": {"kind": "lognormal", "median": 300, "sigma": 0.5},
        "output_tokens": {"kind": "lognormal", "median": 40, "sigma": 0.5},
    }
    if cancel:
        spec["cancel"] = {"prob": 0.2, "after": 3}
    return synthetic_trace(spec, 3, "test")


def test_routing_meta_round_trips_and_names_what_is_missing() -> None:
    spec = RoutingSpec(
        models={"x": ModelSpec("x", 4, 12.5, 3.0), "y": ModelSpec("y")},
        groups=(GroupSpec("g", ("x", "y"), swap=False, exclusive=True, persistent=True),),
        scheduler="serial",
        scheduler_settings={"fifo": {"priority": ["x"]}},
        health_check_timeout=42.0,
    )
    meta = json.loads(json.dumps(spec_meta(spec)))
    assert spec_from_meta(meta) == spec
    with pytest.raises(MetaError, match="no 'routing' in the meta record"):
        spec_from_meta({"host": "daemon"}, "x.jsonl")
    with pytest.raises(MetaError, match=r"routing.models: expected a non-empty mapping"):
        spec_from_meta({"routing": {"models": {}}})


def test_usage_is_read_from_json_bodies_and_the_tail_of_event_streams() -> None:
    body = json.dumps({"choices": [], "usage": {"prompt_tokens": 12, "completion_tokens": 7}})
    assert usage_of(body.encode()) == (12, 7)
    assert usage_of(b'{"usage": {"input_tokens": 3, "output_tokens": 4}}') == (3, 4)
    assert usage_of(b'{"choices": []}') == (None, None)
    firsts: list[int] = []
    tap = UsageTap(lambda: firsts.append(1))
    for i in range(2000):  # a long stream: far more than the bounded tail keeps
        tap.chunk(b'data: {"choices":[{"delta":{"content":"w%d "}}]}\n\n' % i)
    tap.chunk(
        b'data: {"choices":[],"usage":{"prompt_tokens":321,"completion_tokens":2000}}\n\n'
        b"data: [DONE]\n\n"
    )
    assert firsts == [1]
    assert tap.usage() == (321, 2000)
    assert len(tap._tail) <= TAIL_BYTES and tap.bytes > 50 * TAIL_BYTES // 10


def test_simulator_log_matches_the_simulators_own_metrics(tmp_path: Path) -> None:
    trace = small_trace(cancel=True)
    for scheduler in ("serial", "fifo"):
        path = tmp_path / scheduler / "events.jsonl"
        record = simulate_recorded(SPEC, scheduler, trace, PROFILES, 5, path)
        plain, _ = simulate(SPEC, scheduler, trace, PROFILES, 5)
        assert list(record.start) == pytest.approx(list(plain.start), nan_ok=True)
        summary = summarize(plain, trace, 0.0)
        records = read_log(path)
        metrics = log_metrics(records)
        assert records[0]["ev"] == "meta" and records[0]["routing"]["scheduler"] == scheduler
        assert metrics["requests"] == summary["requests"]
        assert metrics["completed"] == summary["completed"]
        assert metrics["cancelled"] == summary["cancelled"] > 0
        assert metrics["swaps"] == summary["swaps"]
        for key in ("p50", "p90", "p99"):
            assert metrics["latency"][key] == pytest.approx(summary["latency"][key], abs=1e-5)
            # The log's wait ends at the grant (all a daemon sees); the simulator's at the start
            # of service, which can be later when the grant waits for a free upstream slot.
            if scheduler == "serial":
                assert metrics["wait"][key] == pytest.approx(summary["wait"][key], abs=1e-5)
            else:
                assert metrics["wait"][key] <= summary["wait"][key] + 1e-5
        kinds = {r["ev"] for r in records}
        assert {"arrival", "grant", "first_byte", "done", "cancel", "swap_start"} <= kinds
        assert {"swap_end", "process"} <= kinds


def test_a_recorded_log_replays_to_the_same_run(tmp_path: Path) -> None:
    """Calibrate from a log, replay it under the recorded scheduler: the same run comes back."""
    trace = small_trace()
    path = tmp_path / "real.jsonl"
    simulate_recorded(SPEC, "serial", trace, PROFILES, 5, path)
    spec, replay_trace, profiles, calibration, records = replay_inputs(path)
    assert spec.models == SPEC.models and spec.scheduler == "serial"
    assert len(replay_trace) == len(trace)
    for model, fit in calibration.fits.items():
        assert fit.decode_tps == pytest.approx(PROFILES[model].decode_tps, rel=1e-3)
        assert fit.mape < 1e-3
        assert fit.load_samples
        assert fit.load_samples == pytest.approx(
            [PROFILES[model].load_time.value] * len(fit.load_samples)
        )
    assert observed_parallel(records) == {"a": 1, "b": 1, "c": 1}
    again = tmp_path / "again.jsonl"
    simulate_recorded(spec, "serial", replay_trace, profiles, 0, again)
    verdict = compare(records, read_log(again))
    assert verdict["grant_order"]["identical"]
    assert verdict["loads"]["identical"]
    for key in ("p50", "p90", "p99"):
        assert abs(verdict["latency"][key]["rel_error"]) < 1e-3
        assert abs(verdict["ttft"][key]["rel_error"]) < 1e-3


def test_replay_under_another_scheduler_changes_the_run(tmp_path: Path) -> None:
    trace = small_trace()
    path = tmp_path / "real.jsonl"
    simulate_recorded(SPEC, "serial", trace, PROFILES, 5, path)
    spec, replay_trace, profiles, _, records = replay_inputs(path)
    fifo = tmp_path / "fifo.jsonl"
    simulate_recorded(spec, "fifo", replay_trace, profiles, 0, fifo)
    real, other = facts(records), facts(read_log(fifo))
    assert len(other.loads) < len(real.loads)  # fifo batches same-model requests
    assert sorted(other.grant_order) == sorted(real.grant_order)


def test_trace_from_log_and_sim_from_log_commands(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "real.jsonl"
    simulate_recorded(SPEC, "serial", small_trace(120.0), PROFILES, 5, path)
    trace_csv, profile_yaml = tmp_path / "t.csv", tmp_path / "p.yaml"
    code = main(
        [
            "trace",
            "from-log",
            str(path),
            "--out-trace",
            str(trace_csv),
            "--out-profile",
            str(profile_yaml),
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "fit error MAPE" in printed and "a:" in printed
    assert trace_csv.read_text().startswith("id,arrival,model,prompt_tokens,output_tokens")
    out = tmp_path / "replay"
    code = main(
        [
            "sim",
            "--from-log",
            str(path),
            "--scheduler",
            "fifo",
            "--scheduler",
            "serial",
            "--out",
            str(out),
            "--quiet",
        ]
    )
    assert code == 0
    summary = json.loads((out / "replay.json").read_text())
    assert set(summary["results"]) == {"recorded (serial)", "fifo", "serial"}
    recorded, serial = summary["results"]["recorded (serial)"], summary["results"]["serial"]
    assert serial["swaps"] == recorded["swaps"]
    assert serial["latency"]["p99"] == pytest.approx(recorded["latency"]["p99"], rel=1e-3)
    assert serial["latency"]["p50"] == pytest.approx(recorded["latency"]["p50"], rel=1e-3)
    assert (out / "fifo" / "events.jsonl").exists()
    # the same report as `llamaswap sim`: report.md with its plots, per-scheduler CSVs
    report = (out / "report.md").read_text()
    assert "![Latency CDF" in report and (out / "latency_cdf.png").stat().st_size > 10_000
    assert (out / "serial" / "requests.csv").exists()
    assert summary["loads"].startswith("loads replayed in recorded order per model")


def test_sim_from_log_errors_are_clear(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bare = tmp_path / "bare.jsonl"
    bare.write_text('{"ev":"meta","t":0}\n{"ev":"arrival","t":1,"id":"x","model":"m"}\n')
    assert main(["sim", "--from-log", str(bare)]) == 2
    assert "no 'routing' in the meta record" in capsys.readouterr().err
    assert main(["sim"]) == 2
    assert "--from-log" in capsys.readouterr().err
    empty = tmp_path / "empty.jsonl"
    empty.write_text('{"ev":"meta","t":0}\n')
    assert main(["trace", "from-log", str(empty)]) == 2
    assert "no request arrivals" in capsys.readouterr().err


def test_sim_record_dir_writes_one_log_per_scheduler(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[1]
    code = main(
        [
            "sim",
            str(root / "scenarios" / "fidelity-synthetic.yaml"),
            "--ci",
            "--quiet",
            "--out",
            str(tmp_path / "report"),
            "--record-dir",
            str(tmp_path / "logs"),
        ]
    )
    assert code == 0
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    for name, result in summary["results"].items():
        metrics = log_metrics(read_log(tmp_path / "logs" / name / "events.jsonl"))
        assert metrics["swaps"] == result["swaps"]
        assert metrics["completed"] == result["completed"]
        assert not math.isnan(metrics["latency"]["p50"])


def test_arrivals_on_the_same_clock_tick_keep_the_logged_order() -> None:
    from llamaswap.record.calibrate import calibrate

    records = [
        {"ev": "meta", "t": 0.0},
        {"ev": "arrival", "t": 1.0, "id": "9", "model": "m"},
        {"ev": "arrival", "t": 1.0, "id": "10", "model": "m"},
        {"ev": "arrival", "t": 0.5, "id": "z", "model": "m"},
    ]
    assert [r["id"] for r in calibrate(records).trace_rows()] == ["z", "9", "10"]


def test_parse_slots_reads_k_and_model_k_and_rejects_nonsense() -> None:
    from sim.replay import parse_slots

    assert parse_slots(["2", "b=1"], ["a", "b"]) == {"a": 2, "b": 1}
    assert parse_slots(None, ["a"]) == {}
    with pytest.raises(ValueError, match="no model 'c'"):
        parse_slots(["c=1"], ["a"])
    with pytest.raises(ValueError, match="K must be >= 1"):
        parse_slots(["0"], ["a"])
    with pytest.raises(ValueError, match="expected K or MODEL=K"):
        parse_slots(["a=x"], ["a"])


def test_embeddings_are_fitted_as_prefill_only() -> None:
    """An embedding reports prompt tokens only; it used to be left out of the fit (prefill_tps
    1e9: replayed as instantaneous) and replayed as a default-length generation."""
    from llamaswap.record.calibrate import calibrate

    records: list[dict[str, object]] = [{"ev": "meta", "t": 0.0}]
    for i in range(12):
        prompt = 100 + 40 * i
        t = 10.0 * i
        records += [
            {"ev": "arrival", "t": t, "id": str(i), "model": "embed"},
            {"ev": "grant", "t": t, "id": str(i), "model": "embed"},
            {
                "ev": "done",
                "t": t + 0.01 + prompt / 5000,
                "id": str(i),
                "status": 200,
                "prompt_tokens": prompt,
            },
        ]
    calibration = calibrate(records)
    fit = calibration.fits["embed"]
    assert fit.samples == 12
    assert fit.prefill_tps == pytest.approx(5000, rel=1e-6)
    assert fit.ttft_overhead == pytest.approx(0.01, abs=1e-6)
    assert {r["output_tokens"] for r in calibration.trace_rows()} == {0}


def test_record_dir_logs_the_runs_the_summary_describes(tmp_path: Path) -> None:
    """The log is a listener on the experiment's own runs: the same summary as without it, and
    every logged completion at the recorded end time of that very run."""
    from sim.experiment import run_experiment
    from sim.scenario import load_scenario

    root = Path(__file__).resolve().parents[1]
    scenario = load_scenario(root / "scenarios" / "fidelity-synthetic.yaml")
    trace = scenario.load_trace(ci=True)
    plain = run_experiment(scenario, trace)
    logged = run_experiment(scenario, trace, record_dir=tmp_path)
    strip = {"sim_wall_seconds"}
    for name, result in plain.summary["results"].items():
        other = logged.summary["results"][name]
        assert {k: v for k, v in other.items() if k not in strip} == {
            k: v for k, v in result.items() if k not in strip
        }
        ends = {
            r["id"]: r["t"]
            for r in read_log(tmp_path / name / "events.jsonl")
            if r["ev"] == "done" and r["status"] == 200
        }
        record = logged.records[name]
        ids = (
            [str(i) for i in trace.ids]
            if trace.ids is not None
            else [str(i) for i in range(len(trace))]
        )
        assert len(ends) == result["completed"] > 0
        assert all(
            ends[rid] == pytest.approx(record.end[i], abs=1e-6)
            for i, rid in enumerate(ids)
            if rid in ends
        )
