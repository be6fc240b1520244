"""The evaluation as a sweep: ``eval/evaluation.sweep.yaml`` expands to the cells the report reads,
and a cell run through the sweep (``sim.sweep.execute`` on a factory base) gives exactly the
numbers the sequential ``run_cell`` gives."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # ``eval`` as a package, as run_evaluation.py sets it up

from eval import run_evaluation as rv  # noqa: E402
from eval import sweep_base as sb  # noqa: E402
from sim.sweep.execute import execute  # noqa: E402
from sim.sweep.spec import load_sweep, parse_sweep  # noqa: E402


def test_the_evaluation_sweep_expands_to_the_report_cells() -> None:
    sweep = load_sweep(rv.SWEEP)
    # loads: 4 workloads x 2 timings x 6 schedulers x 4 loads; pareto: x 5 maxWait; seeds: x 3 x 5
    # minus seed 1 (already a loads cell); instant loads: 4 workloads x 2 schedulers
    assert len(sweep.runs) == 192 + 40 + 96 + 8
    assert len({r.key for r in sweep.runs}) == len(sweep.runs)
    count = Counter(r.axes["scheduler"] for r in sweep.runs)
    assert count["always-resident"] == count["free-swaps"] == count["serial"] == 32
    assert {r.axes["base"] for r in sweep.runs} == set(sb.BUILDERS)
    assert rv.LOADS == (0.3, 0.5, 0.7, 0.9) and rv.ROBUSTNESS_SEEDS == (1, 2, 3, 4, 5)
    quick = parse_sweep(rv.sweep_data(quick=True), rv.SWEEP)
    assert {r.axes["load"] for r in quick.runs} == {0.5, 0.7}
    assert {r.axes["seed"] for r in quick.runs} == {1}


@pytest.mark.skipif(not sb.RAW.is_dir(), reason=f"the real traces are not at {sb.RAW}")
@pytest.mark.parametrize("scheduler", ["batch-aging+slots", "free-swaps", "always-resident"])
def test_a_sweep_cell_equals_the_sequential_cell(scheduler: str) -> None:
    sweep = load_sweep(rv.SWEEP)
    (run,) = [
        r
        for r in sweep.runs
        if r.axes["base"] == "alibaba"
        and r.axes["timing"] == "fast"
        and r.axes["scheduler"] == scheduler
        and r.axes["load"] == 0.7
        and r.axes["seed"] == 1
    ]
    result = execute(run.spec, run.where)
    assert result["status"] == "done", result["error"]
    base = sb.workload("alibaba")
    sequential = rv.run_cell(base.workload, base.setting("fast"), 0.7, scheduler)
    assert rv._metrics(result["metrics"]) == sequential
