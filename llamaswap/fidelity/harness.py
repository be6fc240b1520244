"""``llamaswap fidelity``: the same trace on the real daemon and in the simulator, compared.

Per scheduler: (1) the real daemon (subprocess) with real fake upstreams runs the trace and records
its event log; (2) the simulator runs the same routing config and timing profiles, plus the
machine overheads measured by :mod:`llamaswap.fidelity.probe` on a separate run, and writes the
same log format; (3) :func:`llamaswap.record.compare.compare` gives the verdict.

The simulator replays the arrivals the daemon actually recorded (``replay: recorded``, default):
the client cannot send a request at exactly its trace time on a busy box, and that lateness is the
harness's error, not the simulator's. ``replay: trace`` (nominal trace times) is reported as well.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from llamaswap.fidelity.live import LiveResult, fake_upstream_cmd, run_live
from llamaswap.fidelity.probe import Overheads, measure_overheads
from llamaswap.record import read_log
from llamaswap.record.calibrate import calibrate
from llamaswap.record.compare import compare
from llamaswap.timing import TimingProfile
from sim.eventlog import simulate_recorded, trace_ids
from sim.replay import log_trace
from sim.scenario import Scenario
from sim.trace import Trace
from sim.transforms import shift_to_zero, time_scale

GOAL_REL_ERROR = 0.05


@dataclass
class FidelityOptions:
    schedulers: Sequence[str]
    out: Path
    duration: float | None = None
    ci: bool = False
    max_connections: int = 256
    deadline: float = 600.0
    probe: bool = True
    probe_rounds: int = 5
    overheads: Overheads | None = None
    stream: bool = False
    progress: Callable[[str], None] | None = None
    """Told each step as it starts (a real run takes minutes; the CLI prints these)."""


@dataclass
class SchedulerFidelity:
    scheduler: str
    live: LiveResult
    recorded: dict[str, Any]
    nominal: dict[str, Any]
    goals: dict[str, bool] = field(default_factory=dict)


def prepare_trace(scenario: Scenario, duration: float | None, ci: bool) -> Trace:
    """The scenario's trace, started at 0, time-compressed to ``duration``, without cancels.

    Cancels are dropped: a live client cannot tell "still waiting" from "being served", so a
    ``cancel_after`` timer would also cut requests in service, which the trace format does not mean.
    """
    trace = shift_to_zero(scenario.load_trace(ci=ci))
    if duration is not None and len(trace) > 1:
        span = float(trace.arrival[-1])
        if span > 0:
            trace = time_scale(trace, duration / span)
    trace = trace.replace(cancel_after=np.full(len(trace), math.nan))
    if trace.ids is None:
        trace = trace.replace(ids=trace_ids(trace))
    return trace


def recorded_trace(records: list[dict[str, Any]]) -> Trace:
    """The arrivals (and token counts) the daemon actually saw, as a trace with the same ids."""
    return log_trace(calibrate(records), cancels=False, source="recorded arrivals")


def _span(trace: Trace) -> float:
    return float(trace.arrival[-1]) if len(trace) else 0.0


def goals(verdict: Mapping[str, Any], scheduler: str) -> dict[str, bool]:
    out = {
        "same_swap_count": verdict["loads"]["count"]["real"] == verdict["loads"]["count"]["sim"],
        "same_model_sequence": bool(verdict["loads"]["identical"]),
        "latency_p50_within_5pct": abs(verdict["latency"]["p50"]["rel_error"]) <= GOAL_REL_ERROR,
        "latency_p99_within_5pct": abs(verdict["latency"]["p99"]["rel_error"]) <= GOAL_REL_ERROR,
    }
    if scheduler == "serial":
        out["same_grant_order"] = bool(verdict["grant_order"]["identical"])
    return out


def run_fidelity(scenario: Scenario, options: FidelityOptions) -> dict[str, Any]:
    """Run every scheduler live and simulated; write ``fidelity.json`` and return it."""
    out = options.out
    out.mkdir(parents=True, exist_ok=True)
    raw_config = yaml.safe_load(scenario.path.read_text())["config"]
    for model, profile in scenario.profiles.items():  # fail before starting anything
        fake_upstream_cmd(profile, f"{scenario.path}: timing.{model}")
    trace = prepare_trace(scenario, options.duration, options.ci)
    ids = trace_ids(trace)
    say = options.progress or (lambda _text: None)
    overheads = options.overheads
    if overheads is None:
        if options.probe:
            say(f"measuring overheads ({options.probe_rounds} probe rounds)")
            overheads = asyncio.run(measure_overheads(out / "probe", options.probe_rounds))
        else:
            overheads = Overheads()
    sim_profiles: dict[str, TimingProfile] = {
        m: overheads.apply(p) for m, p in scenario.profiles.items()
    }
    results: dict[str, Any] = {}
    for scheduler in options.schedulers:
        where = out / scheduler
        say(f"{scheduler}: real daemon, {len(trace)} requests over {_span(trace):.0f} s")
        live = asyncio.run(
            run_live(
                raw_config,
                scenario.profiles,
                trace,
                ids,
                scheduler,
                where,
                max_connections=options.max_connections,
                deadline=options.deadline,
                stream=options.stream,
            )
        )
        real = read_log(live.log)
        say(f"{scheduler}: {live.answered}/{live.sent} answered; simulating")
        verdicts: dict[str, Any] = {}
        for label, sim_trace in (("recorded", recorded_trace(real)), ("trace", trace)):
            path = where / f"sim-{label}.jsonl"
            simulate_recorded(
                scenario.spec, scheduler, sim_trace, sim_profiles, scenario.seed, path
            )
            verdicts[label] = compare(real, read_log(path))
        results[scheduler] = {
            "live": {
                "sent": live.sent,
                "answered": live.answered,
                "statuses": live.statuses,
                "timed_out": live.timed_out,
                "client_lateness_p99_ms": round(live.lateness_p99_ms, 3),
                "wall_seconds": round(live.wall_seconds, 3),
            },
            "recorded": verdicts["recorded"],
            "trace": verdicts["trace"],
            "goals": goals(verdicts["recorded"], scheduler),
            "goals_nominal_trace": goals(verdicts["trace"], scheduler),
        }
    summary = {
        "scenario": scenario.name,
        "requests": len(trace),
        "duration": float(trace.arrival[-1]) if len(trace) else 0.0,
        "overheads": overheads.as_dict(),
        "goal_rel_error": GOAL_REL_ERROR,
        "results": results,
    }
    (out / "fidelity.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    return summary
