"""Compare two event logs of the same trace (e.g. real daemon vs simulator): the fidelity verdict.

Both logs must use the same request ids (the fidelity harness sends the trace's ids). What is
compared: grant order (sequence of request ids by start of service), loads (count and sequence of
models loaded), and latency/wait percentiles with relative errors.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from llamaswap.record.calibrate import collect_requests

PERCENTILES = (50, 90, 99)


@dataclass(frozen=True)
class RunFacts:
    grant_order: list[str]
    loads: list[str]
    latency: dict[str, float]
    wait: dict[str, float]
    latencies: dict[str, float]
    completed: int
    ttft: dict[str, float] | None = None
    """Time to first byte percentiles (None when the log has no first_byte records)."""


def facts(records: Iterable[Mapping[str, Any]]) -> RunFacts:
    records = list(records)
    requests, _, _, _ = collect_requests(records)
    granted = sorted((r for r in requests if r.grant is not None), key=lambda r: r.grant or 0.0)
    order = [r.id for r in granted]
    loads = [str(r["model"]) for r in records if r["ev"] == "process" and r.get("to") == "starting"]
    latencies = {r.id: r.done - r.arrival for r in requests if r.ok and r.done is not None}
    waits = [r.grant - r.arrival for r in requests if r.ok and r.grant is not None]
    firsts = [r.first_byte - r.arrival for r in requests if r.ok and r.first_byte is not None]
    return RunFacts(
        order,
        loads,
        _percentiles(list(latencies.values())),
        _percentiles(waits),
        latencies,
        len(latencies),
        _percentiles(firsts) if firsts else None,
    )


def _percentiles(values: Sequence[float]) -> dict[str, float]:
    if not values:
        return {f"p{p}": float("nan") for p in PERCENTILES}
    array = np.asarray(values, dtype=float)
    return {f"p{p}": float(np.percentile(array, p)) for p in PERCENTILES}


def first_divergence(a: Sequence[str], b: Sequence[str]) -> int | None:
    for index, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return index
    return None if len(a) == len(b) else min(len(a), len(b))


def relative_error(sim: float, real: float) -> float:
    if real == 0:
        return 0.0 if sim == 0 else float("inf")
    return (sim - real) / real


def compare(real: Iterable[Mapping[str, Any]], sim: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """A JSON-able verdict: identical orders/loads or where they first differ, and percentile errors."""
    r, s = facts(real), facts(sim)
    divergence = first_divergence(r.grant_order, s.grant_order)
    load_divergence = first_divergence(r.loads, s.loads)
    result: dict[str, Any] = {
        "completed": {"real": r.completed, "sim": s.completed},
        "grant_order": {
            "identical": divergence is None,
            "first_divergence": None
            if divergence is None
            else {
                "index": divergence,
                "real": r.grant_order[divergence : divergence + 5],
                "sim": s.grant_order[divergence : divergence + 5],
            },
            "length": {"real": len(r.grant_order), "sim": len(s.grant_order)},
        },
        "loads": {
            "identical": load_divergence is None,
            "count": {"real": len(r.loads), "sim": len(s.loads)},
            "first_divergence": load_divergence,
            "real_sequence": r.loads[:50],
            "sim_sequence": s.loads[:50],
        },
        "latency": {
            key: {
                "real": r.latency[key],
                "sim": s.latency[key],
                "rel_error": relative_error(s.latency[key], r.latency[key]),
            }
            for key in r.latency
        },
        "wait": {
            key: {
                "real": r.wait[key],
                "sim": s.wait[key],
                "rel_error": relative_error(s.wait[key], r.wait[key]),
            }
            for key in r.wait
        },
    }
    if r.ttft is not None and s.ttft is not None:
        result["ttft"] = {
            key: {
                "real": r.ttft[key],
                "sim": s.ttft[key],
                "rel_error": relative_error(s.ttft[key], r.ttft[key]),
            }
            for key in r.ttft
        }
    paired = sorted(set(r.latencies) & set(s.latencies))
    result["per_request"] = {"paired": len(paired)}
    if paired:
        errors = np.array([s.latencies[i] - r.latencies[i] for i in paired])
        result["per_request"].update(
            {
                "mean_abs_error_s": float(np.mean(np.abs(errors))),
                "max_abs_error_s": float(np.max(np.abs(errors))),
            }
        )
    return result
