"""What-if: replay the last N minutes of recorded traffic (``serve --record``) in the simulator
under another scheduler, next to what really happened. This is what the sans-IO core is for: the
simulated run takes its decisions from the very code that served the recorded one.

The daemon never simulates on its event loop: :class:`WhatIfRunner` starts
``python -m llamaswap.daemon.whatif LOG --minutes N --scheduler S`` as a background process (one at
a time, killed on shutdown) and keeps its JSON result. The worker cuts the window out of the log
(requests that arrived in it, with their grants and completions; process and swap records in it),
calibrates timing from it and simulates the recorded scheduler (how faithful is the simulator on
this traffic?) and the chosen one, with a fixed seed so the same log gives the same answer.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import math
import sys
import tempfile
import time
from collections import OrderedDict, defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from llamaswap.daemon.server import Daemon

CDF_POINTS = 200
MAX_MINUTES = 24 * 60.0
JOBS_KEPT = 20
_REQUEST_EVENTS = ("arrival", "grant", "first_byte", "done", "cancel", "reject")


class WhatIfError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


# ====================================================================== the worker (subprocess)


def window(records: Sequence[Mapping[str, Any]], minutes: float) -> list[Mapping[str, Any]]:
    """The last ``minutes`` of a log: meta records, requests that arrived in it, other events in it."""
    stamps = [float(r.get("t", 0.0)) for r in records if r["ev"] != "meta"]
    if not stamps:
        return list(records)
    start = max(stamps) - minutes * 60.0
    ids = {str(r.get("id")) for r in records if r["ev"] == "arrival" and float(r["t"]) >= start}
    kept: list[Mapping[str, Any]] = []
    for r in records:
        if r["ev"] == "meta":
            kept.append(r)
        elif r["ev"] in _REQUEST_EVENTS:
            if str(r.get("id")) in ids:
                kept.append(r)
        elif float(r.get("t", 0.0)) >= start:
            kept.append(r)
    return kept


def summarize(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """:func:`log_metrics` plus what the UI draws: latency CDF, swap times, per-model wait."""
    import numpy as np

    from llamaswap.record.calibrate import collect_requests
    from sim.replay import log_metrics

    requests, _, _, _ = collect_requests(records)
    ok = [r for r in requests if r.ok and r.done is not None]
    latencies = np.sort(np.asarray([r.done - r.arrival for r in ok if r.done is not None]))
    cdf: list[list[float]] = []
    if len(latencies):
        picks = np.unique(
            np.linspace(0, len(latencies) - 1, min(CDF_POINTS, len(latencies))).astype(int)
        )
        cdf = [[round(float(latencies[i]), 4), round((i + 1) / len(latencies), 4)] for i in picks]
    waits: dict[str, list[float]] = defaultdict(list)
    for r in ok:
        if r.grant is not None:
            waits[r.model].append(r.grant - r.arrival)
    per_model = {
        model: {
            "n": len(values),
            "wait_p50": round(float(np.percentile(values, 50)), 4),
            "wait_p99": round(float(np.percentile(values, 99)), 4),
        }
        for model, values in sorted(waits.items())
    }
    swaps = [
        round(float(r["t"]), 3)
        for r in records
        if r["ev"] == "process" and r.get("to") == "starting"
    ]
    return {**log_metrics(records), "cdf": cdf, "per_model": per_model, "swap_times": swaps}


def run(log: Path, minutes: float, scheduler: str, workdir: Path) -> dict[str, Any]:
    from llamaswap.record import read_log
    from llamaswap.record.eventlog import EventLog
    from sim.eventlog import simulate_recorded
    from sim.replay import replay_inputs

    cut = window(read_log(log), minutes)
    cut_path = workdir / "window.jsonl"
    with EventLog(cut_path, max_bytes=1 << 40, threaded=False) as out:
        for record in cut:
            out.write(record)
    spec, trace, profiles, _, records = replay_inputs(cut_path)
    recorded = spec.scheduler
    runs = [{"label": f"recorded ({recorded})", **summarize(records)}]
    for name in dict.fromkeys((recorded, scheduler)):
        path = workdir / name / "events.jsonl"
        simulate_recorded(spec, name, trace, profiles, 0, path, {"whatif_of": str(log)})
        runs.append({"label": f"simulated {name}", **summarize(read_log(path))})
    return {
        "minutes": minutes,
        "requests": len(trace),
        "recorded_scheduler": recorded,
        "scheduler": scheduler,
        "runs": runs,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m llamaswap.daemon.whatif")
    parser.add_argument("log", type=Path)
    parser.add_argument("--minutes", type=float, required=True)
    parser.add_argument("--scheduler", required=True)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="llamaswap-whatif-") as tmp:
        try:
            result = run(args.log, args.minutes, args.scheduler, Path(tmp))
        except (OSError, ValueError) as exc:
            print(f"what-if: {exc}", file=sys.stderr)
            return 2
    print(json.dumps(finite(result), allow_nan=False))
    return 0


def finite(value: Any) -> Any:
    """NaN (an empty run's percentiles) as null: strict JSON for the browser."""
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [finite(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# ====================================================================== the daemon's side


class WhatIfRunner:
    """One background replay at a time; the last :data:`JOBS_KEPT` results kept in memory."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.jobs: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._ids = itertools.count(1)
        self._process: asyncio.subprocess.Process | None = None
        self._task: asyncio.Task[None] | None = None

    def _log_path(self) -> Path | None:
        recorder = self.daemon.recorder
        return recorder.path if recorder is not None else None

    def info(self) -> dict[str, Any]:
        from llamaswap.core.policies import scheduler_names

        path = self._log_path()
        return {
            "recording": path is not None,
            "log": str(path) if path is not None else None,
            "schedulers": scheduler_names(),
            "current": self.daemon.runtime.router.scheduler.name,
            "jobs": [{k: v for k, v in job.items() if k != "result"} for job in self.jobs.values()],
        }

    def get(self, job_id: str) -> dict[str, Any] | None:
        return self.jobs.get(job_id)

    def start(self, body: Mapping[str, Any]) -> dict[str, Any]:
        from llamaswap.core.policies import scheduler_names

        path = self._log_path()
        if path is None:
            raise WhatIfError(
                409, "no recorded traffic: start the daemon with 'serve --record FILE'"
            )
        minutes = body.get("minutes", 10)
        if isinstance(minutes, bool) or not isinstance(minutes, int | float):
            raise WhatIfError(400, f"minutes: expected a number, got {minutes!r}")
        if not 0 < minutes <= MAX_MINUTES:
            raise WhatIfError(400, f"minutes: expected 0 < minutes <= {MAX_MINUTES:g}")
        scheduler = body.get("scheduler")
        if scheduler not in scheduler_names():
            raise WhatIfError(
                400,
                f"scheduler: expected one of {', '.join(scheduler_names())}, got {scheduler!r}",
            )
        if self._task is not None and not self._task.done():
            raise WhatIfError(409, "a what-if replay is already running")
        assert self.daemon.recorder is not None
        self.daemon.recorder.flush()
        job_id = str(next(self._ids))
        job: dict[str, Any] = {
            "id": job_id,
            "state": "running",
            "minutes": minutes,
            "scheduler": scheduler,
            "started": round(time.time(), 3),
        }
        self.jobs[job_id] = job
        while len(self.jobs) > JOBS_KEPT:
            self.jobs.popitem(last=False)
        self._task = asyncio.get_running_loop().create_task(
            self._run(job, path, float(minutes), str(scheduler))
        )
        return job

    async def _run(self, job: dict[str, Any], path: Path, minutes: float, scheduler: str) -> None:
        try:
            self._process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "llamaswap.daemon.whatif",
                str(path),
                "--minutes",
                str(minutes),
                "--scheduler",
                scheduler,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            out, err = await self._process.communicate()
            if self._process.returncode == 0:
                job.update(state="done", result=json.loads(out))
            else:
                text = err.decode("utf-8", "replace").strip().splitlines()
                job.update(state="failed", error=text[-1] if text else "the replay failed")
        except (OSError, ValueError) as exc:
            job.update(state="failed", error=str(exc))
        finally:
            self._process = None
            job["finished"] = round(time.time(), 3)
            self.daemon.operator.events.publish("whatif", {"id": job["id"], "state": job["state"]})

    async def close(self) -> None:
        process = self._process
        if process is not None and process.returncode is None:
            process.kill()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)


if __name__ == "__main__":
    raise SystemExit(main())
