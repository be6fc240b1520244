"""The evaluation's workloads as sweep bases: ``{factory: eval.sweep_base:workload, args: {name: N}}``.

What a scenario file cannot spell lives here: the offered load measured against one GPU with the
workload's own service-time model, the two bounds (every model always resident; one GPU serving
everything in arrival order with free swaps), planned switches (``slots`` = the upstream's
parallel slots) and the named load-time settings (``fast``, ``slow``, ``instant``). Each cell is
built exactly as the sequential evaluation built it, so its numbers do not move.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from eval import workloads as wl
from llamaswap.timing import Distribution
from sim.sweep.bases import Point, SimInputs

PLANNED = "batch-aging+slots"
"""``batch-aging`` with planned switches: ``slots`` set to the upstream's parallel slots."""
BOUND = "always-resident"
FREE = "free-swaps"
"""Second bound: one GPU with the same slots, every request in arrival order, loads cost nothing."""
INSTANT = "instant"
"""The load-time setting with every load taking 0 s (what is left is one-model-at-a-time cost)."""


RAW = wl.RAW
"""The real traces, found by ``sim.shared`` (beside the checkout or its main worktree)."""
BUILDERS: dict[str, Callable[[Path], wl.Workload]] = {
    "azure-mooncake": wl.azure_mooncake,
    "alibaba": wl.alibaba,
    "servegen": wl.servegen,
    "hot-rare": wl.hot_and_rare,
}
"""In the evaluation's order (its tables list the workloads this way)."""


def cell_inputs(
    workload: wl.Workload,
    setting: wl.LoadSetting,
    rho: float,
    scheduler: str,
    settings: Mapping[str, Any] | None = None,
    seed: int = 1,
) -> SimInputs:
    """One evaluation cell: ``scheduler`` (or a bound) on ``workload`` at offered load ``rho``."""
    trace = workload.at_load(rho)
    if scheduler == BOUND:
        spec = wl.resident_routing(workload.models)
        return SimInputs(spec, "fifo", trace, workload.resident_profiles(), seed)
    if scheduler == FREE:
        trace = wl.free_swap_trace(trace)
        profile = workload.resident_profiles()[workload.models[0]]
        spec = wl.routing(trace.models, "fifo")
        return SimInputs(spec, "fifo", trace, {wl.FREE_SWAP_MODEL: profile}, seed)
    if scheduler == PLANNED:
        scheduler = "batch-aging"
        settings = {"batch-aging": {"slots": workload.profile.parallel}}
    spec = wl.routing(workload.models, scheduler, settings)
    return SimInputs(spec, scheduler, trace, workload.profiles(setting), seed)


class EvaluationBase:
    """One workload, built once per worker process (it reads the real traces)."""

    def __init__(self, name: str) -> None:
        if name not in BUILDERS:
            raise ValueError(f"unknown evaluation workload {name!r} (valid: {', '.join(BUILDERS)})")
        self.workload = BUILDERS[name](RAW)

    def setting(self, label: str) -> wl.LoadSetting:
        if label == INSTANT:
            return dataclasses.replace(self.workload.settings[0], load_time=Distribution())
        for setting in self.workload.settings:
            if setting.name == label:
                return setting
        names = [s.name for s in self.workload.settings]
        raise ValueError(
            f"timing {label!r}: not a load-time setting ({', '.join([*names, INSTANT])})"
        )

    def inputs(self, point: Point) -> SimInputs:
        if point.load_kind != "offered" or point.transforms or point.timing_override:
            raise ValueError("evaluation bases take load: {offered: [...]}, no slices or overrides")
        settings = {point.use: dict(point.settings)} if point.settings else None
        return cell_inputs(
            self.workload, self.setting(point.timing), point.load, point.use, settings, point.seed
        )


def workload(name: str) -> EvaluationBase:
    return EvaluationBase(name)


workload.extra_schedulers = (PLANNED, BOUND, FREE)  # type: ignore[attr-defined]
