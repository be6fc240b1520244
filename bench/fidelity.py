"""Fidelity benchmark: real daemon vs simulator on two scenarios, both schedulers.

For each scenario (default: the synthetic one and the one built from the Azure LLM 2023 trace,
read in place from the shared directory, ``sim.shared``), runs ``llamaswap fidelity`` (overhead probe, real
daemon with fake-upstream processes, simulator on the recorded and on the nominal arrivals,
comparison), writes ``<out>/<scenario>/fidelity.{json,png}``, copies the figure to
``docs/figures/<scenario>.png`` and prints a Markdown table for the README/docs.

Not a timed test. About 8-10 minutes on the 2-core box::

    .venv/bin/python bench/fidelity.py
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

from rich.console import Console

from llamaswap.fidelity.cli import print_table
from llamaswap.fidelity.harness import FidelityOptions, run_fidelity
from llamaswap.fidelity.plots import plot_fidelity
from sim.scenario import load_scenario

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SCENARIOS = ("scenarios/fidelity-synthetic.yaml", "scenarios/fidelity-azure.yaml")


def markdown(summaries: list[dict]) -> str:
    lines = [
        "| scenario | scheduler | requests | grant order | swaps real/sim | model sequence "
        "| latency p50 real/sim (err) | latency p99 real/sim (err) | wait p50 err | wait p99 err |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in summaries:
        for name, result in s["results"].items():
            v = result["recorded"]
            lat, wait = v["latency"], v["wait"]
            order = (
                "identical"
                if v["grant_order"]["identical"]
                else (f"differs at #{v['grant_order']['first_divergence']['index']}")
            )
            lines.append(
                f"| {s['scenario']} | {name} | {s['requests']} | {order} "
                f"| {v['loads']['count']['real']}/{v['loads']['count']['sim']} "
                f"| {'same' if v['loads']['identical'] else 'differs'} "
                f"| {lat['p50']['real']:.3f}/{lat['p50']['sim']:.3f} s ({100 * lat['p50']['rel_error']:+.1f}%) "
                f"| {lat['p99']['real']:.3f}/{lat['p99']['sim']:.3f} s ({100 * lat['p99']['rel_error']:+.1f}%) "
                f"| {100 * wait['p50']['rel_error']:+.1f}% | {100 * wait['p99']['rel_error']:+.1f}% |"
            )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("scenarios", nargs="*", default=list(DEFAULT_SCENARIOS))
    parser.add_argument("--out", type=Path, default=ROOT / "reports" / "fidelity")
    parser.add_argument("--figures", type=Path, default=ROOT / "docs" / "figures")
    parser.add_argument("--duration", type=float, help="compress each trace to S seconds")
    args = parser.parse_args()
    console = Console(width=200)
    summaries = []
    for name in args.scenarios:
        scenario = load_scenario(ROOT / name if not Path(name).is_absolute() else name)
        out = args.out / scenario.name
        started = time.monotonic()
        summary = run_fidelity(
            scenario,
            FidelityOptions(schedulers=scenario.schedulers, out=out, duration=args.duration),
        )
        summary["bench_wall_seconds"] = round(time.monotonic() - started, 1)
        (out / "fidelity.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
        plot = plot_fidelity(out, scenario.schedulers, f"{scenario.name}: simulator vs real daemon")
        args.figures.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(plot, args.figures / f"{scenario.name}.png")
        print_table(console, summary)
        summaries.append(summary)
    print()
    print(markdown(summaries))
    goals = [
        (s["scenario"], name, goal, ok)
        for s in summaries
        for name, r in s["results"].items()
        for goal, ok in r["goals"].items()
    ]
    missed = [g for g in goals if not g[3]]
    print(f"\ngoals met: {len(goals) - len(missed)}/{len(goals)}")
    for scenario, name, goal, _ in missed:
        print(f"  missed: {scenario} {name} {goal}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
