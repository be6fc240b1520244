"""``llamaswap sim`` and ``llamaswap trace``: the simulator's command line."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from sim.report import table_rows

SLOTS_HELP = "upstream slots per model, as K (every model) or MODEL=K (repeatable): reconstructs when service really started behind a busy upstream (e.g. fifo granting many requests to a one-slot llama.cpp) and sets the replay's parallel slots; default: the most requests the log shows a model serving at once, with no reconstruction"


def register(subparsers: Any) -> None:
    sim = subparsers.add_parser(
        "sim",
        help="replay a trace through the real schedulers in a SimPy simulation and write a report",
        description="Run every scheduler of SCENARIO on the identical trace; write summary.json, "
        "per-scheduler requests.csv/swaps.csv, plots and report.md under --out.",
    )
    sim.add_argument(
        "scenario",
        type=Path,
        nargs="?",
        help="scenario YAML (e.g. scenarios/default.yaml); omit with --from-log",
    )
    sim.add_argument(
        "--from-log",
        type=Path,
        metavar="FILE",
        help="replay a recorded event log (llamaswap serve --record) with its calibrated timing "
        "and recorded routing config, next to what actually happened",
    )
    sim.add_argument(
        "--slots",
        action="append",
        metavar="[MODEL=]K",
        help=SLOTS_HELP,
    )
    sim.add_argument(
        "--record-dir",
        type=Path,
        metavar="DIR",
        help="also write each scheduler's event log (the daemon's format) to DIR/<scheduler>/events.jsonl",
    )
    sim.add_argument(
        "--scheduler",
        action="append",
        dest="schedulers",
        metavar="NAME",
        help="run only this scheduler (repeatable; default: the scenario's list)",
    )
    sim.add_argument(
        "--trace", type=Path, help="canonical trace file (CSV/JSONL) replacing the scenario's"
    )
    sim.add_argument(
        "--out", type=Path, help="report directory (default: reports/<scenario name>/)"
    )
    sim.add_argument("--seed", type=int, help="override the scenario's seed")
    sim.add_argument("--quiet", action="store_true", help="no progress bar, no table")
    sim.add_argument(
        "--ci", action="store_true", help="apply the scenario's ci: scaling (as the tests do)"
    )
    sim.add_argument(
        "--bless",
        action="store_true",
        help="with --ci: rewrite scenarios/golden/<name>.json and show the diff",
    )
    sim.add_argument(
        "--check-golden",
        action="store_true",
        help="with --ci: compare with the golden summary, exit 1 on a difference",
    )
    sim.set_defaults(func=cmd_sim)

    trace = subparsers.add_parser("trace", help="import, generate and inspect request traces")
    sub = trace.add_subparsers(dest="trace_command", metavar="ACTION")
    imp = sub.add_parser("import", help="convert a public trace into the canonical format")
    imp.add_argument(
        "--format", required=True, choices=["azure", "mooncake", "alibaba", "servegen", "canonical"]
    )
    imp.add_argument(
        "inputs", nargs="+", type=Path, help="input file(s) or ServeGen model directories"
    )
    imp.add_argument("-o", "--output", required=True, type=Path, help="output .csv or .jsonl")
    imp.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="importer option, e.g. models=3, start=36000, duration=3600 (repeatable)",
    )
    imp.add_argument(
        "--transform",
        action="append",
        default=[],
        metavar="YAML",
        help="transform as YAML, e.g. '{top_n: 5}' or '{window: {start: 0, duration: 600}}'",
    )
    imp.add_argument("--seed", type=int, default=0)
    imp.set_defaults(func=cmd_trace_import)
    stats = sub.add_parser("stats", help="request count, models, rate, switch ratio, burstiness")
    stats.add_argument("file", type=Path)
    stats.add_argument("--json", action="store_true", help="print JSON")
    stats.set_defaults(func=cmd_trace_stats)
    synth = sub.add_parser("synth", help="generate a synthetic trace (Poisson/Gamma, Zipf, bursts)")
    synth.add_argument("-o", "--output", required=True, type=Path)
    synth.add_argument("--models", default="A,B,C", help="comma-separated model ids")
    synth.add_argument("--rate", type=float, default=1.0, help="total requests/s")
    synth.add_argument("--duration", type=float, default=600.0, help="seconds")
    synth.add_argument("--zipf", type=float, default=0.0, help="popularity exponent (0 = uniform)")
    synth.add_argument("--cv", type=float, help="Gamma arrivals with this CV (default: Poisson)")
    synth.add_argument(
        "--burst", action="append", default=[], metavar="START:DURATION:FACTOR[:MODEL]"
    )
    synth.add_argument("--output-tokens", type=int)
    synth.add_argument("--prompt-tokens", type=int)
    synth.add_argument("--seed", type=int, default=0)
    synth.set_defaults(func=cmd_trace_synth)
    from_log = sub.add_parser(
        "from-log", help="a recorded event log -> canonical trace + calibrated timing profile"
    )
    from_log.add_argument("file", type=Path, help="event log (llamaswap serve --record)")
    from_log.add_argument("--out-trace", type=Path, help="trace CSV (default: FILE.trace.csv)")
    from_log.add_argument(
        "--out-profile", type=Path, help="timing YAML (default: FILE.timing.yaml)"
    )
    from_log.add_argument("--slots", action="append", metavar="[MODEL=]K", help=SLOTS_HELP)
    from_log.set_defaults(func=cmd_trace_from_log)
    trace.set_defaults(func=lambda args: (trace.print_help(), 2)[1])


# ---------------------------------------------------------------------- sim


def cmd_sim(args: argparse.Namespace) -> int:
    from sim import golden
    from sim.experiment import run_experiment
    from sim.report import write_report
    from sim.scenario import ScenarioError, load_scenario, trace_from_file

    if args.from_log is not None:
        from sim.replay import cmd_sim_from_log

        if args.scenario is not None or args.trace or args.ci or args.bless or args.check_golden:
            print("error: --from-log replaces SCENARIO, --trace and --ci", file=sys.stderr)
            return 2
        return cmd_sim_from_log(args)
    if args.scenario is None:
        print("error: give a SCENARIO file or --from-log FILE", file=sys.stderr)
        return 2
    console = Console(width=None if sys.stdout.isatty() else 200)
    err = Console(stderr=True)
    if (args.bless or args.check_golden) and (
        not args.ci or args.trace or args.schedulers or args.seed is not None
    ):
        print(
            "error: --bless/--check-golden need --ci and the scenario's own trace, "
            "schedulers and seed",
            file=sys.stderr,
        )
        return 2
    try:
        scenario = load_scenario(args.scenario)
        if args.schedulers:
            scenario.check_labels(args.schedulers, "--scheduler")
        trace = trace_from_file(args.trace) if args.trace else scenario.load_trace(ci=args.ci)
    except (ScenarioError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for warning in (*scenario.warnings, *scenario.trace_warnings(trace)):
        print(f"warning: {warning}", file=sys.stderr)
    out = args.out or Path("reports") / scenario.name
    show_progress = not args.quiet and sys.stderr.isatty()
    with _progress(show_progress, err) as factory:
        experiment = run_experiment(
            scenario, trace, args.schedulers, args.seed, factory, args.record_dir
        )
    report = write_report(out, experiment.summary, experiment.records, trace, experiment.outcomes)
    if not args.quiet:
        _print_table(console, experiment.summary)
        for o in experiment.outcomes:
            mark = "[green]PASS[/green]" if o.passed else "[red]FAIL[/red]"
            console.print(
                f"{mark} {escape(o.text)}  [dim]{escape(o.detail)}[/dim]", highlight=False
            )
        console.print(f"Report: {report}  (summary.json, per-scheduler CSVs and plots in {out}/)")
    status = 0 if experiment.passed else 1
    if args.bless or args.check_golden:
        target = golden.golden_path(args.scenario, scenario.name)
        changes = (
            golden.bless(target, experiment.summary)
            if args.bless
            else golden.compare(target, experiment.summary)
        )
        verb = "blessed" if args.bless else ("DIFFERS" if changes else "matches golden")
        console.print(f"{target}: {verb}")
        for line in changes:
            console.print(f"  {escape(line)}", highlight=False)
        if changes and args.check_golden:
            status = 1
    return status


@contextmanager
def _progress(
    enabled: bool, console: Console
) -> Iterator[Callable[[str, int], Callable[[int], None]] | None]:
    if not enabled:
        yield None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    ) as progress:

        def factory(name: str, total: int) -> Callable[[int], None]:
            task = progress.add_task(f"simulating {name}", total=total)
            return lambda done: progress.update(task, completed=done)

        yield factory


def _print_table(console: Console, summary: dict[str, Any]) -> None:
    header, rows = table_rows(summary)
    t = summary["trace"]
    table = Table(
        title=f"{summary['scenario']}: {t['requests']} requests, {t['models']} models, "
        f"{t['duration']:.0f} s simulated"
    )
    for i, column in enumerate(header):
        table.add_column(column, justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*row)
    console.print(table)


# ---------------------------------------------------------------------- trace


def _parse_value(text: str) -> Any:
    import yaml

    return yaml.safe_load(text)


def cmd_trace_import(args: argparse.Namespace) -> int:
    from sim.importers import import_trace
    from sim.trace import TraceError, trace_stats, write_trace
    from sim.transforms import apply_transforms

    try:
        options: dict[str, Any] = {}
        for item in args.option:
            key, sep, value = item.partition("=")
            if not sep:
                raise TraceError(f"--option {item!r}: expected KEY=VALUE")
            options[key] = _parse_value(value)
        transforms = [_parse_value(t) for t in args.transform]
        trace = import_trace(args.format, args.inputs, **options)
        trace = apply_transforms(trace, transforms, args.seed, "--transform")
        write_trace(trace, args.output)
    except (TraceError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    stats = trace_stats(trace)
    print(
        f"wrote {args.output}: {stats['requests']} requests, {stats['models']} models, "
        f"{stats['duration']:.0f} s"
    )
    return 0


def cmd_trace_from_log(args: argparse.Namespace) -> int:
    from sim.replay import cmd_trace_from_log as run

    return run(args)


def cmd_trace_stats(args: argparse.Namespace) -> int:
    from sim.trace import TraceError, read_trace, trace_stats

    try:
        stats = trace_stats(read_trace(args.file))
    except TraceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(stats, indent=2))
        return 0
    print(f"requests:      {stats['requests']}")
    print(f"models:        {stats['models']}")
    print(f"duration:      {stats['duration']:.3f} s")
    print(f"rate:          {stats['rate']:.4f} req/s")
    print(
        f"switch ratio:  {stats['switch_ratio']:.4f}  (consecutive requests for different models)"
    )
    print(f"burstiness:    {stats['burstiness_cv']:.4f}  (CV of inter-arrival times; Poisson = 1)")
    for model, count in stats["requests_per_model"].items():
        print(f"  {model}: {count}")
    return 0


def cmd_trace_synth(args: argparse.Namespace) -> int:
    from sim.synthetic import synthetic_trace
    from sim.trace import TraceError, write_trace

    spec: dict[str, Any] = {
        "duration": args.duration,
        "rate": args.rate,
        "models": [m for m in args.models.split(",") if m],
        "zipf": args.zipf,
    }
    if args.cv is not None:
        spec["arrivals"] = {"gamma": {"cv": args.cv}}
    if args.output_tokens is not None:
        spec["output_tokens"] = args.output_tokens
    if args.prompt_tokens is not None:
        spec["prompt_tokens"] = args.prompt_tokens
    try:
        bursts = []
        for text in args.burst:
            parts = text.split(":")
            if len(parts) not in (3, 4):
                raise TraceError(f"--burst {text!r}: expected START:DURATION:FACTOR[:MODEL]")
            burst: dict[str, Any] = {
                "start": float(parts[0]),
                "duration": float(parts[1]),
                "factor": float(parts[2]),
            }
            if len(parts) == 4:
                burst["model"] = parts[3]
            bursts.append(burst)
        spec["bursts"] = bursts
        trace = synthetic_trace(spec, args.seed, "trace synth")
        write_trace(trace, args.output)
    except (TraceError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.output}: {len(trace)} requests, {len(trace.models)} models")
    return 0
