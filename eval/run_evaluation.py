"""Regenerate the whole scheduler evaluation of issue 6 with one command (from the checkout)::

    .venv/bin/python -m eval.run_evaluation            # the cells run in parallel, on every core

The cells are the sweep ``eval/evaluation.sweep.yaml`` (``serial``, ``fifo`` and ``batch-aging``
with its documented defaults and with ``slots`` set to the upstream's parallel slots: planned
switches, plus the always-resident and free-swaps bounds, on four workloads built from the real
traces in ``../shared/traces/raw``, see ``eval/workloads.py`` and ``eval/sweep_base.py``),
run by ``llamaswap sweep``'s engine on an embedded Dask cluster (``--workers N``) or on a running
one (``--cluster tcp://host:8786``). This script is the report step: it reads the sweep's results
back into ``reports/eval/results.json`` and writes the figures under ``docs/figures/`` and the
generated tables between the markers of ``docs/evaluation.md``. Same inputs, same seed =>
byte-identical JSON and tables, on any number of workers.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib
import yaml

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from eval import deadline_reference as dref
from eval import workloads as wl
from eval.sweep_base import BOUND, BUILDERS, FREE, INSTANT, PLANNED, RAW, cell_inputs
from llamaswap.core.batch_aging import DEFAULTS as BATCH_AGING_DEFAULTS
from sim.metrics import summarize
from sim.run import simulate
from sim.shared import SharedDirMissingError, shared_path

ROOT = Path(__file__).resolve().parents[1]

SWEEP = ROOT / "eval" / "evaluation.sweep.yaml"
"""The cells; the loads, maxWait values and seeds below are read from its named grids."""
_GRIDS = {g["name"]: g for g in yaml.safe_load(SWEEP.read_text())["grids"]}
LOADS = tuple(_GRIDS["loads"]["load"]["offered"])
NOMINAL = 0.7
SCHEDULERS = ("serial", "fifo", "batch-aging", PLANNED)
POLICIES = ("batch-aging", PLANNED)
"""The issue's new policy, in its two configurations; each is judged against fifo."""
BOUNDS = (BOUND, FREE)
PEAK_WINDOW = 300.0
"""Seconds: the window of the burstiness figure reported per workload."""
PARETO_MAX_WAITS = tuple(_GRIDS["pareto"]["settings"]["batch-aging"]["maxWait"])
"""``maxWait`` values traced at nominal load for the Pareto chart (the other settings at defaults)."""
SEED = 1
ROBUSTNESS_SEEDS = tuple(_GRIDS["seeds"]["seed"])
"""Seeds of the nominal-load goal check (a seed draws the load times; arrivals are the trace's)."""
COLORS = {
    "serial": "tab:red",
    "fifo": "tab:blue",
    "batch-aging": "tab:green",
    PLANNED: "tab:purple",
    BOUND: "black",
    FREE: "tab:gray",
}
BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"


def _metrics(summary: Mapping[str, Any]) -> dict[str, Any]:
    """The numbers the evaluation uses from a ``sim.metrics.summarize`` result."""
    return {
        "requests": summary["requests"],
        "completed": summary["completed"],
        "latency": summary["latency"],
        "wait_max": summary["wait"]["max"],
        "wait_p99": summary["wait"]["p99"],
        "swaps": summary["swaps"],
        "swaps_per_1k": summary["swaps_per_1k"],
        "busy_fraction": summary["busy_fraction"],
        "makespan": summary["makespan"],
        "per_model": {
            m: {"requests": v["requests"], "wait_p99": v["wait_p99"]}
            for m, v in summary["per_model"].items()
        },
    }


def run_cell(
    workload: wl.Workload,
    setting: wl.LoadSetting,
    rho: float,
    scheduler: str,
    settings: Mapping[str, Any] | None = None,
    seed: int = SEED,
) -> dict[str, Any]:
    """One cell in this process (the sweep runs the same ``cell_inputs`` on its workers)."""
    cell = cell_inputs(workload, setting, rho, scheduler, settings, seed)
    record, wall = simulate(cell.spec, cell.scheduler, cell.trace, cell.profiles, cell.seed)
    summary = summarize(record, cell.trace, wall)
    if summary["completed"] != summary["requests"]:
        # A failed or rejected request drops out of the latency statistics and would flatter the
        # policy that failed it: every cell must complete every request.
        raise RuntimeError(
            f"{workload.name}/{setting.name}/{rho:g}/{scheduler}: only {summary['completed']} of "
            f"{summary['requests']} requests completed (errors {summary['errors']}, rejected "
            f"{summary['rejected']}, cancelled {summary['cancelled']})"
        )
    return _metrics(summary)


def sweep_data(quick: bool = False) -> dict[str, Any]:
    """The sweep file; ``quick``: two load levels and no per-seed re-runs (a smoke run)."""
    data: dict[str, Any] = yaml.safe_load(SWEEP.read_text())
    if quick:
        grids = [g for g in data["grids"] if g["name"] != "seeds"]
        for g in grids:
            if g["name"] == "loads":
                g["load"] = {"offered": [0.5, NOMINAL]}
        data["grids"] = grids
    return data


class Cells:
    """The sweep's results, looked up by what the report asks for."""

    def __init__(self, runs: Sequence[Any], results: Mapping[str, Mapping[str, Any]]) -> None:
        self.by_axes = {}
        failed = []
        for run in runs:
            doc = results[run.key]
            if doc["status"] != "done":
                failed.append(
                    f"{run.axes['base']}/{run.axes['timing']}/{run.axes['scheduler']}: {doc['error']}"
                )
                continue
            a = run.axes
            key = (a["base"], a["timing"], a["scheduler"], a["load"], a["settings"], a["seed"])
            self.by_axes[key] = _metrics(doc["metrics"])
        if failed:
            raise RuntimeError(f"{len(failed)} evaluation cells failed: " + "; ".join(failed[:5]))

    def get(
        self,
        workload: str,
        timing: str,
        scheduler: str,
        rho: float,
        settings: Mapping[str, Any] | None = None,
        seed: int = SEED,
    ) -> dict[str, Any]:
        from sim.sweep.spec import canonical

        return self.by_axes[
            (workload, timing, scheduler, float(rho), canonical(dict(settings or {})), seed)
        ]


def run_sweep_cells(
    quick: bool, out: Path, workers: int | None, cluster: str | None, resume: bool
) -> Cells:
    from sim.sweep.engine import Options, run_sweep
    from sim.sweep.spec import parse_sweep

    sweep = parse_sweep(sweep_data(quick), SWEEP)
    if not resume and out.exists():
        shutil.rmtree(out)  # this script's own output: results are keyed by spec, not by code
    outcome = run_sweep(sweep, Options(out, workers, cluster, resume), _progress(len(sweep.runs)))
    print(
        f"  sweep: {outcome.total} cells ({outcome.skipped} resumed) in {outcome.seconds:.0f} s",
        flush=True,
    )
    return Cells(sweep.runs, outcome.results)


def sweep_figures(out: Path) -> None:
    """The sweep's own figures (spread over seeds, SLO attainment) from its table, in OUT/sweep."""
    import pyarrow.parquet as pq

    from sim.sweep.figures import write_figures as draw

    draw(pq.read_table(out / "results.parquet").to_pylist(), out / "figures")


def _progress(total: int) -> Any:
    step = max(total // 10, 1)

    def report(done: int, failed: int, left: int) -> None:
        finished = total - left
        if finished and (finished % step == 0 or not left):
            print(f"  {finished}/{total} cells ({failed} failed)", flush=True)

    return report


def run_all(
    quick: bool = False,
    out: Path | None = None,
    workers: int | None = None,
    cluster: str | None = None,
    resume: bool = False,
) -> dict[str, Any]:
    loads = (0.5, NOMINAL) if quick else LOADS
    sweep_out = out if out is not None else ROOT / "reports" / "eval" / "sweep"
    cells = run_sweep_cells(quick, sweep_out, workers, cluster, resume)
    out_doc: dict[str, Any] = {
        "loads": list(loads),
        "nominal": NOMINAL,
        "seed": SEED,
        "workloads": {},
    }
    for name, build in BUILDERS.items():
        workload = build(RAW)
        entry: dict[str, Any] = {
            "title": workload.title,
            "note": workload.note,
            "requests": len(workload.trace),
            "models": {
                m: int((workload.trace.model == i).sum()) for i, m in enumerate(workload.models)
            },
            "mean_service": round(workload.mean_service(), 3),
            "parallel": workload.profile.parallel,
            "peak_load": [round(x, 3) for x in workload.peak_load(NOMINAL, PEAK_WINDOW)],
            "settings": {},
        }
        for setting in workload.settings:
            t = setting.name
            results = {
                scheduler: {f"{rho:g}": cells.get(name, t, scheduler, rho) for rho in loads}
                for scheduler in (*SCHEDULERS, *BOUNDS)
            }
            pareto = {
                f"{mw:g}": cells.get(name, t, "batch-aging", NOMINAL, {"maxWait": mw})
                for mw in PARETO_MAX_WAITS
            }
            by_seed: dict[str, dict[str, list[float]]] = {p: {} for p in POLICIES}
            for seed in () if quick else ROBUSTNESS_SEEDS:
                fifo = cells.get(name, t, "fifo", NOMINAL, seed=seed)
                for policy in POLICIES:
                    mine = cells.get(name, t, policy, NOMINAL, seed=seed)
                    by_seed[policy][str(seed)] = [round(x, 4) for x in ratios_of(fifo, mine)]
            instant = {
                scheduler: cells.get(name, INSTANT, scheduler, NOMINAL)["wait_max"]
                for scheduler in ("fifo", "batch-aging")
            }
            one_slot = workload.profile.parallel == 1
            planning = one_slot_reference(workload, setting) if one_slot else {}
            floor = one_slot_floor(workload, setting) if one_slot else None
            entry["settings"][setting.name] = {
                "label": setting.label,
                "mean_load_time": round(setting.load_time.mean(), 3),
                "results": results,
                "pareto_max_wait": pareto,
                "nominal_ratios_by_seed": by_seed,
                "nominal_max_wait_with_instant_loads": instant,
                "one_slot_planning_reference": planning,
                "one_slot_max_wait_floor": floor,
            }
            print(f"  {workload.name} / {setting.name}: done", flush=True)
        out_doc["workloads"][workload.name] = entry
    return out_doc


def one_slot_reference(workload: wl.Workload, setting: wl.LoadSetting) -> dict[str, Any]:
    """The deadline-planning yardstick of ``deadline_reference`` at nominal load, per seed."""
    trace = workload.at_load(NOMINAL)
    one_slot = dref.OneSlotTrace(trace.arrival, workload.service_times(), trace.model)
    max_wait = float(BATCH_AGING_DEFAULTS["maxWait"])
    return {
        str(seed): dref.reference(one_slot, setting.load_time, seed, max_wait)
        for seed in ROBUSTNESS_SEEDS
    }


def one_slot_floor(workload: wl.Workload, setting: wl.LoadSetting) -> float:
    """The max wait no one-slot schedule beats at nominal load (``deadline_reference``)."""
    trace = workload.at_load(NOMINAL)
    one_slot = dref.OneSlotTrace(trace.arrival, workload.service_times(), trace.model)
    return round(dref.max_wait_floor(one_slot, dref.shortest_load(setting.load_time)), 3)


# ---------------------------------------------------------------------- figures


def _panels(results: Mapping[str, Any]) -> list[tuple[str, str, Mapping[str, Any]]]:
    return [
        (name, sname, s)
        for name, w in results["workloads"].items()
        for sname, s in w["settings"].items()
    ]


def _grid(results: Mapping[str, Any]) -> tuple[Any, Any]:
    n = len(results["workloads"])
    fig, axes = plt.subplots(2, n, figsize=(4.6 * n, 7.2), squeeze=False)
    return fig, axes


def _title(results: Mapping[str, Any], name: str, setting: Mapping[str, Any]) -> str:
    return f"{results['workloads'][name]['title'].split(',')[0]}\n{setting['label']}"


def line_figure(
    results: Mapping[str, Any], metric: str, ylabel: str, path: Path, log: bool
) -> None:
    fig, axes = _grid(results)
    names = list(results["workloads"])
    loads = results["loads"]
    for name, sname, setting in _panels(results):
        ax = axes[0 if sname == "fast" else 1][names.index(name)]
        for scheduler, cells in setting["results"].items():
            ys = [_pick(cells[f"{rho:g}"], metric) for rho in loads]
            style = {BOUND: "--", FREE: ":"}.get(scheduler, "-")
            ax.plot(
                [100 * r for r in loads],
                ys,
                style,
                marker="o",
                ms=3,
                label=scheduler,
                color=COLORS[scheduler],
            )
        ax.set_title(_title(results, name, setting), fontsize=9)
        ax.set_xlabel("offered load (% of one GPU)")
        ax.set_ylabel(ylabel)
        if log:
            ax.set_yscale("log")
        ax.grid(True, alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90, metadata={"Software": None})
    plt.close(fig)


def pareto_figure(results: Mapping[str, Any], path: Path) -> None:
    """p99 latency vs swaps per 1k requests: each scheduler's line runs over the load sweep; the
    dotted green line is batch-aging at nominal load with maxWait swept."""
    fig, axes = _grid(results)
    names = list(results["workloads"])
    loads = results["loads"]
    for name, sname, setting in _panels(results):
        ax = axes[0 if sname == "fast" else 1][names.index(name)]
        for scheduler in SCHEDULERS:
            cells = setting["results"][scheduler]
            xs = [cells[f"{rho:g}"]["swaps_per_1k"] for rho in loads]
            ys = [cells[f"{rho:g}"]["latency"]["p99"] for rho in loads]
            ax.plot(xs, ys, "-", marker="o", ms=3, color=COLORS[scheduler], label=scheduler)
            for x, y, rho in zip(xs, ys, loads, strict=True):
                ax.annotate(f"{100 * rho:.0f}%", (x, y), fontsize=6, alpha=0.6)
        sweep = setting["pareto_max_wait"]
        ax.plot(
            [c["swaps_per_1k"] for c in sweep.values()],
            [c["latency"]["p99"] for c in sweep.values()],
            ":",
            marker="s",
            ms=3,
            color=COLORS["batch-aging"],
            label=f"batch-aging @{100 * NOMINAL:.0f}%, maxWait {'/'.join(sweep)} s",
        )
        ax.set_title(_title(results, name, setting), fontsize=9)
        ax.set_xlabel("swaps per 1k requests")
        ax.set_ylabel("p99 latency (s)")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=90, metadata={"Software": None})
    plt.close(fig)


def _pick(cell: Mapping[str, Any], metric: str) -> float:
    value: Any = cell
    for part in metric.split("."):
        value = value[part]
    return float(value)


def write_figures(results: Mapping[str, Any], out: Path) -> list[str]:
    out.mkdir(parents=True, exist_ok=True)
    files = {
        "eval-p99-latency.png": ("latency.p99", "p99 latency (s)", True),
        "eval-max-wait.png": ("wait_max", "max wait (s)", True),
        "eval-swaps.png": ("swaps_per_1k", "swaps per 1k requests", True),
    }
    for filename, (metric, label, log) in files.items():
        line_figure(results, metric, label, out / filename, log)
    pareto_figure(results, out / "eval-pareto.png")
    return [*files, "eval-pareto.png"]


# ---------------------------------------------------------------------- tables


def _f(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def tables(results: Mapping[str, Any]) -> str:
    nominal = f"{results['nominal']:g}"
    lines = [
        f"Generated by `eval/run_evaluation.py` (seed {results['seed']}). Nominal load = "
        f"{100 * results['nominal']:.0f}% of one GPU. Ratios are policy / fifo, for `batch-aging` "
        f"with its defaults and for `{PLANNED}` (the same policy with `slots` set to the "
        "upstream's parallel slots: planned switches); the goal is p99 <= 0.8, max wait <= 0.5, "
        "swaps <= 1.1.",
        "",
    ]
    verdicts: list[str] = []
    for name, w in results["workloads"].items():
        lines += [
            f"#### {w['title']}",
            "",
            f"{w['requests']:,} requests; models {w['models']}; "
            f"mean service {w['mean_service']:g} s, {w['parallel']} slot(s). {w['note']}. "
            f"Burstiness at {100 * results['nominal']:.0f}%: the busiest {PEAK_WINDOW:g} s window offers "
            f"{100 * w['peak_load'][0]:.0f}% of the GPU, {100 * w['peak_load'][1]:.0f}% for the busiest single model.",
            "",
        ]
        for sname, s in w["settings"].items():
            lines += [
                f"*{s['label']}* (mean load {s['mean_load_time']:g} s), at {100 * results['nominal']:.0f}% load:",
                "",
                "| scheduler | mean latency | p50 | p99 | max wait | swaps | swaps/1k | GPU serving / loading / idle |",
                "|---|---:|---:|---:|---:|---:|---:|---|",
            ]
            for scheduler, cells in s["results"].items():
                c = cells[nominal]
                lat = c["latency"]
                busy = c["busy_fraction"]
                bound = scheduler in BOUNDS
                lines.append(
                    f"| {scheduler} | {_f(lat['mean'], 1)} | {_f(lat['p50'], 1)} | {_f(lat['p99'], 1)} "
                    f"| {_f(c['wait_max'], 1)} | {'-' if bound else c['swaps']} "
                    f"| {'-' if bound else _f(c['swaps_per_1k'], 1)} "
                    f"| {'-' if scheduler == BOUND else '{:.0f}% / {:.0f}% / {:.0f}%'.format(100 * busy['serving'], 100 * busy['loading'], 100 * busy['idle'])} |"
                )
            lines.append("")
            verdicts += [_verdict_row(name, sname, p, s, results["loads"]) for p in POLICIES]
    header = [
        "#### Goal check (policy / fifo) at every load",
        "",
        "| workload | load times | policy | "
        + " | ".join(f"{100 * r:.0f}%" for r in results["loads"])
        + " |",
        "|---|---|---|" + "---|" * len(results["loads"]),
    ]
    legend = [
        "",
        "Each cell: p99 ratio / max-wait ratio / swaps ratio; **bold** = all three goals met.",
        "",
    ]
    return "\n".join(
        lines + _nominal_verdicts(results) + _planning_table(results) + header + verdicts + legend
    )


def _nominal_verdicts(results: Mapping[str, Any]) -> list[str]:
    """The issue's goal, judged per workload and load-time setting at nominal load."""
    nominal = f"{results['nominal']:g}"
    out = [
        f"#### Goal verdict at nominal load ({100 * results['nominal']:.0f}%)",
        "",
        "| workload | load times | policy | p99 ratio (<= 0.8) | max-wait ratio (<= 0.5) | swaps ratio (<= 1.1) | goal | max-wait target | absence floor | free-swaps max wait | max wait with instant loads: fifo / batch-aging | seeds: p99 / max-wait / swaps ratio ranges, goal met |",
        "|---|---|---|---:|---:|---:|---|---:|---:|---:|---:|---|",
    ]
    for name, w in results["workloads"].items():
        for sname, s in w["settings"].items():
            fifo = s["results"]["fifo"][nominal]
            for policy in POLICIES:
                p, m, sw = ratios(s, nominal, policy)
                met = p <= 0.8 and m <= 0.5 and sw <= 1.1
                out.append(
                    f"| {name} | {sname} | {policy} | {p:.2f} | {m:.2f} | {sw:.2f} "
                    f"| {'**met**' if met else 'not met'} "
                    f"| {0.5 * fifo['wait_max']:,.0f} | {absence_floor(fifo, len(w['models'])):,.0f} "
                    f"| {s['results'][FREE][nominal]['wait_max']:,.0f} "
                    f"| {_instant(s) if policy == 'batch-aging' else '-'} "
                    f"| {_seed_summary(s, policy)} |"
                )
    return [
        *out,
        "",
        "*max-wait target* = 0.5 x fifo's max wait (s). *absence floor* (s): with swaps held to "
        "1.1 x fifo's, some model is away from the GPU for at least (M - 1) T / (1.1 S + M) in one "
        "stretch (M models, T = fifo's makespan, S = fifo's swaps; each model's absences add up to "
        "at least T minus its own resident time, split into at most its loads + 1 stretches); a "
        "request of that model arriving as the stretch begins waits about that long. *free-swaps "
        "max wait*: the same GPU serving every request in arrival order with free loads. *max "
        "wait with instant loads*: the same policies, one model at a time, with every load taking "
        "0 s; what is left is the cost of serving one model at a time (a model must drain before "
        "the next one starts, and its slots empty one by one meanwhile). *seeds*: "
        f"the same cell re-run with seeds {ROBUSTNESS_SEEDS[0]}-{ROBUSTNESS_SEEDS[-1]} (a seed "
        "draws the load times; arrivals and tokens are the trace's): the range of each ratio, and "
        "on how many seeds all three goals are met.",
        "",
    ]


def _planning_table(results: Mapping[str, Any]) -> list[str]:
    """The one-slot deadline-planning yardstick (``deadline_reference``), where it applies."""
    rows = []
    for name, w in results["workloads"].items():
        for sname, s in w["settings"].items():
            by_seed = s.get("one_slot_planning_reference") or {}
            if not by_seed:
                continue
            for variant in ("planned (means, adaptive)", "planned (exact, best W)"):
                spans = []
                for metric in ("p99", "max_wait", "swaps"):
                    r = [run[variant][metric] / run["fifo"][metric] for run in by_seed.values()]
                    spans.append(f"{min(r):.2f}-{max(r):.2f}")
                fifo_max = [run["fifo"]["max_wait"] for run in by_seed.values()]
                rows.append(
                    f"| {name} | {sname} | {variant} | {' / '.join(spans)} "
                    f"| {min(fifo_max):,.0f}-{max(fifo_max):,.0f} |"
                )
            floor = s.get("one_slot_max_wait_floor")
            if floor is not None:
                r = [floor / run["fifo"]["max_wait"] for run in by_seed.values()]
                rows.append(
                    f"| {name} | {sname} | floor: no schedule waits less ({floor:,.0f} s) "
                    f"| - / {min(r):.2f}-{max(r):.2f} / any | {min(fifo_max):,.0f}-{max(fifo_max):,.0f} |"
                )
    if not rows:
        return []
    return [
        f"#### One-slot planning reference at nominal load (seeds {ROBUSTNESS_SEEDS[0]}-{ROBUSTNESS_SEEDS[-1]})",
        "",
        "| workload | load times | variant | p99 / max-wait / swaps ratio to fifo (range over seeds) | fifo max wait in this loop |",
        "|---|---|---|---|---:|",
        *rows,
        "",
        "Not llamaswap's policy: `eval/deadline_reference.py`, a one-slot event loop that "
        "dispatches one request at a time and plans every switch against deadlines (see the text "
        "below). Ratios are against fifo run in the same loop. *floor*: a max wait that no "
        "schedule on one slot can beat, in any order and with any number of loads "
        "(`max_wait_floor`: for the requests arriving in any window, the last of them to start "
        "waits at least the window's other service times plus one shortest load per further "
        "model, minus the window's length).",
        "",
    ]


def _instant(s: Mapping[str, Any]) -> str:
    instant = s.get("nominal_max_wait_with_instant_loads", {})
    if not instant:
        return "-"
    return f"{instant['fifo']:,.0f} / {instant['batch-aging']:,.0f}"


def _seed_summary(s: Mapping[str, Any], policy: str) -> str:
    runs = list(s.get("nominal_ratios_by_seed", {}).get(policy, {}).values())
    if not runs:
        return "-"
    spans = " / ".join(
        f"{min(r[i] for r in runs):.2f}-{max(r[i] for r in runs):.2f}" for i in range(3)
    )
    met = sum(1 for p, m, sw in runs if p <= 0.8 and m <= 0.5 and sw <= 1.1)
    return f"{spans}; {met}/{len(runs)}"


def absence_floor(fifo: Mapping[str, Any], models: int) -> float:
    """The longest stretch some model must spend off the GPU if swaps stay within 1.1x fifo's."""
    return (models - 1) * fifo["makespan"] / (1.1 * fifo["swaps"] + models)


def ratios(
    s: Mapping[str, Any], rho: str, policy: str = "batch-aging"
) -> tuple[float, float, float]:
    return ratios_of(s["results"]["fifo"][rho], s["results"][policy][rho])


def ratios_of(fifo: Mapping[str, Any], mine: Mapping[str, Any]) -> tuple[float, float, float]:
    """(p99, max wait, swaps) of a policy as fractions of fifo's."""
    return (
        mine["latency"]["p99"] / fifo["latency"]["p99"],
        mine["wait_max"] / fifo["wait_max"],
        mine["swaps"] / max(fifo["swaps"], 1),
    )


def _verdict_row(
    name: str, sname: str, policy: str, s: Mapping[str, Any], loads: Sequence[float]
) -> str:
    cells = []
    for rho in loads:
        p, m, sw = ratios(s, f"{rho:g}", policy)
        text = f"{p:.2f} / {m:.2f} / {sw:.2f}"
        cells.append(f"**{text}**" if p <= 0.8 and m <= 0.5 and sw <= 1.1 else text)
    return f"| {name} | {sname} | {policy} | " + " | ".join(cells) + " |"


def update_doc(doc: Path, generated: str) -> None:
    text = doc.read_text() if doc.exists() else f"# Evaluation\n\n{BEGIN}\n{END}\n"
    if BEGIN not in text or END not in text:
        text += f"\n{BEGIN}\n{END}\n"
    pattern = re.compile(re.escape(BEGIN) + ".*?" + re.escape(END), re.S)
    doc.write_text(pattern.sub(lambda _m: f"{BEGIN}\n{generated}\n{END}", text))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="two load levels only (a smoke run)")
    parser.add_argument("--out", type=Path, default=ROOT / "reports" / "eval")
    parser.add_argument("--figures", type=Path, default=ROOT / "docs" / "figures")
    parser.add_argument("--doc", type=Path, default=ROOT / "docs" / "evaluation.md")
    parser.add_argument("--workers", type=int, help="embedded Dask workers (default: one per core)")
    parser.add_argument("--cluster", help="a running Dask scheduler, tcp://host:8786")
    parser.add_argument(
        "--resume", action="store_true", help="keep the cells already in OUT/sweep (same code!)"
    )
    args = parser.parse_args(argv)
    try:
        shared_path("traces/raw")
    except SharedDirMissingError as exc:
        print(f"error: the real traces are needed: {exc}", file=sys.stderr)
        return 2
    started = time.perf_counter()
    try:
        results = run_all(args.quick, args.out / "sweep", args.workers, args.cluster, args.resume)
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
    figures = write_figures(results, args.figures)
    sweep_figures(args.out / "sweep")
    update_doc(args.doc, tables(results))
    print(
        f"wrote {args.out / 'results.json'}, {len(figures)} figures in {args.figures}, "
        f"tables in {args.doc} ({time.perf_counter() - started:.0f} s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
