"""``llamaswap fidelity SCENARIO.yaml``: real daemon vs simulator on the same trace."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from sim.cli import finite_number


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "fidelity",
        help="run a scenario on the real daemon and in the simulator and compare them",
        description="Run SCENARIO's trace (time-compressed to --duration) against the real daemon "
        "with fake-upstream processes, recording; simulate the same trace; compare grant order, "
        "swaps and latency percentiles per scheduler. Writes fidelity.json, fidelity.png and the "
        "event logs under --out.",
    )
    parser.add_argument(
        "scenario", type=Path, help="scenario YAML (e.g. scenarios/fidelity-synthetic.yaml)"
    )
    parser.add_argument(
        "--scheduler",
        action="append",
        dest="schedulers",
        metavar="NAME",
        help="scheduler to compare (repeatable; default: the scenario's list)",
    )
    parser.add_argument(
        "--duration", type=finite_number, help="compress the trace's arrivals into S seconds"
    )
    parser.add_argument(
        "--out", type=Path, help="output directory (default: reports/fidelity/<name>/)"
    )
    parser.add_argument("--ci", action="store_true", help="apply the scenario's ci: scaling")
    parser.add_argument(
        "--max-connections",
        type=int,
        default=256,
        help="client connection pool bound (default 256)",
    )
    parser.add_argument(
        "--deadline",
        type=finite_number,
        default=600.0,
        help="give up on the real run after this many seconds per scheduler (default 600)",
    )
    parser.add_argument(
        "--no-probe",
        action="store_true",
        help="skip the overhead probe (simulate with the bare timing profiles)",
    )
    parser.add_argument("--stream", action="store_true", help="send streaming requests")
    parser.add_argument(
        "--quiet", action="store_true", help="no table and no progress (the goals line stays)"
    )
    parser.set_defaults(func=cmd_fidelity)


MIN_LATENCY_SAMPLES = 10
"""Fewer completed requests than this and a latency p99 is one or two requests, and p50 hangs on
a handful of loads: such a run cannot show a 5% error either way, so its latency goals are not
judged (they are still reported)."""


def cmd_fidelity(args: argparse.Namespace) -> int:
    from llamaswap.fidelity.harness import FidelityOptions, run_fidelity
    from llamaswap.fidelity.live import LiveRunError
    from llamaswap.fidelity.plots import plot_fidelity
    from sim.scenario import ScenarioError, load_scenario

    try:
        scenario = load_scenario(args.scenario)
        schedulers = args.schedulers or scenario.schedulers
        scenario.plain_schedulers(schedulers, "--scheduler")
        if args.duration is not None and not args.duration > 0:
            raise ScenarioError(f"--duration: must be > 0, got {args.duration}")
    except (ScenarioError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = args.out or Path("reports") / "fidelity" / scenario.name
    options = FidelityOptions(
        schedulers=schedulers,
        out=out,
        duration=args.duration,
        ci=args.ci,
        max_connections=args.max_connections,
        deadline=args.deadline,
        probe=not args.no_probe,
        stream=args.stream,
        progress=None if args.quiet else _progress,
    )
    try:
        summary = run_fidelity(scenario, options)
    except (LiveRunError, ScenarioError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    plot = plot_fidelity(out, schedulers, f"{scenario.name}: simulator vs real daemon")
    if not args.quiet:
        print_table(Console(width=None if sys.stdout.isatty() else 200), summary)
        print(f"wrote {out / 'fidelity.json'} and {plot}")
    met, judged, skipped = judge(summary)
    line = f"goals {met}/{judged}"
    if skipped:
        line += (
            f" (latency goals not judged for {', '.join(skipped)}: fewer than "
            f"{MIN_LATENCY_SAMPLES} completed requests; use a longer --duration or drop --ci)"
        )
    print(line)
    return 0 if met == judged else 1


def _progress(text: str) -> None:
    """One line per step on stderr, terminal or not (a CI log should show it is alive)."""
    print(f"fidelity: {text}", file=sys.stderr, flush=True)


def judge(summary: dict[str, Any]) -> tuple[int, int, list[str]]:
    """(goals met, goals judged, schedulers whose latency goals were too few samples to judge)."""
    met = judged = 0
    skipped = []
    for name, result in summary["results"].items():
        completed = int(result["recorded"]["completed"]["real"])
        few = completed < MIN_LATENCY_SAMPLES
        if few:
            skipped.append(f"{name} ({completed})")
        for goal, ok in result["goals"].items():
            if few and goal.startswith("latency_"):
                continue
            judged += 1
            met += bool(ok)
    return met, judged, skipped


def _pct(value: float) -> str:
    return f"{100 * value:+.1f}%"


def print_table(console: Console, summary: dict[str, Any]) -> None:
    o = summary["overheads"]
    table = Table(
        title=f"{summary['scenario']}: {summary['requests']} requests over "
        f"{summary['duration']:.0f} s; sim overheads: start-up {o.get('start_up', 0) * 1000:.0f} ms, "
        f"load +{o['load_extra'] * 1000:.0f} ms, "
        f"unload {o['unload'] * 1000:.0f} ms, serve +{o['serve_extra'] * 1000:.1f} ms"
    )
    for column in (
        "scheduler",
        "replay",
        "grant order",
        "swaps real/sim",
        "model seq",
        "lat p50 real/sim",
        "err",
        "lat p90 err",
        "lat p99 real/sim",
        "err",
        "wait p50 err",
        "wait p99 err",
        "goals",
    ):
        table.add_column(column, justify="left" if column in ("scheduler", "replay") else "right")
    for name, result in summary["results"].items():
        for replay in ("recorded", "trace"):
            v = result[replay]
            g = v["grant_order"]
            order = "identical" if g["identical"] else f"differs @{g['first_divergence']['index']}"
            lat, wait = v["latency"], v["wait"]
            goals = result["goals" if replay == "recorded" else "goals_nominal_trace"]
            table.add_row(
                name,
                replay,
                order,
                f"{v['loads']['count']['real']}/{v['loads']['count']['sim']}",
                "same" if v["loads"]["identical"] else f"differs @{v['loads']['first_divergence']}",
                f"{lat['p50']['real']:.3f}/{lat['p50']['sim']:.3f}",
                _pct(lat["p50"]["rel_error"]),
                _pct(lat["p90"]["rel_error"]),
                f"{lat['p99']['real']:.3f}/{lat['p99']['sim']:.3f}",
                _pct(lat["p99"]["rel_error"]),
                _pct(wait["p50"]["rel_error"]),
                _pct(wait["p99"]["rel_error"]),
                f"{sum(goals.values())}/{len(goals)}",
            )
    console.print(table)
