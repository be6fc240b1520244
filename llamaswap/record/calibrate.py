"""From a recorded event log to a canonical trace and a calibrated timing profile.

Service time is fitted per model by non-negative least squares on
``service = ttft_overhead + prompt_tokens / prefill_tps + output_tokens / decode_tps
+ first_request_overhead * [first request served by a fresh process]``
(the formula of ``llamaswap.timing``), using grant -> done of every completed request; load times
are the observed starting -> ready durations, kept as an empirical distribution. The warm-up term
is real: on llama.cpp the first request after a load runs ~5-8% slower than the rest, and leaving it
to the per-request noise both biases the fit and widens the noise the simulator draws from.
"""

from __future__ import annotations

import csv
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

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
    process_ready: float | None = None
    """When the process that served it became ready (None: it was up before the log began)."""

    @property
    def ok(self) -> bool:
        return self.done is not None and self.grant is not None and self.status in (200, "ok")


def _output_tokens(r: RequestRecord) -> int | None:
    """Output tokens for the replay: 0 for a request that reported prompt tokens only (an
    embedding), not the profile's default generation length."""
    if r.output_tokens is None and r.ok and r.prompt_tokens is not None:
        return 0
    return r.output_tokens


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
    first_request_overhead: float = 0.0
    """Extra seconds the first request on a freshly loaded process takes (warm-up)."""
    first_samples: int = 0
    """How many fitted requests were the first on their process."""

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
        if round(self.first_request_overhead, 6) > 0:
            profile["first_request_overhead"] = round(self.first_request_overhead, 6)
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
                    "output_tokens": _output_tokens(r),
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
    ready_at: dict[str, float] = {}
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
                r.process_ready = ready_at.get(r.model)
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
            to = rec["to"]
            if to == "ready":
                ready_at[key[0]] = t  # a process serving from now on: its first request warms it
            else:
                ready_at.pop(key[0], None)
            if to == "starting":
                starting[key] = t
            elif to == "ready" and key in starting:
                loads[key[0]].append(t - starting.pop(key))
            elif to == "stopping":
                stopping[key] = t
            elif to == "stopped" and key in stopping:
                unloads[key[0]].append(t - stopping.pop(key))
    return list(requests.values()), meta, loads, unloads


class ServiceSample(NamedTuple):
    prompt: float
    output: float
    service: float
    """Seconds from the start of service to done."""
    first: bool = False
    """The first request served by a freshly loaded process."""


class ServiceFit(NamedTuple):
    overhead: float
    per_prompt: float
    per_output: float
    first_overhead: float
    mape: float

    def predict(self, sample: ServiceSample) -> float:
        return (
            self.overhead
            + sample.prompt * self.per_prompt
            + sample.output * self.per_output
            + (self.first_overhead if sample.first else 0.0)
        )


MIN_WARM_UP_SAMPLES = 2
"""First-on-process and later requests each needed before the warm-up term is fitted (with fewer,
it is not separable from ``ttft_overhead``)."""


def _nonnegative_lstsq(columns: list[np.ndarray], target: np.ndarray) -> np.ndarray:
    """Least squares with every coefficient >= 0: drop the most negative column and refit."""
    active = list(range(len(columns)))
    coef = np.zeros(len(columns))
    while active:
        matrix = np.column_stack([columns[i] for i in active])
        solution, *_ = np.linalg.lstsq(matrix, target, rcond=None)
        if (solution >= 0).all():
            coef[active] = solution
            break
        active.pop(int(np.argmin(solution)))
    return coef


def _mape(predicted: np.ndarray, service: np.ndarray) -> float:
    mask = service > 0
    if not mask.any():
        return 0.0
    return float(np.mean(np.abs(predicted[mask] - service[mask]) / service[mask]))


def fit_service_samples(samples: list[ServiceSample]) -> ServiceFit:
    """The formula's coefficients (all >= 0), with the warm-up term when the log can separate it."""
    data = np.array([(s.prompt, s.output, s.service, float(s.first)) for s in samples], dtype=float)
    prompt, output, service, first = data[:, 0], data[:, 1], data[:, 2], data[:, 3]
    columns = [np.ones_like(prompt), prompt, output]
    firsts = int(first.sum())
    if min(firsts, len(samples) - firsts) >= MIN_WARM_UP_SAMPLES:
        columns.append(first)
    coef = _nonnegative_lstsq(columns, service)
    warm = float(coef[3]) if len(coef) > 3 else 0.0
    predicted = coef[0] + coef[1] * prompt + coef[2] * output + warm * first
    return ServiceFit(
        float(coef[0]), float(coef[1]), float(coef[2]), warm, _mape(predicted, service)
    )


def service_samples(
    requests: Iterable[RequestRecord], slots: Mapping[str, int] | None = None
) -> dict[str, list[ServiceSample]]:
    """Per model, every completed request with token counts: tokens, service seconds, first-ness.

    A grant is not the start of service when the upstream has fewer slots than the scheduler has
    requests in flight (fifo grants every request for the resident model at once; llama.cpp with
    one slot runs them one by one). For a model with ``slots[model] = k`` the service start is
    reconstructed as a k-server queue over the observed completions: a request starts at its grant
    or when the earliest of the k requests before it finished, whichever is later.

    The first request on a process is the one whose service started first after that process
    became ready (by the reconstructed start, so a batch granted at once has one first).
    """
    slots = slots or {}
    by_model: dict[str, list[RequestRecord]] = defaultdict(list)
    for r in requests:
        # An embedding reports prompt tokens only: it is a prefill with no output (fitted, so its
        # replay is not instantaneous).
        if r.ok and r.prompt_tokens is not None:
            by_model[r.model].append(r)
    rows: dict[str, list[ServiceSample]] = {}
    for model, served in by_model.items():
        served.sort(key=lambda r: (r.grant or 0.0, r.done or 0.0))
        k = slots.get(model, 0)
        busy: list[float] = []  # completion times of the requests holding a slot
        starts = []
        for r in served:
            assert r.grant is not None and r.done is not None and r.prompt_tokens is not None
            start = r.grant
            if k > 0:
                busy = sorted(t for t in busy if t > r.grant)
                if len(busy) >= k:
                    start = max(r.grant, busy[len(busy) - k])
                busy.append(r.done)
            starts.append(start)
        first_of: dict[float, int] = {}  # process ready time -> index of its earliest start
        for index, r in enumerate(served):
            if r.process_ready is not None:
                best = first_of.get(r.process_ready)
                if best is None or starts[index] < starts[best]:
                    first_of[r.process_ready] = index
        firsts = set(first_of.values())
        rows[model] = [
            ServiceSample(
                float(r.prompt_tokens or 0),
                float(r.output_tokens or 0),
                (r.done or 0.0) - start,
                index in firsts,
            )
            for index, (r, start) in enumerate(zip(served, starts, strict=True))
        ]
    return rows


def calibrate(
    records: Iterable[Mapping[str, Any]], slots: Mapping[str, int] | None = None
) -> Calibration:
    """Fit every model's timing; ``slots`` gives upstream slot counts where they are known."""
    requests, meta, loads, unloads = collect_requests(records)
    samples = service_samples(requests, slots)
    fits = {}
    for model in sorted({r.model for r in requests} | set(loads)):
        rows = samples.get(model, [])
        fit = fit_service_samples(rows) if rows else ServiceFit(0.0, 0.0, 0.0, 0.0, math.nan)
        fits[model] = ModelFit(
            model,
            len(rows),
            fit.overhead,
            1.0 / fit.per_prompt if fit.per_prompt > 0 else 1e9,
            1.0 / fit.per_output if fit.per_output > 0 else 1e9,
            fit.mape,
            loads.get(model, []),
            unloads.get(model, []),
            noise_ratios(rows, fit),
            fit.first_overhead,
            sum(1 for s in rows if s.first),
        )
    return Calibration(requests, fits, meta)


def noise_ratios(rows: list[ServiceSample], fit: ServiceFit) -> list[float]:
    """actual / fitted for each request whose fitted time is positive (empty without a fit)."""
    ratios = []
    for sample in rows:
        fitted = fit.predict(sample)
        if fitted > 0 and sample.service >= 0:
            ratios.append(sample.service / fitted)
    return ratios
