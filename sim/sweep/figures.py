"""Figures from the tidy table: metric vs load, Pareto of p99 vs swaps, SLO attainment vs load.

One panel per (base, timing); one line per series (a scheduler label, split by settings when the
sweep varied them). Each point is the median over seeds and slices; the band spans their min-max,
so the spread a single seed would hide stays visible.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

LINE_METRICS = (
    ("latency.p99", "p99 latency (s)", "p99-latency-vs-load.png"),
    ("wait.max", "max wait (s)", "max-wait-vs-load.png"),
    ("swaps_per_1k", "swaps per 1k requests", "swaps-vs-load.png"),
)

Group = dict[tuple[str, str], dict[str, dict[float, list[Mapping[str, Any]]]]]


def write_figures(table: Sequence[Mapping[str, Any]], out: Path) -> list[Path]:
    done = [r for r in table if r["status"] == "done"]
    if not done:
        return []
    import matplotlib

    matplotlib.use("Agg")
    out.mkdir(parents=True, exist_ok=True)
    groups = _group(done)
    files = []
    if len({r["load"] for r in done}) > 1:
        for metric, label, name in LINE_METRICS:
            files.append(_lines(groups, [(metric, label)], out / name))
        slo = sorted(
            (c for c in done[0] if c.startswith("slo.") and done[0][c] is not None), key=_threshold
        )
        if slo:
            files.append(_lines(groups, [(c, f"share within {c.rsplit('_le_', 1)[1]}") for c in slo],
                                out / "slo-attainment-vs-load.png", ylim=(0, 1.02)))  # fmt: skip
    files.append(_pareto(groups, out / "pareto-p99-vs-swaps.png"))
    return files


def _threshold(column: str) -> tuple[str, float]:
    """``slo.latency_le_30s`` -> ("latency", 30.0): thresholds in numeric order."""
    metric, _, limit = column.removeprefix("slo.").partition("_le_")
    return metric, float(limit.rstrip("s"))


def _series(rows: Sequence[Mapping[str, Any]]) -> dict[int, str]:
    """A line per scheduler label, or per (label, settings) when settings vary under one label."""
    settings: dict[str, set[str]] = defaultdict(set)
    for r in rows:
        settings[r["scheduler"]].add(r["settings"])
    return {
        id(r): r["scheduler"]
        if len(settings[r["scheduler"]]) == 1 or r["settings"] == "{}"
        else f"{r['scheduler']} {r['settings']}"
        for r in rows
    }


def _group(rows: Sequence[Mapping[str, Any]]) -> Group:
    names = _series(rows)
    out: Group = {}
    for r in rows:
        panel = out.setdefault((r["base"], r["timing"]), {})
        panel.setdefault(names[id(r)], {}).setdefault(float(r["load"]), []).append(r)
    return out


def _values(cells: Sequence[Mapping[str, Any]], metric: str) -> np.ndarray:
    return np.array([float(c[metric]) for c in cells if c.get(metric) is not None])


def _figure(rows: int, cols: int) -> tuple[Any, Any]:
    import matplotlib.pyplot as plt

    return plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)


def _colors(n: int) -> list[Any]:
    """Distinct colours for ``n`` series (tab10, or tab20 beyond ten)."""
    import matplotlib

    cmap = matplotlib.colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i) for i in range(max(n, 1))]


def _save(fig: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=80, metadata={"Software": None})
    plt.close(fig)
    return path


def _lines(
    groups: Group,
    metrics: Sequence[tuple[str, str]],
    path: Path,
    ylim: tuple[float, float] | None = None,
) -> Path:
    # a line needs two loads: series and panels seen at one load only are left to the Pareto plot
    panels = {
        panel: {name: by_load for name, by_load in series.items() if len(by_load) > 1}
        for panel, series in sorted(groups.items())
    }
    panels = {panel: series for panel, series in panels.items() if series}
    fig, axes = _figure(len(metrics), max(len(panels), 1))
    for col, ((base, timing), series) in enumerate(panels.items()):
        for row, (metric, label) in enumerate(metrics):
            ax = axes[row][col]
            ax.set_prop_cycle(color=_colors(len(series)))
            for name, by_load in sorted(series.items()):
                loads, mid, low, high = [], [], [], []
                for load, cells in sorted(by_load.items()):
                    v = _values(cells, metric)
                    if len(v):
                        loads.append(load)
                        mid.append(float(np.median(v)))
                        low.append(float(v.min()))
                        high.append(float(v.max()))
                (line,) = ax.plot(loads, mid, marker="o", ms=3, label=name)
                ax.fill_between(loads, low, high, color=line.get_color(), alpha=0.15)
            ax.set_title(f"{base} / {timing}", fontsize=9)
            ax.set_xlabel("load")
            ax.set_ylabel(label)
            if ylim is not None:
                ax.set_ylim(*ylim)
            elif _spread(ax) > 50:
                ax.set_yscale("log")
            ax.grid(True, alpha=0.3)
    axes[0][0].legend(fontsize=7)
    return _save(fig, path)


def _pareto(groups: Group, path: Path) -> Path:
    """Every (series, load) point at its median over seeds and slices; the frontier in black."""
    fig, axes = _figure(1, len(groups))
    for col, ((base, timing), series) in enumerate(sorted(groups.items())):
        ax = axes[0][col]
        ax.set_prop_cycle(color=_colors(len(series)))
        points = []
        for name, by_load in sorted(series.items()):
            xs, ys = [], []
            for _load, cells in sorted(by_load.items()):
                x, y = _values(cells, "swaps_per_1k"), _values(cells, "latency.p99")
                if len(x) and len(y):
                    xs.append(float(np.median(x)))
                    ys.append(float(np.median(y)))
            ax.plot(xs, ys, "o", ms=4, label=name)
            points += list(zip(xs, ys, strict=True))
        front = _frontier(points)
        if front:
            ax.step(
                *zip(*front, strict=True), where="post", color="black", lw=0.8, label="Pareto front"
            )
        ax.set_title(f"{base} / {timing}", fontsize=9)
        ax.set_xlabel("swaps per 1k requests")
        ax.set_ylabel("p99 latency (s)")
        if _spread(ax) > 50:
            ax.set_yscale("log")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    return _save(fig, path)


def _spread(ax: Any) -> float:
    """max / min of the plotted values (inf when one is 0): above ~50 a log axis reads better."""
    ys = [y for line in ax.get_lines() for y in line.get_ydata()]
    low = min(ys, default=0.0)
    return max(ys) / low if low > 0 else 0.0


def _frontier(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """Points no other point beats on both swaps and p99 (both lower is better)."""
    best = float("inf")
    out = []
    for x, y in sorted(points):
        if y < best:
            out.append((x, y))
            best = y
    return out
