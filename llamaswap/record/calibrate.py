"""From a recorded event log to a canonical trace and a calibrated timing profile.

Service time is fitted per model by non-negative least squares on
``service = ttft_overhead + prompt_tokens / prefill_tps + output_tokens / decode_tps``
(the formula of ``llamaswap.timing``), using grant -> done of every completed request; load times
are the observed starting -> ready durations, kept as an empirical distribution.
"""

from __future__ import annotations

import csv
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

TRACE_COLUMNS = (
    "id",
    "arrival",
    "model",
    "prompt_tokens",
    "output_tokens",
    "service_time",
    "cancel_after",
)


@dataclass
class RequestRecord:
    id: str
    model: str
    arrival: float
    prompt_tokens: int | None = None
    output_tokens: int | None = None
    stream: bool = False
    grant: float | None = None
    first_byte: float | None = None
    done: float | None = None
    status: int | str | None = None
    cancelled: float | None = None
    rejected: str | None = None

    @property
    def ok(self) -> bool:
        return self.done is not None and self.grant is not None and self.status in (200, "ok")


@dataclass
class ModelFit:
    model: str
    samples: int
    ttft_overhead: float
    prefill_tps: float
    decode_tps: float
    mape: float
    """Mean absolute percentage error of the fitted service time over the samples."""
    load_samples: list[float] = field(default_factory=list)
    unload_samples: list[float] = field(default_factory=list)
    noise_samples: list[float] = field(default_factory=list)
    """actual / fitted service time per request: the spread the linear formula cannot explain."""

    def profile(self, parallel: int = 1) -> dict[str, Any]:
        profile: dict[str, Any] = {
            "ttft_overhead": round(self.ttft_overhead, 6),
            "prefill_tps": round(self.prefill_tps, 3),
            "decode_tps": round(self.decode_tps, 3),
            "parallel": parallel,
        }
        if self.load_samples:
            profile["load_time"] = {
                "kind": "empirical",
                "samples": [round(s, 6) for s in self.load_samples],
            }
        if self.unload_samples:
            profile["unload_time"] = round(float(np.median(self.unload_samples)), 6)
        if self.noise_samples and max(abs(x - 1.0) for x in self.noise_samples) > 0.005:
            profile["service_noise"] = {
                "kind": "empirical",
                "samples": [round(x, 4) for x in self.noise_samples],
            }
        return profile


@dataclass
class Calibration:
    requests: list[RequestRecord]
    fits: dict[str, ModelFit]
    meta: dict[str, Any]

    def trace_rows(self) -> list[dict[str, Any]]:
        if not self.requests:
            return []
        origin = min(r.arrival for r in self.requests)
        rows = []
        # Ties (same clock tick) keep the log's order, which is the order the host saw them in.
        for r in sorted(self.requests, key=lambda r: r.arrival):
            cancel_after = None
            if r.cancelled is not None and r.grant is None:
                cancel_after = round(r.cancelled - r.arrival, 6)
            rows.append(
                {
                    "id": r.id,
                    "arrival": round(r.arrival - origin, 6),
                    "model": r.model,
                    "prompt_tokens": r.prompt_tokens,
                    "output_tokens": r.output_tokens,
                    "service_time": None,
                    "cancel_after": cancel_after,
                }
            )
        return rows

    def write_trace(self, path: str | Path) -> None:
        with Path(path).open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=TRACE_COLUMNS)
            writer.writeheader()
            for row in self.trace_rows():
                writer.writerow({k: "" if v is None else v for k, v in row.items()})

    def timing(self, parallel: Mapping[str, int] | None = None) -> dict[str, dict[str, Any]]:
        parallel = parallel or {}
        return {m: fit.profile(parallel.get(m, 1)) for m, fit in sorted(self.fits.items())}


def collect_requests(
    records: Iterable[Mapping[str, Any]],
) -> tuple[list[RequestRecord], dict[str, Any], dict[str, list[float]], dict[str, list[float]]]:
    """Fold log records into per-request timelines plus load/unload duration samples."""
    requests: dict[str, RequestRecord] = {}
    meta: dict[str, Any] = {}
    starting: dict[tuple[str, int], float] = {}
    stopping: dict[tuple[str, int], float] = {}
    loads: dict[str, list[float]] = defaultdict(list)
    unloads: dict[str, list[float]] = defaultdict(list)
    for rec in records:
        ev, t = rec["ev"], float(rec.get("t", 0.0))
        rid = str(rec.get("id", ""))
        if ev == "meta":
            meta.update({k: v for k, v in rec.items() if k not in ("ev", "t")})
        elif ev == "arrival":
            requests[rid] = RequestRecord(
                rid,
                str(rec["model"]),
                t,
                rec.get("prompt_tokens"),
                rec.get("output_tokens"),
                bool(rec.get("stream")),
            )
        elif rid in requests:
            r = requests[rid]
            if ev == "grant":
                r.grant = t
            elif ev == "first_byte":
                r.first_byte = r.first_byte if r.first_byte is not None else t
            elif ev == "done":
                r.done, r.status = t, rec.get("status")
                r.prompt_tokens = rec.get("prompt_tokens", r.prompt_tokens)
                r.output_tokens = rec.get("output_tokens", r.output_tokens)
            elif ev == "cancel":
                r.cancelled = t
            elif ev == "reject":
                r.rejected = str(rec.get("kind"))
        elif ev == "process":
            key = (str(rec["model"]), int(rec.get("generation", 0)))
            if rec["to"] == "starting":
                starting[key] = t
            elif rec["to"] == "ready" and key in starting:
                loads[key[0]].append(t - starting.pop(key))
            elif rec["to"] == "stopping":
                stopping[key] = t
            elif rec["to"] == "stopped" and key in stopping:
                unloads[key[0]].append(t - stopping.pop(key))
    return list(requests.values()), meta, loads, unloads


def fit_service(rows: list[tuple[float, float, float]]) -> tuple[float, float, float, float]:
    """Fit (overhead, seconds per prompt token, seconds per output token) >= 0; return them and MAPE."""
    data = np.array(rows, dtype=float)
    prompt, output, service = data[:, 0], data[:, 1], data[:, 2]
    columns = [np.ones_like(prompt), prompt, output]
    active = [0, 1, 2]
    coef = np.zeros(3)
    while active:
        matrix = np.column_stack([columns[i] for i in active])
        solution, *_ = np.linalg.lstsq(matrix, service, rcond=None)
        if (solution >= 0).all():
            coef[:] = 0
            coef[active] = solution
            break
        active.pop(int(np.argmin(solution)))
    predicted = coef[0] + coef[1] * prompt + coef[2] * output
    mask = service > 0
    mape = (
        float(np.mean(np.abs(predicted[mask] - service[mask]) / service[mask]))
        if mask.any()
        else 0.0
    )
    return float(coef[0]), float(coef[1]), float(coef[2]), mape


def service_rows(
    requests: Iterable[RequestRecord], slots: Mapping[str, int] | None = None
) -> dict[str, list[tuple[float, float, float]]]:
    """(prompt, output, service seconds) per model for every completed request with token counts.

    A grant is not the start of service when the upstream has fewer slots than the scheduler has
    requests in flight (fifo grants every request for the resident model at once; llama.cpp with
    one slot runs them one by one). For a model with ``slots[model] = k`` the service start is
    reconstructed as a k-server queue over the observed completions: a request starts at its grant
    or when the earliest of the k requests before it finished, whichever is later.
    """
    slots = slots or {}
    by_model: dict[str, list[RequestRecord]] = defaultdict(list)
    for r in requests:
        if r.ok and r.prompt_tokens is not None and r.output_tokens is not None:
            by_model[r.model].append(r)
    rows: dict[str, list[tuple[float, float, float]]] = {}
    for model, served in by_model.items():
        served.sort(key=lambda r: (r.grant or 0.0, r.done or 0.0))
        k = slots.get(model, 0)
        busy: list[float] = []  # completion times of the requests holding a slot
        out = []
        for r in served:
            assert r.grant is not None and r.done is not None and r.prompt_tokens is not None
            start = r.grant
            if k > 0:
                busy = sorted(t for t in busy if t > r.grant)
                if len(busy) >= k:
                    start = max(r.grant, busy[len(busy) - k])
                busy.append(r.done)
            out.append((float(r.prompt_tokens), float(r.output_tokens or 0), r.done - start))
        rows[model] = out
    return rows


def calibrate(
    records: Iterable[Mapping[str, Any]], slots: Mapping[str, int] | None = None
) -> Calibration:
    """Fit every model's timing; ``slots`` gives upstream slot counts where they are known."""
    requests, meta, loads, unloads = collect_requests(records)
    samples = service_rows(requests, slots)
    fits = {}
    for model in sorted({r.model for r in requests} | set(loads)):
        rows = samples.get(model, [])
        if rows:
            overhead, per_prompt, per_output, mape = fit_service(rows)
        else:
            overhead, per_prompt, per_output, mape = 0.0, 0.0, 0.0, math.nan
        fits[model] = ModelFit(
            model,
            len(rows),
            overhead,
            1.0 / per_prompt if per_prompt > 0 else 1e9,
            1.0 / per_output if per_output > 0 else 1e9,
            mape,
            loads.get(model, []),
            unloads.get(model, []),
            noise_ratios(rows, overhead, per_prompt, per_output),
        )
    return Calibration(requests, fits, meta)


def noise_ratios(
    rows: list[tuple[float, float, float]], overhead: float, per_prompt: float, per_output: float
) -> list[float]:
    """actual / fitted for each request whose fitted time is positive (empty without a fit)."""
    ratios = []
    for prompt, output, service in rows:
        fitted = overhead + prompt * per_prompt + output * per_output
        if fitted > 0 and service >= 0:
            ratios.append(service / fitted)
    return ratios
