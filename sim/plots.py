"""The four report plots (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from sim.host import OK, SimRecord
from sim.trace import Trace

MAX_POINTS = 4000
PLOTS = {
    "latency_cdf": "latency_cdf.png",
    "swaps": "swaps_over_time.png",
    "timeline": "timeline.png",
    "wait_by_model": "wait_p99_by_model.png",
}


def _downsample(
    t: np.ndarray, y: np.ndarray, points: int = MAX_POINTS
) -> tuple[np.ndarray, np.ndarray]:
    """Keep the max of each bin so spikes stay visible."""
    if len(t) <= points:
        return t, y
    edges = np.linspace(t[0], t[-1], points + 1)
    index = np.clip(np.searchsorted(edges, t, side="right") - 1, 0, points - 1)
    peak = np.full(points, -np.inf)
    np.maximum.at(peak, index, y)
    keep = np.isfinite(peak)
    return edges[:-1][keep], peak[keep]


def latency_cdf(records: Mapping[str, SimRecord], trace: Trace, path: Path) -> None:
    """Normalised by *all* requests: requests that were cancelled (the client gave up), rejected
    or failed never complete, so each curve tops out at its completed share instead of hiding
    them."""
    fig, ax = plt.subplots(figsize=(8, 4.5))
    total = max(1, len(trace))
    for name, rec in records.items():
        status = np.frombuffer(bytes(rec.status), dtype=np.uint8)
        end = np.frombuffer(rec.end, dtype=np.float64)
        ok = status == OK
        latency = np.sort(end[ok] - trace.arrival[ok])
        if not len(latency):
            continue
        y = np.arange(1, len(latency) + 1) / total
        x, y = _downsample(latency, y)
        ax.step(x, y, where="post", label=f"{name} ({int(ok.sum())} of {len(trace)} completed)")
    ax.set_xscale("symlog", linthresh=1.0)
    ax.set_xlabel("latency = end - arrival (s)")
    ax.set_ylabel("fraction of all requests completed")
    ax.set_title("Latency CDF (cancelled, rejected and failed requests never reach the top)")
    ax.grid(True, alpha=0.3)
    _legend(ax)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _legend(ax: Any) -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend()


def swaps_over_time(records: Mapping[str, SimRecord], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for name, rec in records.items():
        starts = np.array(sorted(row[0] for row in rec.swaps), dtype=np.float64)
        count = np.arange(1, len(starts) + 1, dtype=np.float64)
        x, y = _downsample(starts, count)
        ax.step(np.r_[0.0, x], np.r_[0.0, y], where="post", label=f"{name} ({len(starts)} swaps)")
    ax.set_xlabel("simulated time (s)")
    ax.set_ylabel("model loads started")
    ax.set_title("Cumulative swaps")
    ax.grid(True, alpha=0.3)
    _legend(ax)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _segments(
    rec: SimRecord, models: list[str], horizon: float
) -> dict[str, list[tuple[float, float, int]]]:
    out: dict[str, list[tuple[float, float, int]]] = {m: [] for m in models}
    current: dict[str, tuple[float, int]] = {}
    for at, model, code in rec.states:
        prev = current.get(model)
        if prev is not None and prev[1] and at > prev[0]:
            out.setdefault(model, []).append((prev[0], at - prev[0], prev[1]))
        current[model] = (at, code)
    for model, (at, code) in current.items():
        if code and horizon > at:
            out.setdefault(model, []).append((at, horizon - at, code))
    return out


def _merge(bars: list[tuple[float, float]], min_gap: float) -> list[tuple[float, float]]:
    """Join bars closer than ``min_gap`` (below a pixel): keeps long runs drawable in seconds."""
    merged: list[list[float]] = []
    for start, length in sorted(bars):
        if merged and start - (merged[-1][0] + merged[-1][1]) <= min_gap:
            merged[-1][1] = max(merged[-1][1], start + length - merged[-1][0])
        else:
            merged.append([start, length])
    return [(a, b) for a, b in merged]


def timeline(records: Mapping[str, SimRecord], trace: Trace, path: Path) -> None:
    names = list(records)
    models = sorted(set(trace.models) | {m for r in records.values() for _, m, _ in r.states})
    horizon = max(
        [float(trace.arrival[-1]) if len(trace) else 0.0]
        + [float(np.max(np.frombuffer(r.end, dtype=np.float64))) for r in records.values() if r.n]
    )
    colors = plt.get_cmap("tab10")
    # Hundreds of swaps in 10 inches are a grey smear: give each swap about a tenth of an inch
    # (up to 40 inches; the PNG is scrolled, not printed).
    swaps = max((len(r.swaps) for r in records.values()), default=0)
    fig, axes = plt.subplots(
        2 * len(names),
        1,
        figsize=(
            min(40.0, max(10.0, swaps / 10)),
            2.6 * len(names) + 0.4 * len(models) * len(names),
        ),
        sharex=True,
        gridspec_kw={"height_ratios": [max(len(models), 1), 1.5] * len(names)},
        squeeze=False,
    )
    for k, name in enumerate(names):
        rec = records[name]
        gantt, queue = axes[2 * k][0], axes[2 * k + 1][0]
        for row, segs in enumerate(_segments(rec, models, horizon).values()):
            color = colors(row % 10)
            for code, alpha, hatch in ((2, 0.9, None), (1, 0.35, "//"), (3, 0.2, "..")):
                bars = _merge([(s, d) for s, d, c in segs if c == code], horizon / MAX_POINTS)
                if bars:
                    gantt.broken_barh(
                        bars,
                        (row - 0.4, 0.8),
                        facecolors=color,
                        alpha=alpha,
                        hatch=hatch,
                        linewidth=0,
                    )
        gantt.set_yticks(range(len(models)), models)
        gantt.set_ylim(-0.6, len(models) - 0.4)
        gantt.set_title(
            f"{name}: loaded model (solid = ready, hatched = loading, dotted = stopping)"
        )
        qt = np.frombuffer(rec.queue_t, dtype=np.float64)
        qn = np.frombuffer(rec.queue_n, dtype=np.int32).astype(np.float64)
        qt, qn = _downsample(qt, qn)
        queue.step(
            np.r_[0.0, qt, horizon],
            np.r_[0.0, qn, qn[-1] if len(qn) else 0.0],
            where="post",
            color="black",
            linewidth=0.8,
        )
        queue.set_ylabel("queue")
        queue.grid(True, alpha=0.3)
    axes[-1][0].set_xlabel("simulated time (s)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def wait_by_model(summary: Mapping[str, Mapping], path: Path) -> None:
    results = summary["results"]
    names = list(results)
    models = sorted({m for r in results.values() for m in r.get("per_model", {})})
    fig, ax = plt.subplots(figsize=(max(6.0, 1.2 * len(models) * max(len(names), 1) / 2 + 3), 4.5))
    width = 0.8 / max(len(names), 1)
    x = np.arange(len(models))
    for k, name in enumerate(names):
        per_model = results[name].get("per_model", {})
        values = [(per_model.get(m) or {}).get("wait_p99") or 0.0 for m in models]
        ax.bar(x + (k - (len(names) - 1) / 2) * width, values, width, label=name)
    ax.set_xticks(x, models, rotation=30 if len(models) > 6 else 0)
    ax.set_ylabel("p99 wait (s)")
    ax.set_title("p99 wait (start of service - arrival) per model")
    ax.grid(True, axis="y", alpha=0.3)
    _legend(ax)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_plots(
    records: Mapping[str, SimRecord], trace: Trace, summary: Mapping[str, Mapping], out: Path
) -> dict[str, str]:
    latency_cdf(records, trace, out / PLOTS["latency_cdf"])
    swaps_over_time(records, out / PLOTS["swaps"])
    timeline(records, trace, out / PLOTS["timeline"])
    wait_by_model(summary, out / PLOTS["wait_by_model"])
    return dict(PLOTS)
