"""bench/real_fidelity.py's seed handling and swap-count distribution (no llama.cpp needed)."""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench" / "real_fidelity.py"


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("real_fidelity_bench", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


def test_seeds_parse_ranges_and_lists_and_refuse_nonsense(bench: ModuleType) -> None:
    assert bench.parse_seeds("0-3") == [0, 1, 2, 3]
    assert bench.parse_seeds("5") == [5]
    assert bench.parse_seeds("0,4,7-9,4") == [0, 4, 7, 8, 9]
    for bad in ("3-1", "x", "1-y", ""):
        with pytest.raises(argparse.ArgumentTypeError, match="--seeds"):
            bench.parse_seeds(bad)


def row(seed: int, loads: int, same_order: bool, p50: float, p99: float) -> dict[str, Any]:
    latency = {
        key: {"real": 1.0, "sim": 1.0 + err, "rel_error": err}
        for key, err in (("p50", p50), ("p90", 0.0), ("p99", p99))
    }
    return {
        "seed": seed,
        "loads": {"real": 74, "sim": loads},
        "same_grant_order": same_order,
        "latency": latency,
    }


def test_the_swap_count_is_reported_as_a_distribution_next_to_the_real_count(
    bench: ModuleType,
) -> None:
    rows = [
        row(0, 74, True, 0.01, -0.02),
        row(1, 72, False, 0.05, -0.08),
        row(2, 74, False, -0.03, 0.01),
        row(3, 76, False, 0.02, 0.03),
    ]
    spread = bench.seed_spread(rows)
    assert spread["seeds"] == [0, 1, 2, 3]
    assert spread["loads"] == {
        "real": 74,
        "median": 74.0,
        "min": 72.0,
        "max": 76.0,
        "match_rate": 0.5,
        "counts": {"72": 1, "74": 2, "76": 1},
    }
    assert spread["same_grant_order_rate"] == 0.25
    assert spread["latency_rel_error"]["p50"] == {"median": 0.015, "min": -0.03, "max": 0.05}
    assert spread["latency_rel_error"]["p99"] == {"median": -0.005, "min": -0.08, "max": 0.03}
    assert [s["loads"] for s in spread["per_seed"]] == [74, 72, 74, 76]
