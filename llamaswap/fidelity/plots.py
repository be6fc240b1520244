"""The fidelity figure: per scheduler, sim vs real latency CDF and a per-request scatter."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

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
