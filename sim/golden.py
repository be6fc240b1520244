"""Golden summaries: guard scheduling behaviour in CI.

``scenarios/golden/<name>.json`` holds the CI-scaled run's results. Counts compare exactly; floats
within ``REL_TOL``/``ABS_TOL`` (the runs are deterministic, the tolerance only absorbs
platform float noise). ``sim_wall_seconds`` is never compared. Re-bless with::

    python -m sim.golden --bless [scenarios/NAME.yaml ...]     # or: llamaswap sim SCENARIO --ci --bless
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

REL_TOL = 1e-6
ABS_TOL = 1e-6
IGNORED = {"sim_wall_seconds"}


def golden_path(scenario_path: Path, name: str) -> Path:
    return scenario_path.resolve().parent / "golden" / f"{name}.json"


def golden_payload(summary: Mapping[str, Any]) -> dict[str, Any]:
    """What is kept: the trace stats and every result except wall-clock fields."""
    return {
        "tolerance": {"rel": REL_TOL, "abs": ABS_TOL, "counts": "exact"},
        "trace": summary["trace"],
        "results": {
            name: {k: v for k, v in result.items() if k not in IGNORED}
            for name, result in summary["results"].items()
        },
    }


def diff(expected: Any, actual: Any, path: str = "") -> list[str]:
    """Readable differences, one line each: ``fifo.swaps: golden 12, now 14``."""
    out: list[str] = []
    if isinstance(expected, Mapping) and isinstance(actual, Mapping):
        for key in sorted(set(expected) | set(actual), key=str):
            here = f"{path}.{key}" if path else str(key)
            if key in IGNORED or key == "tolerance":
                continue
            if key not in actual:
                out.append(f"{here}: in golden, missing now")
            elif key not in expected:
                out.append(f"{here}: new (now {actual[key]!r}), not in golden")
            else:
                out += diff(expected[key], actual[key], here)
        return out
    if isinstance(expected, list) and isinstance(actual, list):
        if len(expected) != len(actual):
            return [f"{path}: golden {expected!r}, now {actual!r}"]
        for i, (e, a) in enumerate(zip(expected, actual, strict=True)):
            out += diff(e, a, f"{path}[{i}]")
        return out
    if _is_float(expected) or _is_float(actual):
        if (
            isinstance(expected, int | float)
            and isinstance(actual, int | float)
            and not isinstance(expected, bool)
            and not isinstance(actual, bool)
            and math.isclose(expected, actual, rel_tol=REL_TOL, abs_tol=ABS_TOL)
        ):
            return []
        return [f"{path}: golden {expected!r}, now {actual!r}"]
    if expected != actual:
        return [f"{path}: golden {expected!r}, now {actual!r}"]
    return []


def _is_float(value: Any) -> bool:
    return isinstance(value, float)


def compare(golden_file: Path, summary: Mapping[str, Any]) -> list[str]:
    if not golden_file.exists():
        return [f"{golden_file}: no golden summary; create it with python -m sim.golden --bless"]
    expected = json.loads(golden_file.read_text())
    return diff(expected, golden_payload(summary))


def bless(golden_file: Path, summary: Mapping[str, Any]) -> list[str]:
    """Write the golden file; returns the differences to the previous one (shown to the user)."""
    changes = compare(golden_file, summary) if golden_file.exists() else ["(new golden file)"]
    golden_file.parent.mkdir(parents=True, exist_ok=True)
    golden_file.write_text(json.dumps(golden_payload(summary), indent=2) + "\n")
    return changes


def run_ci(path: Path) -> Any:
    """The CI-scaled run of a scenario, as the regression tests do it."""
    from sim.experiment import run_experiment
    from sim.scenario import load_scenario

    scenario = load_scenario(path)
    return scenario, run_experiment(scenario, scenario.load_trace(ci=True))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sim.golden", description=__doc__.split("\n")[0]
    )
    parser.add_argument("scenarios", nargs="*", type=Path, help="default: every scenarios/*.yaml")
    parser.add_argument(
        "--bless", action="store_true", help="rewrite the golden files, show the diff"
    )
    args = parser.parse_args(argv)
    from sim.scenario import TraceMissingError

    paths = args.scenarios or sorted(Path("scenarios").glob("*.yaml"))
    failed = 0
    for path in paths:
        try:
            scenario, experiment = run_ci(path)
        except TraceMissingError as exc:
            print(f"{path}: skipped ({exc})")
            continue
        target = golden_path(path, scenario.name)
        if args.bless:
            changes = bless(target, experiment.summary)
            print(f"{target}: blessed" + ("" if changes else " (unchanged)"))
        else:
            changes = compare(target, experiment.summary)
            failed += bool(changes)
            verdict = "ok" if not changes else ("DIFFERS" if target.exists() else "MISSING")
            print(f"{target}: {verdict}")
        for line in changes:
            print(f"  {line}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
