"""``llamaswap sim`` and ``llamaswap trace``: the simulator's command line."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # rich, numpy and the simulator load only for the command that needs them
    from rich.console import Console

SLOTS_HELP = "upstream slots per model, as K (every model) or MODEL=K (repeatable): reconstructs when service really started behind a busy upstream (e.g. fifo granting many requests to a one-slot llama.cpp) and sets the replay's parallel slots; default: the most requests the log shows a model serving at once, with no reconstruction"



def finite_number(text: str) -> float:
    """A number option: ``inf``, ``nan`` and overflowing literals (``1e400``) are refused by
    argparse with one line, instead of failing deep inside the generator."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value

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
        "--draw-loads",
        action="store_true",
        help="with --from-log: draw each load at random from the recorded load times (default: "
        "replay them in the order they were recorded)",
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
        "--trace",
        type=Path,
        help="canonical trace file (CSV/JSONL, e.g. from 'trace synth' or 'trace import') "
        "replacing the scenario's; the scenario's expect: lines are then skipped (see --expect)",
    )
    sim.add_argument(
        "--out", type=Path, help="report directory (default: reports/<scenario name>/)"
    )
    sim.add_argument("--seed", type=int, help="override the scenario's seed")
    sim.add_argument(
        "--quiet",
        action="store_true",
        help="no progress bar, no table (failed expectations and errors are still printed)",
    )
    sim.add_argument(
        "--wide",
        action="store_true",
        help="every column in the terminal table (default: a compact table that fits 80 "
        "columns; report.md always has every column)",
    )
    sim.add_argument(
        "--expect",
        action="store_true",
        help="with --trace: still check the scenario's expect: lines (they were written for the "
        "scenario's own trace, so by default --trace skips them)",
    )
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

    trace = subparsers.add_parser(
        "trace",
        help="import, generate and inspect request traces",
        description="Canonical traces (CSV/JSONL: arrival, model, optional prompt_tokens, "
        "output_tokens, service_time, cancel_after, id): import public ones, synthesise, "
        "inspect, or rebuild one from a recorded event log. Formats and options: "
        "reports/README.md.",
    )
    sub = trace.add_subparsers(dest="trace_command", metavar="ACTION")
    defaults = _DefaultsHelp
    imp = sub.add_parser(
        "import",
        help="convert a public trace into the canonical format",
        formatter_class=defaults,
        epilog="options per format (types and meanings: reports/README.md): " + _option_summary(),
    )
    imp.add_argument("--format", required=True, choices=list(IMPORT_FORMATS))
    imp.add_argument(
        "inputs", nargs="+", type=Path, help="input file(s) or ServeGen model directories"
    )
    imp.add_argument("-o", "--output", required=True, type=Path, help="output .csv or .jsonl")
    imp.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="importer option, e.g. models=3, models=coder,chat, start=36000 (repeatable; "
        "the valid keys per format are listed below)",
    )
    imp.add_argument(
        "--transform",
        action="append",
        default=[],
        metavar="YAML",
        help="transform as YAML, e.g. '{top_n: 5}' or '{window: {start: 0, duration: 600}}'",
    )
    imp.add_argument("--seed", type=int, default=0, help="seed of sampling transforms")
    imp.set_defaults(func=cmd_trace_import)
    stats = sub.add_parser(
        "stats",
        help="request count, models, rate, switch ratio, burstiness",
        formatter_class=defaults,
    )
    stats.add_argument("file", type=Path, help="canonical trace (CSV/JSONL)")
    stats.add_argument("--json", action="store_true", help="print JSON")
    stats.set_defaults(func=cmd_trace_stats)
    synth = sub.add_parser(
        "synth",
        help="generate a synthetic trace (Poisson/Gamma, Zipf, bursts)",
        formatter_class=defaults,
    )
    synth.add_argument("-o", "--output", required=True, type=Path, help="output .csv or .jsonl")
    synth.add_argument("--models", default="A,B,C", help="comma-separated model ids")
    synth.add_argument("--rate", type=finite_number, default=1.0, help="total requests/s")
    synth.add_argument("--duration", type=finite_number, default=600.0, help="seconds")
    synth.add_argument("--zipf", type=finite_number, default=0.0, help="popularity exponent (0 = uniform)")
    synth.add_argument(
        "--cv", type=finite_number, help="Gamma arrivals with this CV (default: Poisson, CV 1)"
    )
    synth.add_argument(
        "--burst",
        action="append",
        default=[],
        metavar="START:DURATION:FACTOR[:MODEL]",
        help="multiply the rate (of MODEL, or of all) by FACTOR for DURATION s from START s "
        "(repeatable)",
    )
    synth.add_argument(
        "--output-tokens", type=int, help="output tokens per request (default: none in the trace)"
    )
    synth.add_argument(
        "--prompt-tokens", type=int, help="prompt tokens per request (default: none in the trace)"
    )
    synth.add_argument("--seed", type=int, default=0, help="random seed")
    synth.set_defaults(func=cmd_trace_synth)
    from_log = sub.add_parser(
        "from-log",
        help="a recorded event log -> canonical trace + calibrated timing profile",
        formatter_class=defaults,
    )
    from_log.add_argument("file", type=Path, help="event log (llamaswap serve --record)")
    from_log.add_argument(
        "--out-trace",
        type=Path,
        help="trace CSV (default: the log's path with .trace.csv for its suffix, e.g. "
        "events.jsonl -> events.trace.csv)",
    )
    from_log.add_argument(
        "--out-profile",
        type=Path,
        help="timing YAML (default: the log's path with .timing.yaml for its suffix)",
    )
    from_log.add_argument("--slots", action="append", metavar="[MODEL=]K", help=SLOTS_HELP)
    from_log.set_defaults(func=cmd_trace_from_log)
    trace.set_defaults(func=lambda args: (trace.print_help(), 2)[1])


IMPORT_FORMATS = ("azure", "mooncake", "alibaba", "servegen", "canonical")


class _DefaultsHelp(argparse.HelpFormatter):
    """Shows each option's default, but not the non-defaults (None, [], a false flag)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        unset = default is None or default is False or default == [] or default == argparse.SUPPRESS
        if "%(default)" in text or action.required or unset:
            return text
        return text + " (default: %(default)s)"


def _option_summary() -> str:
    """The importers' options for ``--help``, from the same table that validates them."""
    from sim.import_options import OPTIONS

    return "; ".join(f"{fmt}: {', '.join(OPTIONS[fmt]) or '(none)'}" for fmt in IMPORT_FORMATS)


# ---------------------------------------------------------------------- sim


def _missing(path: Path, what: str) -> bool:
    """Say so (one line) when an input file is absent; True when it is."""
    if path.exists():
        return False
    print(f"error: {path}: no such {what}", file=sys.stderr)
    return True


def cmd_sim(args: argparse.Namespace) -> int:
    from rich.console import Console

    from sim.expect import ExpectError, check_syntax
    from sim.experiment import run_experiment
    from sim.report import write_report
    from sim.scenario import ScenarioError, load_scenario, trace_from_file

    if args.from_log is not None:
        from sim.replay import cmd_sim_from_log

        if args.scenario is not None or args.trace or args.ci or args.bless or args.check_golden:
            print("error: --from-log replaces SCENARIO, --trace and --ci", file=sys.stderr)
            return 2
        if _missing(args.from_log, "event log file"):
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
        for i, check in enumerate(scenario.expect):
            check_syntax(check, f"{args.scenario}: expect[{i}]")
        trace = trace_from_file(args.trace) if args.trace else scenario.load_trace(ci=args.ci)
    except (ScenarioError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.trace and scenario.expect and not args.expect:
        # The checks describe the scenario's own trace; on another trace they would fail or name
        # models it does not have. --expect runs them anyway.
        print(
            f"note: --trace replaces the scenario's trace, so its {len(scenario.expect)} expect: "
            "checks (written for that trace) are skipped; add --expect to run them",
            file=sys.stderr,
        )
        scenario = dataclasses.replace(scenario, expect=[])
    for warning in (*scenario.warnings, *scenario.trace_warnings(trace), *_advice(scenario)):
        print(f"warning: {warning}", file=sys.stderr)
    out = args.out or Path("reports") / scenario.name
    show_progress = not args.quiet and sys.stderr.isatty()
    try:
        with _progress(show_progress, err) as factory:
            experiment = run_experiment(
                scenario, trace, args.schedulers, args.seed, factory, args.record_dir
            )
    except ExpectError as exc:
        print(f"error: {args.scenario}: expect: {exc}", file=sys.stderr)
        return 2
    report = write_report(out, experiment.summary, experiment.records, trace, experiment.outcomes)
    if not args.quiet:
        print_table(console, experiment.summary, wide=args.wide)
    _print_outcomes(console, experiment.outcomes, failures_only=args.quiet)
    if not args.quiet:
        console.print(f"Report: {report}  (summary.json, per-scheduler CSVs and plots in {out}/)")
    status = 0 if experiment.passed else 1
    if args.bless or args.check_golden:
        from rich.markup import escape

        from sim import golden

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


def _advice(scenario: Any) -> list[str]:
    """Config advice that needs load times: the scenario's timing profiles have them."""
    from llamaswap.config.advice import max_wait_advice

    loads = {m: p.load_time.mean() for m, p in scenario.profiles.items()}
    out: list[str] = []
    for label in scenario.schedulers:
        v = scenario.variant(label)
        settings = v.spec.scheduler_settings
        for line in max_wait_advice(v.scheduler, settings, loads, "the scenario's timing"):
            out.append(f"{label}: {line}")
    return out


def _print_outcomes(console: Console, outcomes: Any, failures_only: bool) -> None:
    from rich.markup import escape

    for o in outcomes:
        if failures_only and o.passed:
            continue
        mark = "[green]PASS[/green]" if o.passed else "[red]FAIL[/red]"
        console.print(f"{mark} {escape(o.text)}  [dim]{escape(o.detail)}[/dim]", highlight=False)


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


def print_table(console: Console, summary: dict[str, Any], wide: bool = False) -> None:
    """The results table, fitted to the terminal.

    By default the compact columns (they fit 80 columns); ``wide``: every column, and when those
    do not fit the terminal, transposed (a row per metric, a column per scheduler).
    """
    from rich import box
    from rich.table import Table

    from sim.report import COMPACT_COLUMNS, COMPACT_LEGEND, TABLE_COLUMNS, table_rows

    header, rows = table_rows(summary, TABLE_COLUMNS if wide else COMPACT_COLUMNS)
    t = summary["trace"]
    end = max((r.get("makespan") or 0.0 for r in summary["results"].values()), default=0.0)
    title = (
        f"{summary['scenario']}: {t['requests']} requests, {t['models']} models, "
        f"{end:.0f} s simulated"
    )
    if wide and _needed_width(header, rows) > console.width:
        header, rows = (
            ["metric", *(r[0] for r in rows)],
            [[label, *(r[i] for r in rows)] for i, label in enumerate(header) if i],
        )
    table = Table(
        title=title,
        box=box.SIMPLE_HEAD,
        padding=(0, 1),
        pad_edge=False,
        caption=None if wide else COMPACT_LEGEND,
        caption_justify="left",
    )
    for i, column in enumerate(header):
        table.add_column(column, justify="left" if i == 0 else "right", overflow="fold")
    for row in rows:
        table.add_row(*row)
    console.print(table)


def _needed_width(header: list[str], rows: list[list[str]]) -> int:
    """Characters the table takes without wrapping a cell (a padding column each side)."""
    return sum(2 + max(len(c) for c in column) for column in zip(header, *rows, strict=True))


# ---------------------------------------------------------------------- trace


def _parse_transform(text: str) -> Any:
    import yaml

    from llamaswap.config.sources import yaml_problem
    from sim.trace import TraceError

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise TraceError(f"--transform {text!r}: not valid YAML: {yaml_problem(exc)}") from None


def cmd_trace_import(args: argparse.Namespace) -> int:
    from sim.import_options import OptionError, parse_cli_options
    from sim.importers import import_trace
    from sim.trace import TraceError, trace_stats, write_trace
    from sim.transforms import apply_transforms

    try:
        options = parse_cli_options(args.format, args.option)
        transforms = [_parse_transform(t) for t in args.transform]
        trace = import_trace(args.format, args.inputs, **options)
        trace = apply_transforms(trace, transforms, args.seed, "--transform")
        write_trace(trace, args.output)
    except (TraceError, OptionError, OSError) as exc:
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

    if _missing(args.file, "event log file"):
        return 2
    return run(args)


def cmd_trace_stats(args: argparse.Namespace) -> int:
    from sim.trace import TraceError, read_trace, trace_stats

    try:
        stats = trace_stats(read_trace(args.file))
    except (TraceError, OSError) as exc:
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
    except (TraceError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.output}: {len(trace)} requests, {len(trace.models)} models")
    return 0
