"""Summary metrics of one run, with the definitions of issue 3.

- latency = end - arrival (completed requests); wait = start of service - arrival (requests whose
  service started: a granted request may still wait for a free ``parallel`` slot of its server).
- a swap = one model load started.
- ``order_violations`` = served requests r for which another served request arrived strictly
  earlier than r but started service later than r.
- ``max_resident_models`` = most models simultaneously starting, ready or stopping.
- ``max_in_flight`` = most requests granted (handed to model servers) at once.
- ``busy_fraction``: share of the run (trace time 0 to the last change) during which at least
  one request was in service (``serving``), else some model was starting/stopping (``loading``),
  else ``idle``.
- ``jain_fairness`` = Jain's index (sum x)^2 / (n sum x^2) over per-model mean waits (1 = equal).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sim.host import CANCELLED, ERROR, OK, REJECTED, SimRecord
from sim.trace import Trace

DIGITS = 6


def _r(value: float) -> float:
    return round(float(value), DIGITS)


def stats(values: np.ndarray) -> dict[str, float | None]:
    """``{mean, p50, p90, p99, max}`` (None when there are no values)."""
    if not len(values):
        return {"mean": None, "p50": None, "p90": None, "p99": None, "max": None}
    p50, p90, p99 = np.percentile(values, [50, 90, 99])
    return {
        "mean": _r(values.mean()),
        "p50": _r(p50),
        "p90": _r(p90),
        "p99": _r(p99),
        "max": _r(values.max()),
    }


def order_violations(arrival: np.ndarray, start: np.ndarray) -> int:
    """Count r with some s: arrival_s < arrival_r and start_s > start_r (O(n log n))."""
    if len(arrival) < 2:
        return 0
    order = np.argsort(arrival, kind="stable")
    a, s = arrival[order], start[order]
    prefix_max = np.maximum.accumulate(s)
    first = np.searchsorted(a, a, side="left")
    earlier_max = np.where(first > 0, prefix_max[np.maximum(first - 1, 0)], -np.inf)
    return int(np.count_nonzero(earlier_max > s))


def jain(values: list[float]) -> float:
    if not values:
        return 1.0
    total = sum(values)
    squares = sum(v * v for v in values)
    if squares == 0:
        return 1.0
    return total * total / (len(values) * squares)


def summarize(record: SimRecord, trace: Trace, wall_seconds: float) -> dict[str, Any]:
    status = np.frombuffer(bytes(record.status), dtype=np.uint8)
    start = np.frombuffer(record.start, dtype=np.float64)
    end = np.frombuffer(record.end, dtype=np.float64)
    arrival = trace.arrival
    n = record.n
    ok = status == OK
    started = ~np.isnan(start)
    latency = end[ok] - arrival[ok]
    wait = start[started] - arrival[started]
    swaps = len(record.swaps)
    per_model: dict[str, Any] = {}
    mean_waits: list[float] = []
    swaps_by_model: dict[str, int] = {}
    for row in record.swaps:
        swaps_by_model[row[2]] = swaps_by_model.get(row[2], 0) + 1
    for k, model in enumerate(trace.models):
        mine = trace.model == k
        if not mine.any():
            continue
        m_started = mine & started
        m_wait = start[m_started] - arrival[m_started]
        m_ok = mine & ok
        if len(m_wait):
            mean_waits.append(float(m_wait.mean()))
        per_model[model] = {
            "requests": int(mine.sum()),
            "completed": int(m_ok.sum()),
            "swaps": swaps_by_model.get(model, 0),
            "wait_p99": _r(np.percentile(m_wait, 99)) if len(m_wait) else None,
            "latency_p99": _r(np.percentile(end[m_ok] - arrival[m_ok], 99)) if m_ok.any() else None,
        }
    busy_total = record.t_serving + record.t_loading + record.t_idle
    busy = (
        {
            "serving": _r(record.t_serving / busy_total),
            "loading": _r(record.t_loading / busy_total),
            "idle": _r(record.t_idle / busy_total),
        }
        if busy_total > 0
        else {"serving": 0.0, "loading": 0.0, "idle": 1.0}
    )
    return {
        "requests": n,
        "completed": int(ok.sum()),
        "errors": int((status == ERROR).sum()),
        "rejected": int((status == REJECTED).sum()),
        "cancelled": int((status == CANCELLED).sum()),
        "swaps": swaps,
        "swaps_per_1k": _r(swaps * 1000.0 / n) if n else 0.0,
        "failed_loads": sum(1 for row in record.swaps if not row[4]),
        "latency": stats(latency),
        "wait": stats(wait),
        "order_violations": order_violations(arrival[started], start[started]),
        "max_resident_models": record.max_resident,
        "max_in_flight": record.max_in_flight,
        "busy_fraction": busy,
        "jain_fairness": _r(jain(mean_waits)),
        "makespan": _r(busy_total),
        "events": record.events,
        "per_model": per_model,
        "sim_wall_seconds": round(wall_seconds, 3),
    }
