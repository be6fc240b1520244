"""One run on a worker: spec in, result document out; an error is a result, never an exception.

The result holds only what the spec decides (metrics), so the same run gives the same bytes on any
worker; its wall and CPU time travel beside it (``wall_seconds``, ``cpu_seconds``) and stay out of
the table.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from sim.host import OK, SimRecord
from sim.metrics import summarize
from sim.run import simulate
from sim.sweep.bases import Point, base_for
from sim.trace import Trace

FAILED, DONE = "failed", "done"


def execute(
    spec: Mapping[str, Any], where: Mapping[str, Any], shipped: Trace | None = None
) -> dict[str, Any]:
    """Run one sweep run; ``shipped``: the base trace when the client sent it with the task."""
    started, cpu = time.perf_counter(), time.process_time()
    try:
        metrics = _run(spec, where, shipped)
        status, error = DONE, None
    except Exception as exc:  # a run's failure is recorded, the sweep goes on
        metrics, status = None, FAILED
        error = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
    return {
        "status": status,
        "error": error,
        "metrics": metrics,
        "wall_seconds": round(time.perf_counter() - started, 4),
        "cpu_seconds": round(time.process_time() - cpu, 4),
        "worker": f"{socket.gethostname()}:{os.getpid()}",
    }


def _run(
    spec: Mapping[str, Any], where: Mapping[str, Any], shipped: Trace | None
) -> dict[str, Any]:
    point = Point.of(spec)
    inputs = base_for(spec["base"], where, shipped).inputs(point)
    record, wall = simulate(
        inputs.spec, inputs.scheduler, inputs.trace, inputs.profiles, inputs.seed
    )
    summary = summarize(record, inputs.trace, wall)
    del summary["sim_wall_seconds"]
    if spec.get("require_complete") and summary["completed"] != summary["requests"]:
        # An unanswered request drops out of the latency statistics and would flatter the policy.
        raise RuntimeError(
            f"only {summary['completed']} of {summary['requests']} requests completed (errors "
            f"{summary['errors']}, rejected {summary['rejected']}, cancelled {summary['cancelled']})"
        )
    summary["slo"] = attainment(record, inputs.trace, spec.get("slo") or {})
    return summary


def attainment(
    record: SimRecord, trace: Trace, slo: Mapping[str, list[float]]
) -> dict[str, float | None]:
    """Share of all requests answered (status ok) within each latency / wait threshold."""
    n = record.n
    status = np.frombuffer(bytes(record.status), dtype=np.uint8)
    ok = status == OK
    start = np.frombuffer(record.start, dtype=np.float64)
    end = np.frombuffer(record.end, dtype=np.float64)
    measured = {"latency": end - trace.arrival, "wait": start - trace.arrival}
    out: dict[str, float | None] = {}
    for metric, limits in sorted(slo.items()):
        for limit in limits:
            within = ok & (measured[metric] <= limit)
            out[f"{metric}_le_{limit:g}s"] = round(float(within.sum()) / n, 6) if n else None
    return out
