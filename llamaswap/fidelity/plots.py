"""The fidelity figure: per scheduler, sim vs real latency CDF and a per-request scatter."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from llamaswap.record import read_log
from llamaswap.record.compare import facts


def plot_fidelity(out: Path, schedulers: Sequence[str], title: str) -> Path:
    """Write ``<out>/fidelity.png`` from ``<out>/<scheduler>/{real,sim-recorded}.jsonl``."""
    columns = max(1, len(schedulers))
    fig, axes = plt.subplots(2, columns, figsize=(5.5 * columns, 9), squeeze=False)
    for col, scheduler in enumerate(schedulers):
        real = facts(read_log(out / scheduler / "real.jsonl"))
        sim = facts(read_log(out / scheduler / "sim-recorded.jsonl"))
        cdf = axes[0][col]
        for label, run, style in (("real daemon", real, "-"), ("simulator", sim, "--")):
            values = np.sort(np.fromiter(run.latencies.values(), dtype=float))
            if len(values):
                cdf.step(values, np.arange(1, len(values) + 1) / len(values), style, label=label)
        cdf.set_title(f"{scheduler}: latency CDF")
        cdf.set_xlabel("latency (s)")
        cdf.set_ylabel("fraction of requests")
        cdf.grid(alpha=0.3)
        cdf.legend(loc="lower right")
        scatter = axes[1][col]
        paired = sorted(set(real.latencies) & set(sim.latencies))
        x = np.array([real.latencies[i] for i in paired])
        y = np.array([sim.latencies[i] for i in paired])
        if len(x):
            scatter.scatter(x, y, s=10, alpha=0.7)
            top = float(max(x.max(), y.max())) * 1.05
            scatter.plot([0, top], [0, top], color="grey", linewidth=0.8)
            scatter.set_xlim(0, top)
            scatter.set_ylim(0, top)
        scatter.set_title(f"{scheduler}: per-request latency")
        scatter.set_xlabel("real daemon (s)")
        scatter.set_ylabel("simulator (s)")
        scatter.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    path = out / "fidelity.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_real_fidelity(out: Path, summary: Mapping[str, Any], path: Path, title: str) -> Path:
    """The real-inference figure: per scheduler, the latency CDF of the real daemon, the calibrated
    simulation and the measured replay, and the calibrated swap count over seeds vs the real one.

    Reads ``<out>/<scheduler>/{real,sim,sim-measured}.jsonl`` and ``summary`` (what
    ``bench/real_fidelity.py`` writes as ``summary.json``).
    """
    schedulers = list(summary["schedulers"])
    columns = max(1, len(schedulers))
    fig, axes = plt.subplots(2, columns, figsize=(5.5 * columns, 8), squeeze=False)
    runs = (
        ("real daemon + llama.cpp", "real.jsonl", "-"),
        ("simulator, calibrated profile", "sim.jsonl", "--"),
        ("simulator, measured durations", "sim-measured.jsonl", ":"),
    )
    for col, scheduler in enumerate(schedulers):
        cdf = axes[0][col]
        for label, name, style in runs:
            log = out / scheduler / name
            if not log.exists():
                continue
            values = np.sort(np.fromiter(facts(read_log(log)).latencies.values(), dtype=float))
            if len(values):
                cdf.step(values, np.arange(1, len(values) + 1) / len(values), style, label=label)
        cdf.set_xscale("log")
        cdf.set_title(f"{scheduler}: latency CDF")
        cdf.set_xlabel("latency (s, log scale)")
        cdf.set_ylabel("fraction of requests")
        cdf.grid(alpha=0.3)
        cdf.legend(loc="lower right", fontsize=8)
        bars = axes[1][col]
        seeds = summary["schedulers"][scheduler].get("calibrated_seeds", {})
        loads = seeds.get("loads", {})
        counts = {int(k): v for k, v in loads.get("counts", {}).items()}
        if counts:
            xs = sorted(counts)
            bars.bar(xs, [counts[x] for x in xs], width=0.8, color="tab:blue", alpha=0.7)
            bars.axvline(loads["real"], color="black", linewidth=2, label=f"real: {loads['real']}")
            span = [*xs, int(loads["real"])]
            bars.set_xticks(range(min(span) - 1, max(span) + 2))
            bars.legend(loc="upper left", fontsize=8)
        bars.set_title(
            f"{scheduler}: model loads, calibrated sim over {len(seeds.get('seeds', []))} seeds"
        )
        bars.set_xlabel("loads in the run")
        bars.set_ylabel("seeds")
        bars.grid(alpha=0.3, axis="y")
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
