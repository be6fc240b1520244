"""Sweep scaling benchmark (issue 18): a 40-run grid in a plain loop, on 1 and on 2 Dask workers.

The grid: the bundled default scenario's config and timing, a synthetic trace of ``--requests``
requests (runs of a few seconds each), 4 schedulers x 5 loads x 2 seeds. Measured:

- ``loop``: the same 40 runs called one after another in this process (``sim.sweep.execute``,
  the function the workers run), no Dask at all;
- ``dask-1`` / ``dask-2``: ``run_sweep`` on an embedded ``LocalCluster`` of 1 / 2 worker processes,
  end to end (cluster start and stop, result files, table); ``cluster`` = starting and closing an
  idle one. The overhead of going through Dask is measured inside each sweep: wall = the time
  the workers were not running a run (``N x (sweep - cluster) - sum of run times``), CPU = all
  CPU of this process and its reaped children (the workers) minus the runs' own CPU; both as a
  share of the runs' time. (``dask-1 - cluster - loop`` is printed too, but the shared box's
  load changes between the two measurements, so it is noise);
- ``concurrency``: the runs' summed wall time / the sweep's wall time, i.e. how many workers were
  busy on average: the speed-up an otherwise idle box shows (on a shared box the wall-clock ratio
  is also printed, and only means something when the box is quiet);
- client cost per result (writing its JSON) and the table build, for the 10,000-run extrapolation.

Not a test: numbers depend on what else the machine runs (the README says so next to them).

    .venv/bin/python bench/sweep_scaling.py [--requests 20000] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
SCHEDULERS = [
    "serial",
    "fifo",
    "batch-aging",
    {"label": "batch-aging+slots", "use": "batch-aging", "settings": {"slots": 4}},
]
LOADS = [0.5, 0.75, 1.0, 1.5, 2.0]
SEEDS = [1, 2]


def write_grid(tmp: Path, requests: int) -> Path:
    scenario = yaml.safe_load((ROOT / "scenarios" / "default.yaml").read_text())
    rate = 1.0
    scenario.update(name="bench-sweep", expect=[], ci={})
    scenario["trace"]["synthetic"].update(duration=requests / rate, rate=rate, bursts=[])
    (tmp / "bench-sweep.yaml").write_text(yaml.safe_dump(scenario))
    sweep = {
        "name": "bench",
        "bases": [str(tmp / "bench-sweep.yaml")],
        "axes": {"scheduler": SCHEDULERS, "load": LOADS, "seed": SEEDS},
    }
    path = tmp / "bench.sweep.yaml"
    path.write_text(yaml.safe_dump(sweep))
    return path


def measure(requests: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="llamaswap-bench-sweep-") as scratch:
        return _measure(Path(scratch), requests)


def _cpu() -> float:
    """CPU seconds of this process and of its reaped children (the embedded workers, once closed)."""
    own, kids = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _measure(tmp: Path, requests: int) -> dict[str, Any]:
    from sim.sweep.engine import Options, connect, run_sweep
    from sim.sweep.execute import execute
    from sim.sweep.spec import load_sweep
    from sim.sweep.store import Store, rows, write_table

    sweep = load_sweep(write_grid(tmp, requests))
    assert len(sweep.runs) == 40
    n = len(sweep.runs)
    out: dict[str, Any] = {"runs": n, "requests_per_run": requests, "load_before": os.getloadavg()}

    t, c = time.perf_counter(), _cpu()
    results = {r.key: execute(r.spec, r.where) for r in sweep.runs}
    out["loop_s"], out["loop_cpu_s"] = time.perf_counter() - t, _cpu() - c
    walls = [res["wall_seconds"] for res in results.values()]
    out["run_s_mean"] = sum(walls) / len(walls)
    out["run_s_min"], out["run_s_max"] = min(walls), max(walls)
    out["run_cpu_s_mean"] = sum(res["cpu_seconds"] for res in results.values()) / n

    store = Store(tmp / "client-cost")
    t = time.perf_counter()
    for run in sweep.runs:
        store.save(run, results[run.key])
    out["client_save_ms_per_run"] = 1000 * (time.perf_counter() - t) / n
    write_table(rows(sweep.runs, store.existing()), tmp / "warm-up")  # imports pyarrow
    t = time.perf_counter()
    write_table(rows(sweep.runs, store.existing()), tmp / "client-cost")
    out["table_ms_per_run"] = 1000 * (time.perf_counter() - t) / n

    t, c = time.perf_counter(), _cpu()
    with connect(Options(tmp / "idle", workers=1)):
        pass
    out["cluster_s"], out["cluster_cpu_s"] = time.perf_counter() - t, _cpu() - c
    for workers in (1, 2):
        t, c = time.perf_counter(), _cpu()
        outcome = run_sweep(sweep, Options(tmp / f"dask-{workers}", workers=workers))
        wall, cpu = time.perf_counter() - t, _cpu() - c
        assert outcome.failed == 0 and outcome.ran == n
        busy = sum(d["wall_seconds"] for d in outcome.results.values())
        in_task = sum(d["cpu_seconds"] for d in outcome.results.values())
        out[f"dask{workers}_s"], out[f"dask{workers}_cpu_s"] = wall, cpu
        # how many runs were in progress on average: the speed-up an idle box would show
        out[f"dask{workers}_concurrency"] = busy / (wall - out["cluster_s"])
        # what Dask costs besides the runs, measured within this same sweep (so a load change on
        # the shared box between two measurements cannot masquerade as overhead)
        idle = workers * (wall - out["cluster_s"]) - busy
        out[f"dask{workers}_overhead_wall_pct"] = 100 * idle / busy
        out[f"dask{workers}_overhead_cpu_s_per_run"] = (cpu - out["cluster_cpu_s"] - in_task) / n
        out[f"dask{workers}_overhead_cpu_pct"] = (
            100 * (cpu - out["cluster_cpu_s"] - in_task) / in_task
        )
    one, two = (tmp / f"dask-{k}" / "results.csv" for k in (1, 2))
    out["rows_identical_1_vs_2"] = one.read_bytes() == two.read_bytes()
    out["speedup_2_vs_1_wall"] = out["dask1_s"] / out["dask2_s"]
    out["speedup_2_vs_1_concurrency"] = out["dask2_concurrency"] / out["dask1_concurrency"]
    # against the plain loop (only meaningful when the box's load did not change in between)
    out["loop_vs_dask1_wall_pct"] = (
        100 * (out["dask1_s"] - out["cluster_s"] - out["loop_s"]) / out["loop_s"]
    )
    out.update(task_throughput(tmp))
    out["load_after"] = os.getloadavg()
    return out


def task_throughput(tmp: Path, runs: int = 400) -> dict[str, Any]:
    """The serial ceiling: many near-empty runs (5 requests) on 2 workers; what is left of the wall
    time is per-run scheduler, transfer and client cost: the runs per second no N can exceed."""
    from sim.sweep.engine import Options, run_sweep
    from sim.sweep.spec import load_sweep

    seeds = list(range(runs // 4))
    sweep = {
        "name": "tiny",
        "bases": [str(ROOT / "scenarios" / "default.yaml")],
        "axes": {
            "scheduler": ["serial", "fifo", "batch-aging", "batch-aging"],
            "slice": [{"label": "five", "transforms": [{"limit": 5}]}],
            "seed": seeds,
        },
    }
    sweep["axes"]["scheduler"][3] = {"label": "ba2", "use": "batch-aging", "settings": {"slots": 2}}
    path = tmp / "tiny.sweep.yaml"
    path.write_text(yaml.safe_dump(sweep))
    loaded = load_sweep(path)
    t = time.perf_counter()
    outcome = run_sweep(loaded, Options(tmp / "tiny", workers=2))
    wall = time.perf_counter() - t
    busy = sum(d["wall_seconds"] for d in outcome.results.values())
    return {
        "tiny_runs": len(loaded.runs),
        "tiny_wall_s": wall,
        "tiny_run_s_mean": busy / len(loaded.runs),
        "tiny_ms_per_run": 1000 * wall / len(loaded.runs),
    }


def extrapolate(m: dict[str, Any], runs: int = 10_000) -> list[str]:
    """Wall time of ``runs`` runs on N workers, from the measured per-run costs (a paper model).

    compute = runs x CPU per run / N (perfectly parallel); serial = runs x the wall time per run of
    a sweep of near-empty runs (scheduler, transfers and the client storing every result: what
    no number of workers removes); table = runs x the table build per row (once, at the end).
    Wall ~ cluster start + max(compute, serial) + table; the bottleneck is whichever term leads.
    """
    # per-run serial cost: the tiny-run sweep's wall per run (cluster start included: pessimistic)
    overhead = m["tiny_ms_per_run"] / 1000
    table = m["table_ms_per_run"] / 1000
    lines = [
        "| CPU per run | workers | compute | serial (scheduler + client) | table | wall | bottleneck |",
        "|---:|---:|---:|---:|---:|---:|---|",
    ]
    for per_run in (m["run_cpu_s_mean"], 3.0):
        for n in (2, 8, 32, 128, 512, 2048):
            compute, serial = runs * per_run / n, runs * overhead
            wall = m["cluster_s"] + max(compute, serial) + runs * table
            lead = "compute" if compute >= serial else "scheduler + client"
            lines.append(
                f"| {per_run:.2f} s | {n} | {compute:,.0f} s | {serial:,.0f} s | "
                f"{runs * table:,.0f} s | {wall:,.0f} s | {lead} |"
            )
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=20_000, help="requests per run")
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args()
    m = measure(args.requests)
    for k, v in m.items():
        print(f"{k}: {v:.4g}" if isinstance(v, float) else f"{k}: {v}")
    print("\n".join(extrapolate(m)))
    if args.json:
        args.json.write_text(json.dumps(m, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
