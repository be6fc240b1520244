"""``llamaswap sweep`` on a real embedded Dask cluster: 13 runs (one deliberately broken) on 2 worker
processes, the same rows byte for byte on 1 worker, ``--resume`` skipping everything, and the
sweep file's expansion, keys and error messages."""

from __future__ import annotations

import csv
import itertools
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from llamaswap.cli import main
from sim.sweep.engine import Options, run_sweep
from sim.sweep.spec import SweepError, load_sweep, parse_sweep

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = str(ROOT / "scenarios" / "default.yaml")

SMALL: dict[str, Any] = {
    "name": "small",
    "bases": [DEFAULT],
    "axes": {
        "scheduler": [
            "serial",
            "fifo",
            {"label": "ba+slots", "use": "batch-aging", "settings": {"slots": 4}},
        ],
        "slice": [{"label": "head", "transforms": [{"limit": 250}]}],
        "load": [0.5, 1.5],
        "seed": [1, 2],
    },
    # A second grid: one run whose settings the scheduler rejects (recorded, the sweep goes on).
    "grids": [
        {},
        {
            "scheduler": [{"label": "broken", "use": "batch-aging"}],
            "settings": {"batch-aging": {"maxWait": [-5]}},
            "load": [1.0],
            "seed": [1],
        },
    ],
    "slo": {"latency": [20, 60]},
}


def _write(tmp: Path, data: dict[str, Any], name: str = "small.sweep.yaml") -> Path:
    path = tmp / name
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Any]:
    tmp = tmp_path_factory.mktemp("sweep")
    path = _write(tmp, SMALL)
    out = tmp / "two"
    outcome = run_sweep(load_sweep(path), Options(out, workers=2))
    return path, out, outcome


def test_rows_complete_and_the_broken_run_is_recorded(two_workers: tuple[Path, Path, Any]) -> None:
    _path, out, outcome = two_workers
    assert (outcome.total, outcome.ran, outcome.skipped, outcome.failed) == (13, 13, 0, 1)
    with (out / "results.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 13
    assert [int(r["run"]) for r in rows] == list(range(13))
    good = [r for r in rows if r["status"] == "done"]
    assert len(good) == 12
    # every axis combination once
    combos = {(r["scheduler"], float(r["load"]), int(r["seed"])) for r in good}
    assert combos == set(itertools.product(["serial", "fifo", "ba+slots"], [0.5, 1.5], [1, 2]))
    for r in good:
        assert int(r["requests"]) == 250 and r["latency.p99"] and r["swaps"]
        assert r["per_model.gemma-2b.wait_p99"] and r["per_model.llama-8b.swaps"]
        assert 0 <= float(r["slo.latency_le_20s"]) <= float(r["slo.latency_le_60s"]) <= 1
        assert r["error"] == ""
    (bad,) = [r for r in rows if r["status"] != "done"]
    assert bad["scheduler"] == "broken" and "maxWait" in bad["error"] and "\n" not in bad["error"]
    assert bad["latency.p99"] == ""
    # Dask's temp and spill files went to a temp dir, not here
    assert not list(ROOT.glob("dask-*")) and not list(Path.cwd().glob("dask-*"))
    # the load axis does what it says: 3x the arrival rate packs the same requests into less time
    fifo = {(float(r["load"]), int(r["seed"])): r for r in good if r["scheduler"] == "fifo"}
    assert float(fifo[1.5, 1]["makespan"]) < float(fifo[0.5, 1]["makespan"])


def test_one_worker_gives_byte_identical_rows(
    two_workers: tuple[Path, Path, Any], tmp_path: Path
) -> None:
    path, out, _ = two_workers
    one = tmp_path / "one"
    run_sweep(load_sweep(path), Options(one, workers=1))
    assert (one / "results.csv").read_bytes() == (out / "results.csv").read_bytes()
    assert (one / "results.parquet").read_bytes() == (out / "results.parquet").read_bytes()


def test_resume_skips_everything(two_workers: tuple[Path, Path, Any]) -> None:
    path, out, _ = two_workers
    before = (out / "results.csv").read_bytes()
    again = run_sweep(load_sweep(path), Options(out, workers=2, resume=True))
    assert (again.ran, again.skipped, again.failed) == (0, 13, 1)
    assert (out / "results.csv").read_bytes() == before


def test_an_existing_out_dir_needs_resume(two_workers: tuple[Path, Path, Any], capsys: Any) -> None:
    path, out, _ = two_workers
    assert main(["sweep", str(path), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--resume" in err and str(out) in err


def test_the_cli_resumes_and_writes_table_and_figures(
    two_workers: tuple[Path, Path, Any], capsys: Any
) -> None:
    path, out, _ = two_workers
    before = (out / "results.csv").read_bytes()
    assert main(["sweep", str(path), "--out", str(out), "--resume", "--quiet"]) == 0
    captured = capsys.readouterr()
    assert f"13 runs (0 run now, 13 already in {out}), 1 failed" in captured.out
    assert "failed: run 12" in captured.err and "maxWait" in captured.err
    assert (out / "results.csv").read_bytes() == before
    names = {p.name for p in (out / "figures").glob("*.png")}
    assert {
        "p99-latency-vs-load.png",
        "pareto-p99-vs-swaps.png",
        "slo-attainment-vs-load.png",
    } <= names


# ---------------------------------------------------------------- the sweep file, no cluster


def test_expansion_keys_and_dedupe(tmp_path: Path) -> None:
    sweep = load_sweep(_write(tmp_path, SMALL))
    assert len(sweep.runs) == 13
    assert len({r.key for r in sweep.runs}) == 13
    # the same run named in two grids runs once
    twice = {**SMALL, "grids": [{}, {"seed": [2, 1]}]}
    assert len(parse_sweep(twice, tmp_path / "t.yaml").runs) == 12
    # keys depend on the spec, not on where the sweep file lives
    other = tmp_path / "elsewhere"
    other.mkdir()
    assert [r.key for r in load_sweep(_write(other, SMALL)).runs] == [r.key for r in sweep.runs]


def test_a_changed_scenario_changes_every_key(tmp_path: Path) -> None:
    scenario = tmp_path / "s.yaml"
    text = Path(DEFAULT).read_text()
    scenario.write_text(text)
    data = {**SMALL, "bases": [str(scenario)], "grids": [{}]}
    before = {r.key for r in parse_sweep(data, tmp_path / "t.yaml").runs}
    scenario.write_text(text.replace("seed: 7", "seed: 8"))
    after = {r.key for r in parse_sweep(data, tmp_path / "t.yaml").runs}
    assert before.isdisjoint(after)


def test_settings_grid_applies_only_to_its_scheduler(tmp_path: Path) -> None:
    data = {
        "bases": [DEFAULT],
        "axes": {
            "scheduler": ["fifo", "batch-aging"],
            "settings": {"batch-aging": {"maxWait": [30, 60, 90], "slots": [1, 4]}},
            "seed": [1],
        },
    }
    runs = parse_sweep(data, tmp_path / "g.yaml").runs
    assert [r.axes["use"] for r in runs].count("fifo") == 1
    grid = sorted(r.axes["settings"] for r in runs if r.axes["use"] == "batch-aging")
    assert len(grid) == 6 and grid[0] == '{"maxWait":30,"slots":1}'


@settings(max_examples=30, deadline=None)
@given(
    loads=st.lists(
        st.sampled_from([0.25, 0.5, 1.0, 2.0, 4.0]), min_size=1, max_size=4, unique=True
    ),
    seeds=st.lists(st.integers(0, 50), min_size=1, max_size=4, unique=True),
    schedulers=st.lists(
        st.sampled_from(["serial", "fifo", "batch-aging"]), min_size=1, max_size=3, unique=True
    ),
    reverse=st.booleans(),
)
def test_expansion_is_the_full_product_and_keys_ignore_key_order(
    loads: list[float], seeds: list[int], schedulers: list[str], reverse: bool
) -> None:
    axes = {"scheduler": schedulers, "load": loads, "seed": seeds}
    if reverse:
        axes = dict(reversed(list(axes.items())))
    runs = parse_sweep({"bases": [DEFAULT], "axes": axes}, Path(DEFAULT)).runs
    assert len(runs) == len(loads) * len(seeds) * len(schedulers)
    assert {(r.axes["scheduler"], r.axes["load"], r.axes["seed"]) for r in runs} == set(
        itertools.product(schedulers, [float(x) for x in loads], seeds)
    )
    baseline = parse_sweep({"bases": [DEFAULT], "axes": dict(sorted(axes.items()))}, Path(DEFAULT))
    assert {r.key for r in runs} == {r.key for r in baseline.runs}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"axes": {"memory": [8, 16]}}, "memory budgets need co-residency (issue 14)"),
        ({"axes": {"schedulr": ["fifo"]}}, "unknown axes ['schedulr']"),
        ({"axes": {"scheduler": ["fifoo"]}}, "scheduler[0].use: unknown scheduler 'fifoo'"),
        ({"axes": {"load": [0]}}, "load: rate_scale values must be positive"),
        ({"axes": {"load": {"offerd": [0.5]}}}, "load: a list (rate scale) or one of"),
        (
            {"axes": {"slice": [{"label": "x", "transforms": [{"limt": 5}]}]}},
            "slice[0].transforms[0]",
        ),
        ({"axes": {"seed": ["one"]}}, "seed: integers"),
        ({"bases": ["nope.yaml"]}, "bases[0]: "),
        ({"bases": []}, "bases: a non-empty list"),
        ({"colour": 1}, "unknown keys ['colour']"),
        ({"slo": {"latency": [-1]}}, "slo.latency: positive numbers"),
    ],
)
def test_bad_sweep_files_give_one_clear_line(
    tmp_path: Path, capsys: Any, change: dict[str, Any], message: str
) -> None:
    data = {"name": "bad", "bases": [DEFAULT], "axes": {"seed": [1]}, **change}
    path = _write(tmp_path, data)
    with pytest.raises(SweepError) as info:
        load_sweep(path)
    assert message in str(info.value) and str(path) in str(info.value)
    assert main(["sweep", str(path), "--out", str(tmp_path / "o"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err


def test_missing_and_unparsable_sweep_files(tmp_path: Path, capsys: Any) -> None:
    assert main(["sweep", str(tmp_path / "none.yaml")]) == 2
    assert "no such sweep file" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("bases: [a\n")
    assert main(["sweep", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "not valid YAML" in err and err.count("\n") == 1


# ---------------------------------------------------------------- bases, on this process


def test_offered_load_is_demand_over_span_and_slots() -> None:
    from llamaswap.timing import TimingProfile
    from sim.sweep.bases import offered_load, scale_to
    from sim.trace import Trace

    # 4 requests of 10 s over 100 s on 2 slots: 40 / (100 * 2) = 20% of the GPU
    trace = Trace.build([0.0, 10.0, 50.0, 100.0], ["A", "B", "A", "B"], service_time=[10.0] * 4)
    profiles = {"A": TimingProfile(parallel=2), "B": TimingProfile(parallel=2)}
    assert offered_load(trace, profiles) == pytest.approx(0.2)
    scaled = scale_to(trace, "offered", 0.4, profiles)
    assert float(scaled.arrival[-1]) == pytest.approx(50.0)
    assert float(scale_to(trace, "rate_scale", 4.0, profiles).arrival[-1]) == pytest.approx(25.0)


def test_a_timing_override_and_a_slice_reach_the_simulation(tmp_path: Path) -> None:
    from sim.sweep.execute import execute

    data = {
        "bases": [DEFAULT],
        "axes": {
            "scheduler": ["fifo"],
            "slice": [{"label": "head", "transforms": [{"limit": 120}]}],
            "timing": ["base", {"label": "slow", "timing": {"default": {"load_time": 90}}}],
        },
    }
    base, slow = (execute(r.spec, r.where) for r in parse_sweep(data, tmp_path / "t.yaml").runs)
    assert base["metrics"]["requests"] == slow["metrics"]["requests"] == 120
    assert slow["metrics"]["latency"]["p99"] > base["metrics"]["latency"]["p99"] + 60


def test_a_small_trace_travels_with_the_task(tmp_path: Path) -> None:
    """A worker without the trace file fails that run (path named); with it shipped, it runs."""
    from sim.sweep.engine import connect, ship_traces
    from sim.sweep.execute import execute
    from sim.synthetic import synthetic_trace
    from sim.trace import write_trace

    write_trace(
        synthetic_trace({"duration": 300, "rate": 0.5, "models": ["a", "b"]}, 1, "t"),
        tmp_path / "t.csv",
    )
    scenario = {
        "name": "shipped",
        "config": {"models": {"a": {}, "b": {}}, "routing": {"scheduler": {"use": "fifo"}}},
        "trace": {"file": str(tmp_path / "t.csv")},
    }
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(scenario))
    (run,) = parse_sweep({"bases": [str(tmp_path / "s.yaml")]}, tmp_path / "x.yaml").runs
    with connect(Options(tmp_path / "o", workers=1)) as client:
        shipped = ship_traces(client, [run])["shipped"]
        assert shipped is not None
        (tmp_path / "t.csv").unlink()  # from now on only the shipped copy exists
        missing = client.submit(execute, run.spec, run.where, None, pure=False).result()
        ok = client.submit(execute, run.spec, run.where, shipped, pure=False).result()
    assert missing["status"] == "failed" and "t.csv" in missing["error"]
    assert ok["status"] == "done" and ok["metrics"]["requests"] > 100
