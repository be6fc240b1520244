"""Handing the runs to Dask: an embedded ``LocalCluster`` by default, or an existing scheduler.

The client does no simulation: it expands nothing new, ships small traces, collects results as
they finish (in any order) and writes each to the store at once, so an interrupted sweep loses
only the runs in flight. Workers find traces at the same path (a shared file system), or get a
scenario's trace with the task when its files are small (``SHIP_LIMIT``); factory bases (the
evaluation) always read theirs at the shared path.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sim.sweep.execute import DONE, FAILED, execute
from sim.sweep.spec import Run, Sweep, SweepError
from sim.sweep.store import Store, rows, write_table

SHIP_LIMIT = 32 * 1024 * 1024
"""Bytes: a scenario whose trace files total less travels with the tasks (loaded once, here)."""

Progress = Callable[[int, int, int], None]
"""``(done, failed, left)`` after each finished run."""


@dataclass
class Options:
    out: Path
    workers: int | None = None
    """Embedded cluster size; default one worker process per core."""
    cluster: str | None = None
    """``tcp://host:port`` of a running ``dask scheduler`` (then ``workers`` is ignored)."""
    resume: bool = False


@dataclass
class Outcome:
    total: int
    ran: int
    skipped: int
    failed: int
    seconds: float
    table: list[dict[str, Any]] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    """The stored result documents by run key (nested metrics), for report steps."""


def default_workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def run_sweep(sweep: Sweep, options: Options, progress: Progress | None = None) -> Outcome:
    started = time.perf_counter()
    store = Store(options.out)
    have = store.existing()
    if have and not options.resume:
        raise SweepError(
            f"{options.out}: already holds {len(have)} run results; pass --resume to continue "
            "that sweep, or choose another --out"
        )
    pending = [r for r in sweep.runs if r.key not in have]
    skipped = len(sweep.runs) - len(pending)
    failed = sum(1 for r in sweep.runs if have.get(r.key, {}).get("status") == FAILED)
    if progress is not None:
        progress(skipped - failed, failed, len(pending))
    if pending:
        with connect(options) as client:
            failed = _submit(client, pending, store, progress, (skipped - failed, failed))
    docs = store.existing()
    table = rows(sweep.runs, docs)
    files = write_table(table, options.out)
    return Outcome(
        len(sweep.runs),
        len(pending),
        skipped,
        failed,
        time.perf_counter() - started,
        table,
        files,
        {r.key: docs[r.key] for r in sweep.runs if r.key in docs},
    )


@contextmanager
def connect(options: Options) -> Iterator[Any]:
    """A Dask client: to ``options.cluster``, or to an embedded cluster closed on exit."""
    from distributed import Client, LocalCluster

    if options.cluster:
        try:
            client = Client(options.cluster, timeout="20s")
        except (OSError, ValueError) as exc:
            raise SweepError(
                f"--cluster {options.cluster}: no Dask scheduler there ({exc})"
            ) from None
        with client:
            yield client
        return
    workers = options.workers or default_workers()
    with (
        # Dask's spill and temp files: a fresh directory outside the repository, removed after
        tempfile.TemporaryDirectory(
            prefix="llamaswap-sweep-", ignore_cleanup_errors=True
        ) as scratch,
        LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
            # the scheduler's HTTP server (health, metrics) on a free port, not a fixed 8787
            scheduler_kwargs={"dashboard": False, "dashboard_address": "127.0.0.1:0"},
            silence_logs=logging.ERROR,
            local_directory=scratch,
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client


def _submit(
    client: Any, runs: list[Run], store: Store, progress: Progress | None, before: tuple[int, int]
) -> int:
    """Run ``runs``; returns the failures counted from ``before`` = (done, failed) already."""
    from distributed import as_completed

    shipped = ship_traces(client, runs)
    futures = {
        client.submit(
            execute,
            run.spec,
            run.where,
            shipped.get(run.spec["base"]["label"]),
            key=f"run-{run.key}",
        ): run
        for run in runs
    }
    done, failed = before
    left = len(runs)
    for future in as_completed(futures):
        run = futures[future]
        try:
            result = future.result()
        except Exception as exc:  # the worker died under this run (e.g. out of memory)
            result = {"status": FAILED, "error": f"{type(exc).__name__}: {exc}", "metrics": None}
        future.release()
        store.save(run, result)
        if result["status"] == DONE:
            done += 1
        else:
            failed += 1
        left -= 1
        if progress is not None:
            progress(done, failed, left)
    return failed


def ship_traces(client: Any, runs: list[Run]) -> Mapping[str, Any]:
    """Scatter each small file-based scenario trace once to every worker; the rest load in place."""
    from sim.scenario import TraceMissingError, load_scenario
    from sim.sweep.bases import ScenarioBase

    out: dict[str, Any] = {}
    for run in runs:
        file, ref = run.where.get("file"), run.spec["base"]
        label = ref["label"]
        if file is None or label in out:
            continue
        scenario = load_scenario(file)
        sizes = [p.stat().st_size for p in scenario.trace_files() if p.exists()]
        if not sizes or sum(sizes) > SHIP_LIMIT or len(sizes) < len(scenario.trace_files()):
            out[label] = (
                None  # synthetic (cheap to make) or large or missing here: the worker loads
            )
            continue
        try:
            trace = ScenarioBase(file, ref["sha256"], ref["ci"]).trace()
        except TraceMissingError:
            out[label] = None
            continue
        out[label] = client.scatter(trace, broadcast=True, hash=False)
    return out
