"""The SimPy host driving the real core: timing, slots, faults, cancels, metrics, determinism."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from llamaswap.cli import main
from llamaswap.core.spec import ModelSpec, RoutingSpec
from llamaswap.timing import TimingProfile
from sim.host import CANCELLED, ERROR, OK, REJECTED
from sim.metrics import jain, order_violations, summarize
from sim.run import simulate
from sim.synthetic import synthetic_trace
from sim.trace import Trace

ROOT = Path(__file__).resolve().parents[1]


def profile(**kwargs: object) -> TimingProfile:
    base = {"load_time": 2.0, "unload_time": 0.5}
    base.update(kwargs)
    return TimingProfile.parse(base)


def run(trace: Trace, scheduler: str = "fifo", spec: RoutingSpec | None = None, **timing: object):
    spec = spec or RoutingSpec(models={m: ModelSpec(m) for m in trace.models})
    profiles = {m: profile(**timing) for m in spec.models}
    record, wall = simulate(spec, scheduler, trace, profiles, seed=1)
    return record, summarize(record, trace, wall)


def test_single_model_timeline_is_exact() -> None:
    trace = Trace.build([0.0, 1.0, 10.0], ["A"] * 3, service_time=[3.0, 3.0, 3.0])
    record, summary = run(trace, parallel=1)
    # load 0..2, r0 2..5, r1 waits for the slot 5..8, r2 10..13 (model stays loaded)
    assert list(record.start) == [2.0, 5.0, 10.0]
    assert list(record.end) == [5.0, 8.0, 13.0]
    assert summary["swaps"] == 1 and summary["completed"] == 3
    assert summary["wait"]["max"] == 4.0
    assert summary["latency"]["p50"] == 5.0 and summary["latency"]["max"] == 7.0
    assert record.swaps == [[0.0, 2.0, "A", "", 1]]


def test_service_time_from_the_shared_timing_formula() -> None:
    trace = Trace.build([0.0], ["A"], prompt_tokens=[1000], output_tokens=[50])
    timing = {"ttft_overhead": 0.5, "prefill_tps": 1000, "decode_tps": 25}
    record, _ = run(trace, **timing)
    expected = profile(**timing).service_time(1000, 50)  # 0.5 + 1 + 2
    assert expected == 3.5
    assert record.end[0] - record.start[0] == pytest.approx(expected)


def test_parallel_slots_serve_concurrently() -> None:
    trace = Trace.build([0.0] * 4, ["A"] * 4, service_time=[5.0] * 4)
    record, summary = run(trace, parallel=2)
    assert sorted(record.start) == [2.0, 2.0, 7.0, 7.0]
    assert summary["max_in_flight"] == 4  # all four granted by fifo, two wait for a slot


def test_serial_orders_strictly_and_keeps_one_model() -> None:
    trace = synthetic_trace(
        {"duration": 600, "rate": 0.5, "models": ["A", "B", "C"], "zipf": 0.5}, seed=3
    )
    _, serial = run(trace, "serial", parallel=4)
    _, fifo = run(trace, "fifo", parallel=4)
    assert serial["order_violations"] == 0
    assert serial["max_in_flight"] == 1 and serial["max_resident_models"] == 1
    assert fifo["max_in_flight"] > 1  # fifo batches same-model requests
    assert fifo["swaps"] <= serial["swaps"]
    for result in (serial, fifo):
        assert (
            result["completed"] + result["errors"] + result["rejected"] + result["cancelled"]
            == result["requests"]
        )


def test_groups_let_models_share_the_gpu() -> None:
    trace = Trace.build([0.0, 0.1, 10.0, 10.1], ["A", "B", "A", "B"], service_time=[1.0] * 4)
    from llamaswap.core.spec import GroupSpec

    spec = RoutingSpec(
        models={m: ModelSpec(m) for m in "AB"},
        groups=(GroupSpec("both", ("A", "B"), swap=False),),
    )
    _, fifo = run(trace, "fifo", spec=spec)
    _, serial = run(trace, "serial", spec=spec)
    assert fifo["max_resident_models"] == 2 and fifo["swaps"] == 2
    assert serial["max_resident_models"] == 1 and serial["swaps"] == 4


def test_cancel_after_uses_the_core_cancel_path() -> None:
    # The load takes 30 s; request 1 gives up after 5 s, request 0 waits.
    trace = Trace.build([0.0, 0.0], ["A", "A"], service_time=[1.0, 1.0], cancel_after=[np.nan, 5.0])
    record, summary = run(trace, "serial", load_time=30.0)
    assert list(record.status) == [OK, CANCELLED]
    assert record.end[1] == 5.0 and summary["cancelled"] == 1
    assert summary["completed"] == 1


@pytest.mark.parametrize("scheduler", ["serial", "fifo", "batch-aging"])
def test_cancel_after_aborts_a_load_another_model_waits_behind(scheduler: str) -> None:
    """A's only client gives up 5 s into A's 30 s load while B waits: every scheduler aborts the
    load and B loads at once (at 5 s plus the aborted process's stop), not after A's 30 s."""
    trace = Trace.build([0.0, 1.0], ["A", "B"], service_time=[1.0, 1.0], cancel_after=[5.0, np.nan])
    record, summary = run(trace, scheduler, load_time=30.0, unload_time=0.5)
    assert list(record.status) == [CANCELLED, OK]
    assert record.end[0] == 5.0
    assert [row[2] for row in record.swaps] == ["A", "B"]
    assert record.swaps[0][4] == 0, "A's load is recorded as aborted"
    assert record.swaps[1][0] == pytest.approx(5.5), "B's load starts once A has stopped"
    assert record.start[1] == pytest.approx(35.5)
    assert summary["cancelled"] == 1 and summary["completed"] == 1


def test_cancel_after_grant_is_a_no_op() -> None:
    trace = Trace.build([0.0], ["A"], service_time=[10.0], cancel_after=[3.0])
    record, _ = run(trace, load_time=1.0)
    assert list(record.status) == [OK]  # granted at t=1, before the client's 3 s patience


def test_load_failures_fail_waiters_and_are_recorded() -> None:
    trace = Trace.build([0.0, 1.0, 50.0], ["A"] * 3, service_time=[1.0] * 3)
    record, summary = run(trace, load_failure_prob=1.0)
    assert list(record.status) == [ERROR] * 3
    assert set(record.error.values()) == {"load_failed"}
    assert summary["failed_loads"] == summary["swaps"] >= 2
    assert all(row[4] == 0 for row in record.swaps)


def test_crashes_abort_in_flight_requests_exactly_once() -> None:
    trace = Trace.build(np.arange(0.0, 200.0, 2.0), ["A"] * 100, service_time=[5.0] * 100)
    record, summary = run(trace, parallel=4, crash_rate=0.05)
    assert summary["errors"] > 0 and "upstream_crashed" in record.error.values()
    assert summary["completed"] + summary["errors"] + summary["rejected"] == 100
    assert summary["swaps"] > 1  # the model was reloaded after each crash


def test_ttl_unloads_idle_model() -> None:
    trace = Trace.build([0.0, 100.0], ["A", "A"], service_time=[1.0, 1.0])
    spec = RoutingSpec(models={"A": ModelSpec("A", ttl=10.0)})
    record, summary = run(trace, spec=spec)
    assert summary["swaps"] == 2  # unloaded at t=13, loaded again at t=100
    assert record.start[1] == 102.0


def test_over_limit_is_rejected() -> None:
    trace = Trace.build([0.0] * 5, ["A"] * 5, service_time=[1.0] * 5)
    spec = RoutingSpec(models={"A": ModelSpec("A", concurrency_limit=2)})
    record, summary = run(trace, spec=spec)
    assert summary["rejected"] == 3 and list(record.status).count(REJECTED) == 3
    assert set(record.error.values()) == {"over_limit"}


def test_unknown_model_is_rejected_not_found() -> None:
    trace = Trace.build([0.0], ["ghost"])
    spec = RoutingSpec(models={"A": ModelSpec("A")})
    record, _ = run(trace, spec=spec)
    assert list(record.status) == [REJECTED] and record.error[0] == "not_found"


def test_order_violations_and_jain() -> None:
    arrival = np.array([0.0, 1.0, 2.0, 3.0])
    assert order_violations(arrival, np.array([5.0, 6.0, 7.0, 8.0])) == 0
    # request 1 (arrived at 1) started before request 0 (arrived at 0): one violation
    assert order_violations(arrival, np.array([6.0, 5.0, 7.0, 8.0])) == 1
    # request 3 started before all three earlier ones
    assert order_violations(arrival, np.array([5.0, 6.0, 7.0, 1.0])) == 1
    # equal arrivals never violate each other
    assert order_violations(np.array([0.0, 0.0]), np.array([2.0, 1.0])) == 0
    assert jain([1.0, 1.0, 1.0]) == pytest.approx(1.0)
    assert jain([1.0, 0.0]) == pytest.approx(0.5)
    assert jain([]) == 1.0


def _comparable_summary(summary: dict) -> dict:
    summary = json.loads(json.dumps(summary))
    for result in summary["results"].values():
        result.pop("sim_wall_seconds")
    return summary


def _comparable(path: Path) -> dict:
    return _comparable_summary(json.loads(path.read_text()))


def test_same_seed_gives_byte_identical_outputs(tmp_path: Path) -> None:
    a, b = tmp_path / "run0", tmp_path / "run1"
    args = ["sim", str(ROOT / "scenarios/default.yaml"), "--ci", "--quiet", "--out"]
    assert main([*args, str(a)]) == 0
    # the second run in a fresh interpreter with another string-hash seed: no set-order leaks
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    subprocess.run([sys.executable, "-m", "llamaswap", *args, str(b)], env=env, check=True)
    assert _comparable(a / "summary.json") == _comparable(b / "summary.json")
    for name in ("serial/requests.csv", "serial/swaps.csv", "fifo/requests.csv", "fifo/swaps.csv"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    # a different seed changes the run
    from sim.experiment import run_experiment
    from sim.scenario import load_scenario

    scenario = load_scenario(ROOT / "scenarios/default.yaml")
    trace = scenario.load_trace(ci=True)
    seeded = run_experiment(scenario, trace, seed=scenario.seed)
    other = run_experiment(scenario, trace, seed=scenario.seed + 1)
    assert _comparable_summary(seeded.summary) == _comparable(a / "summary.json")
    assert _comparable_summary(other.summary) != _comparable(a / "summary.json")


def test_report_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "rep"
    code = main(
        [
            "sim",
            str(ROOT / "scenarios/default.yaml"),
            "--ci",
            "--out",
            str(out),
            "--scheduler",
            "fifo",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "fifo" in printed and f"Report: {out}/report.md" in printed.replace("\n", "")
    summary = json.loads((out / "summary.json").read_text())
    result = summary["results"]["fifo"]
    required = {
        "requests",
        "completed",
        "errors",
        "rejected",
        "cancelled",
        "swaps",
        "swaps_per_1k",
        "latency",
        "wait",
        "order_violations",
        "max_resident_models",
        "max_in_flight",
        "busy_fraction",
        "jain_fairness",
        "events",
        "sim_wall_seconds",
    }
    assert required <= set(result)
    assert set(result["latency"]) == {"mean", "p50", "p90", "p99", "max"}
    assert set(result["busy_fraction"]) == {"serving", "loading", "idle"}
    assert sum(result["busy_fraction"].values()) == pytest.approx(1.0, abs=1e-5)
    assert list(summary["results"]) == ["fifo"]  # --scheduler restricts the run
    header = (out / "fifo/requests.csv").read_text().splitlines()[0]
    assert header == "id,model,arrival,start,end,status,error"
    assert (out / "fifo/swaps.csv").read_text().startswith("start,end,model,evicted,ok\n")
    for png in ("latency_cdf.png", "swaps_over_time.png", "timeline.png", "wait_p99_by_model.png"):
        data = (out / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        width, height = struct.unpack(">II", data[16:24])
        assert width >= 400 and height >= 300
    report = (out / "report.md").read_text()
    assert "| scheduler |" in report and "![" in report and "timeline.png" in report
    assert "### Per model" in report and "| llama-8b | fifo |" in report


def test_sim_cli_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sim", str(tmp_path / "nope.yaml")]) == 2
    assert "no such scenario file" in capsys.readouterr().err
    assert main(["sim", str(ROOT / "scenarios/default.yaml"), "--scheduler", "lifo"]) == 2
    assert "unknown schedulers ['lifo']" in capsys.readouterr().err


def test_sim_with_trace_override(tmp_path: Path) -> None:
    trace = tmp_path / "t.csv"
    trace.write_text("arrival,model,service_time\n0,llama-8b,1\n1,gemma-2b,1\n")
    out = tmp_path / "o"
    assert main(
        [
            "sim",
            str(ROOT / "scenarios/default.yaml"),
            "--trace",
            str(trace),
            "--quiet",
            "--out",
            str(out),
        ]
    ) in (0, 1)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["trace"]["requests"] == 2
    assert summary["results"]["serial"]["completed"] == 2


def test_hooks_let_a_listener_watch_the_run() -> None:
    from sim.host import SimHooks

    seen: list[str] = []

    class Watching(SimHooks):
        def arrived(self, index: int, model: str, at: float) -> None:
            seen.append(model)

    trace = Trace.build([0.0, 1.0], ["A", "B"], service_time=[1.0, 1.0])
    spec = RoutingSpec(models={m: ModelSpec(m) for m in "AB"})
    record, _ = simulate(spec, "fifo", trace, {}, seed=1, hooks=Watching())
    assert seen == ["A", "B"] and list(record.status) == [OK, OK]


def test_load_longer_than_health_check_timeout_fails_the_load() -> None:
    trace = Trace.build([0.0], ["A"], service_time=[1.0])
    spec = RoutingSpec(models={"A": ModelSpec("A")}, health_check_timeout=20.0)
    record, summary = run(trace, spec=spec, load_time=50.0)
    assert list(record.status) == [ERROR] and record.error[0] == "load_failed"
    assert record.end[0] == 20.0  # failed at the core's health deadline, not at the late "ready"
    assert record.swaps[0][4] == 0
    assert summary["failed_loads"] == 1


def test_slow_unload_is_killed_after_the_graceful_window() -> None:
    # ttl 5 s: idle unload at t=8; unload_time 30 s exceeds unload_timeout 10 s -> SIGKILL at 18.
    trace = Trace.build([0.0, 12.0], ["A", "A"], service_time=[1.0, 1.0])
    spec = RoutingSpec(models={"A": ModelSpec("A", ttl=5.0, unload_timeout=10.0)})
    record, _ = run(trace, spec=spec, unload_time=30.0)
    states = [(at, code) for at, model, code in record.states]
    assert (8.0, 3) in states and (18.0, 0) in states  # stopping at 8, stopped (killed) at 18
    assert record.start[1] == 20.0  # the restart waited for the kill, then loaded for 2 s


def test_requests_csv_quotes_awkward_ids(tmp_path: Path) -> None:
    import csv

    from sim.report import write_requests_csv

    trace = Trace.build([0.0, 1.0], ["A", "A"], service_time=[1.0, 1.0], ids=["a,b", 'say "hi"'])
    record, _ = run(trace)
    write_requests_csv(tmp_path / "r.csv", record, trace)
    rows = list(csv.DictReader((tmp_path / "r.csv").open()))
    assert [r["id"] for r in rows] == ["a,b", 'say "hi"']
    assert [r["status"] for r in rows] == ["ok", "ok"]


def test_gantt_bars_closer_than_a_pixel_are_merged() -> None:
    from sim.plots import _merge

    bars = [(10.0, 1.0), (0.0, 2.0), (2.5, 1.0), (20.0, 5.0), (21.0, 1.0)]
    assert _merge(bars, 1.0) == [(0.0, 3.5), (10.0, 1.0), (20.0, 5.0)]
    assert _merge(bars, 0.0) == [(0.0, 2.0), (2.5, 1.0), (10.0, 1.0), (20.0, 5.0)]


def test_arrivals_happen_at_their_exact_trace_time() -> None:
    # found by the property test: now + (arrival - now) missed the arrival by one ulp, so the
    # request "started" before it arrived
    arrival = [1.5400213895729316, 33.86110759318226]
    trace = Trace.build(arrival, ["A", "A"], service_time=[1.0, 1.0])
    record, summary = run(trace, "serial", load_time=0.0)
    assert list(record.start) == arrival
    assert summary["wait"]["p50"] == 0.0


# ---------------------------------------------------------------------- the tie rule


def _tie_run(trace: Trace, scheduler: str) -> list[int]:
    # A admits one request at a time (concurrencyLimit 1); C is independent of A (own group).
    from llamaswap.core.spec import GroupSpec

    spec = RoutingSpec(
        models={"A": ModelSpec("A", concurrency_limit=1), "C": ModelSpec("C")},
        groups=(GroupSpec("a", ("A",), exclusive=False), GroupSpec("c", ("C",), exclusive=False)),
    )
    record, _ = run(trace, scheduler, spec=spec, load_time=1.0)
    return list(record.status)


@pytest.mark.parametrize("scheduler", ["serial", "fifo", "batch-aging"])
@pytest.mark.parametrize("unrelated", [False, True])
def test_a_completion_runs_before_an_arrival_at_the_same_instant(
    scheduler: str, unrelated: bool
) -> None:
    """A's first request loads 0..1 and is served 1..6; the second arrives at exactly 6. The
    completion runs first, so the second is admitted (limit 1), with or without an unrelated
    request for C in between. Before the tie rule the arrival was scheduled when the previous
    arrival fired: at t=0 (before the completion, scheduled at t=1) it ran first and got 429;
    after C's arrival at t=3 it ran second and was served."""
    arrivals, models, service = [0.0, 6.0], ["A", "A"], [5.0, 1.0]
    if unrelated:
        arrivals, models, service = [0.0, 3.0, 6.0], ["A", "C", "A"], [5.0, 1.0, 1.0]
    trace = Trace.build(arrivals, models, service_time=service)
    assert _tie_run(trace, scheduler) == [OK] * len(trace)


def test_client_events_at_one_instant_run_in_trace_order() -> None:
    """Three arrivals at t=2 for A (limit 1, loaded and idle): the first in trace order is
    admitted, the other two are over the limit, whatever came before."""
    trace = Trace.build([0.0, 2.0, 2.0, 2.0], ["A"] * 4, service_time=[0.5, 1.0, 1.0, 1.0])
    assert _tie_run(trace, "fifo") == [OK, OK, REJECTED, REJECTED]


def test_timers_land_on_their_absolute_time_where_the_naive_delay_misses() -> None:
    import simpy

    from sim.host import call_at

    assert 2.2 + (10.4 - 2.2) != 10.4  # SimPy's now + delay would miss by an ulp
    env = simpy.Environment()
    fired: list[float] = []
    env.timeout(2.2).callbacks.append(
        lambda _ev: call_at(env, 10.4, None, lambda _e: fired.append(env.now))
    )
    call_at(env, 1.0, None, lambda _e: call_at(env, 0.5, None, lambda _f: fired.append(env.now)))
    env.run()
    assert fired == [1.0, 10.4]  # a time in the past fires now
