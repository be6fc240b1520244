"""``llamaswap sweep SWEEP.yaml``: expand, run on Dask, write the table and figures."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

CLUSTER_HELP = (
    "address of a running Dask scheduler (tcp://host:8786, started with `dask scheduler`; add "
    "workers with `dask worker tcp://host:8786`); default: an embedded cluster"
)


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "sweep",
        help="run a grid of simulations (schedulers x settings x slices x load x seeds) on Dask",
        description="Expand SWEEP into runs (each one `llamaswap sim` run of one scheduler on one "
        "trace), run them on an embedded Dask cluster or --cluster, and write one row per run to "
        "DIR/results.parquet and DIR/results.csv, plus figures under DIR/figures.",
    )
    p.add_argument("sweep", type=Path, help="sweep file (YAML, see docs/sweep.md)")
    p.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="worker processes of the embedded cluster (default: one per core)",
    )
    p.add_argument("--cluster", metavar="ADDRESS", help=CLUSTER_HELP)
    p.add_argument("--out", type=Path, help="output directory (default: reports/sweep/<name>/)")
    p.add_argument(
        "--resume", action="store_true", help="skip runs whose results DIR already holds"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_sweep)


def cmd_sweep(args: argparse.Namespace) -> int:
    try:
        import distributed  # noqa: F401
        import pyarrow  # noqa: F401
    except ImportError as exc:
        print(
            f"error: llamaswap sweep needs the 'sweep' extra ({exc.name} is missing): "
            "pip install 'llamaswap[sweep]'",
            file=sys.stderr,
        )
        return 2
    from sim.sweep.engine import Options, run_sweep
    from sim.sweep.figures import write_figures
    from sim.sweep.spec import SweepError, load_sweep

    if os.getcwd() not in sys.path:
        # ``factory: eval.sweep_base:workload`` names a module of the checkout we run in (as
        # uvicorn resolves ``module:app``); the embedded workers inherit this path.
        sys.path.insert(0, os.getcwd())
    if args.workers is not None and args.workers < 1:
        print("error: --workers must be at least 1", file=sys.stderr)
        return 2
    out = args.out or Path("reports") / "sweep" / args.sweep.name.split(".")[0]
    try:
        sweep = load_sweep(args.sweep)
        out = args.out or Path("reports") / "sweep" / sweep.name
        options = Options(out, args.workers, args.cluster, args.resume)
        with _bar(len(sweep.runs), quiet=args.quiet) as progress:
            outcome = run_sweep(sweep, options, progress)
    except SweepError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"interrupted: finished runs are kept in {out}; --resume continues", file=sys.stderr)
        return 130
    figures = write_figures(outcome.table, out / "figures")
    print(
        f"sweep {sweep.name}: {outcome.total} runs ({outcome.ran} run now, {outcome.skipped} "
        f"already in {out}), {outcome.failed} failed, {outcome.seconds:.1f} s; wrote "
        f"{', '.join(str(f) for f in outcome.files)} and {len(figures)} figures"
    )
    for row in outcome.table:
        if row["status"] != "done":
            print(f"  failed: run {row['run']} ({row['key']}): {row['error']}", file=sys.stderr)
    return 0


@contextmanager
def _bar(total: int, quiet: bool) -> Iterator[Any]:
    """A rich progress bar: runs done / failed / left and an ETA (to stderr; off with --quiet)."""
    if quiet:
        yield None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    console = Console(stderr=True)
    if not console.is_terminal:
        yield _lines(total)
        return
    columns = (
        TextColumn("sweep"),
        BarColumn(),
        TextColumn(
            "{task.fields[done]} done, {task.fields[failed]} failed, {task.fields[left]} left"
        ),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=False) as bar:
        tasks: list[Any] = []

        def update(done: int, failed: int, left: int) -> None:
            if not tasks:  # created at the first report, so resumed runs do not skew the ETA
                tasks.append(
                    bar.add_task(
                        "sweep",
                        total=total,
                        completed=total - left,
                        done=done,
                        failed=failed,
                        left=left,
                    )
                )
            bar.update(tasks[0], completed=total - left, done=done, failed=failed, left=left)

        yield update


def _lines(total: int) -> Any:
    """Off a terminal (CI, a log file): one plain line per tenth of the sweep, with an ETA."""
    import time

    started = time.monotonic()
    step = max(total // 10, 1)
    first: list[int] = []

    def update(done: int, failed: int, left: int) -> None:
        finished = total - left
        if not first:
            first.append(finished)  # resumed runs: not part of the rate
            return
        ran = finished - first[0]
        if ran and (finished % step == 0 or not left):
            rate = ran / (time.monotonic() - started)
            print(
                f"sweep: {done} done, {failed} failed, {left} left, ETA {left / rate:.0f} s",
                file=sys.stderr,
                flush=True,
            )

    return update
