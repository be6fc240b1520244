"""Run a scenario: every listed scheduler on the identical trace, then summarise and check."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sim.eventlog import event_log
from sim.expect import Outcome, evaluate_all
from sim.host import SimRecord
from sim.metrics import summarize
from sim.run import simulate
from sim.scenario import Scenario
from sim.trace import Trace, trace_stats

ProgressFactory = Callable[[str, int], Callable[[int], None] | None]


@dataclass
class Experiment:
    summary: dict[str, Any]
    records: dict[str, SimRecord]
    trace: Trace
    outcomes: list[Outcome]

    @property
    def passed(self) -> bool:
        return all(o.passed for o in self.outcomes)


def run_experiment(
    scenario: Scenario,
    trace: Trace,
    schedulers: Sequence[str] | None = None,
    seed: int | None = None,
    progress: ProgressFactory | None = None,
    record_dir: Path | None = None,
) -> Experiment:
    """``record_dir``: also write each run's event log to ``record_dir/<label>/events.jsonl`` (the
    same runs the summary describes, not a second simulation)."""
    seed = scenario.seed if seed is None else seed
    names = list(schedulers or scenario.schedulers)
    stats = trace_stats(trace)
    stats["source"] = trace.source
    stats["transforms"] = list(trace.notes)
    results: dict[str, Any] = {}
    records: dict[str, SimRecord] = {}
    for name in names:
        callback = progress(name, len(trace)) if progress is not None else None
        variant = scenario.variant(name)
        log = (
            nullcontext(None)
            if record_dir is None
            else event_log(
                record_dir / name / "events.jsonl",
                variant.spec,
                variant.scheduler,
                trace,
                seed,
                {"scenario": scenario.name},
            )
        )
        with log as hooks:
            record, wall = simulate(
                variant.spec, variant.scheduler, trace, scenario.profiles, seed, callback, hooks
            )
        records[name] = record
        results[name] = summarize(record, trace, wall)
    summary = {
        "scenario": scenario.name,
        "description": scenario.description,
        "seed": seed,
        "trace": stats,
        "results": results,
        "variants": {
            name: {"use": v.scheduler, "settings": dict(v.spec.settings_for(v.scheduler))}
            for name in names
            if (v := scenario.variant(name)).spec is not scenario.spec
        },
    }
    values = {**results, "trace": stats}
    expectations = [e for e in scenario.expect if _applies(e, names, scenario.schedulers)]
    outcomes = evaluate_all(expectations, values)
    summary["expect"] = [
        {"check": o.text, "passed": o.passed, "detail": o.detail} for o in outcomes
    ]
    return Experiment(summary, records, trace, outcomes)


def _applies(check: str, schedulers: Sequence[str], labels: Sequence[str]) -> bool:
    """An assertion about a scheduler (or variant) that was not run (``--scheduler``) is skipped."""
    import re

    from llamaswap.core.policies import scheduler_names

    known = set(scheduler_names()) | set(labels)
    mentioned = set(re.findall(r"[A-Za-z_][\w-]*(?=\.)", check)) & known
    return mentioned <= set(schedulers)
