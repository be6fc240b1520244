"""CI regression on scheduling behaviour: every ``scenarios/*.yaml`` runs (CI-scaled), its
``expect:`` block must hold and its summary must match ``scenarios/golden/<name>.json``."""

from __future__ import annotations

import functools
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sim.expect import ExpectError, evaluate
from sim.experiment import Experiment, run_experiment
from sim.golden import bless, compare, golden_path, golden_payload
from sim.scenario import Scenario, ScenarioError, TraceMissingError, load_scenario, parse_scenario

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = sorted((ROOT / "scenarios").glob("*.yaml"))


@functools.cache
def ci_run(path: Path) -> tuple[Scenario, Experiment]:
    try:
        scenario = load_scenario(path)
        trace = scenario.load_trace(ci=True)
    except TraceMissingError as exc:
        pytest.skip(f"{path.name}: {exc}")
    return scenario, run_experiment(scenario, trace)


def test_there_is_a_scenario_per_real_trace() -> None:
    formats = set()
    for path in SCENARIOS:
        trace = yaml.safe_load(path.read_text())["trace"]
        formats.add(trace.get("format", "synthetic" if "synthetic" in trace else "?"))
    assert {"synthetic", "azure", "mooncake", "alibaba", "servegen"} <= formats


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_scenario_expectations_hold(path: Path) -> None:
    scenario, experiment = ci_run(path)
    assert scenario.expect, f"{path.name} has no expect: block"
    failed = [f"{o.text}: {o.detail}" for o in experiment.outcomes if not o.passed]
    assert not failed, "\n".join(failed)
    assert len(experiment.outcomes) == len(scenario.expect)


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_scenario_matches_golden(path: Path) -> None:
    scenario, experiment = ci_run(path)
    differences = compare(golden_path(path, scenario.name), experiment.summary)
    assert not differences, (
        f"scheduling behaviour of {path.name} changed (re-bless with "
        f"`python -m sim.golden --bless {path.relative_to(ROOT)}` if intended):\n  "
        + "\n  ".join(differences)
    )


def test_changed_behaviour_fails_with_a_readable_diff(tmp_path: Path) -> None:
    path = ROOT / "scenarios" / "default.yaml"
    scenario, experiment = ci_run(path)
    golden = json.loads(golden_path(path, scenario.name).read_text())
    golden["results"]["fifo"]["swaps"] += 3
    golden["results"]["serial"]["latency"]["p99"] *= 1.01
    perturbed = tmp_path / "default.json"
    perturbed.write_text(json.dumps(golden))
    differences = compare(perturbed, experiment.summary)
    swaps = experiment.summary["results"]["fifo"]["swaps"]
    assert f"results.fifo.swaps: golden {swaps + 3}, now {swaps}" in differences
    assert any(d.startswith("results.serial.latency.p99: golden ") for d in differences)
    assert len(differences) == 2
    # within tolerance is not a difference
    golden = golden_payload(experiment.summary)
    golden["results"]["fifo"]["latency"]["mean"] *= 1 + 1e-9
    perturbed.write_text(json.dumps(golden))
    assert compare(perturbed, experiment.summary) == []


def test_bless_command_rewrites_and_shows_the_diff(tmp_path: Path) -> None:
    scenarios = tmp_path / "scenarios"
    scenarios.mkdir()
    shutil.copy(ROOT / "scenarios" / "default.yaml", scenarios / "default.yaml")
    (scenarios / "golden").mkdir()
    data = json.loads((ROOT / "scenarios" / "golden" / "default.json").read_text())
    data["results"]["serial"]["swaps"] = 1
    (scenarios / "golden" / "default.json").write_text(json.dumps(data))
    check = subprocess.run(
        [sys.executable, "-m", "sim.golden", str(scenarios / "default.yaml")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert check.returncode == 1 and "results.serial.swaps: golden 1, now" in check.stdout
    blessed = subprocess.run(
        [sys.executable, "-m", "sim.golden", "--bless", str(scenarios / "default.yaml")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert blessed.returncode == 0 and "results.serial.swaps: golden 1, now" in blessed.stdout
    again = subprocess.run(
        [sys.executable, "-m", "sim.golden", str(scenarios / "default.yaml")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert again.returncode == 0 and ": ok" in again.stdout


def test_bless_function_reports_new_file(tmp_path: Path) -> None:
    _, experiment = ci_run(ROOT / "scenarios" / "default.yaml")
    target = tmp_path / "g.json"
    assert bless(target, experiment.summary) == ["(new golden file)"]
    assert bless(target, experiment.summary) == []
    assert "sim_wall_seconds" not in target.read_text()


# ---------------------------------------------------------------------- scenario validation


def base() -> dict:
    return {
        "name": "t",
        "config": {"models": {"A": {}, "B": {}}},
        "trace": {"synthetic": {"duration": 10, "rate": 1, "models": ["A", "B"]}},
        "schedulers": ["serial", "fifo"],
    }


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"colour": 1}, r"unknown keys \['colour'\]"),
        ({"schedulers": ["lifo"]}, r"unknown schedulers \['lifo'\]"),
        ({"timing": {"C": {}}}, r"timing for unknown models \['C'\]"),
        ({"timing": {"A": {"parallel": 0}}}, r"timing.A.parallel"),
        ({"timing": {"default": {"load_time": {"kind": "zeta"}}}}, r"load_time.kind"),
        ({"trace": {"bogus": 1}}, r"trace: unknown keys \['bogus'\]"),
        ({"seed": "x"}, r"seed must be an integer"),
        ({"config": {"models": {}}}, r"models"),
        ({"expect": "a == b"}, r"expect must be a list"),
        ({"name": "a b"}, r"name must be"),
        ({"schedulers": [3]}, r"schedulers\[0\]: a scheduler name or"),
        ({"schedulers": [{"label": "p", "use": "lifo"}]}, r"schedulers\[0\].use: unknown"),
        ({"schedulers": [{"label": "a.b", "use": "fifo"}]}, r"schedulers\[0\].label: letters"),
        ({"schedulers": [{"label": "fifo", "use": "serial"}]}, r"another scheduler's name"),
        ({"schedulers": ["fifo", "fifo"]}, r"schedulers\[1\]: label 'fifo' appears twice"),
        ({"schedulers": [{"label": "p", "use": "fifo", "x": 1}]}, r"unknown keys \['x'\]"),
        (
            {"schedulers": [{"label": "p", "use": "batch-aging", "settings": {"slots": 0}}]},
            r"batch-aging.slots: must be a whole number of slots >= 1",
        ),
    ],
)
def test_bad_scenarios_name_the_key(change: dict, message: str) -> None:
    data = {**base(), **change}
    with pytest.raises(ScenarioError, match=message):
        scenario = parse_scenario(data, Path("bad.yaml"))
        scenario.load_trace()


def test_missing_trace_file_is_reported_as_missing(tmp_path: Path) -> None:
    data = {**base(), "trace": {"file": "../nowhere/trace.csv", "format": "azure"}}
    scenario = parse_scenario(data, tmp_path / "s.yaml")
    with pytest.raises(TraceMissingError, match="trace file not found"):
        scenario.load_trace()


def test_group_config_in_daemon_schema() -> None:
    data = {
        **base(),
        "config": {
            "healthCheckTimeout": 5,
            "models": {"A": {"ttl": 30, "concurrencyLimit": 3}, "B": None},
            "groups": {"g": {"members": ["A", "B"], "swap": False}},
            "routing": {"scheduler": {"use": "fifo", "settings": {"fifo": {"priority": {"A": 2}}}}},
        },
    }
    scenario = parse_scenario(data, Path("g.yaml"))
    spec = scenario.spec
    assert spec.models["A"].ttl == 30 and spec.models["A"].concurrency_limit == 3
    assert spec.groups[0].members == ("A", "B") and not spec.groups[0].swap
    assert spec.health_check_timeout == 15  # raised to the llama-swap minimum
    assert spec.settings_for("fifo")["priority"] == {"A": 2}


# ---------------------------------------------------------------------- expect grammar


VALUES = {
    "fifo": {"swaps": 10, "latency": {"p99": 30.5}, "none": None, "name": "x"},
    "serial": {"swaps": 20, "order_violations": 0},
}


@pytest.mark.parametrize(
    ("text", "passed"),
    [
        ("serial.order_violations == 0", True),
        ("fifo.swaps <= serial.swaps", True),
        ("fifo.swaps * 2 >= serial.swaps", True),
        ("fifo.swaps > 0.6 * serial.swaps", False),
        ("fifo.latency.p99 < 30", False),
        ("(fifo.swaps + serial.swaps) / 3 == 10", True),
        ("-fifo.swaps < 0", True),
        ("1e1 == fifo.swaps", True),
        ("fifo.swaps != 10", False),
    ],
)
def test_expect_grammar(text: str, passed: bool) -> None:
    assert evaluate(text, VALUES).passed is passed


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "fifo.swap == 1",
            r"unknown metric 'fifo.swap' \(available here: latency, name, none, swaps\)",
        ),
        ("fifo.swaps", "incomplete expression"),
        ("fifo.swaps 3", "expected a comparison"),
        ("__import__('os').system('true') == 0", "unexpected character"),
        ("fifo.none == 1", "has no value"),
        ("fifo.name == 1", "is not a number"),
        ("fifo.swaps / 0 == 1", "division by zero"),
        ("fifo.swaps == 1 == 1", "unexpected '=='"),
    ],
)
def test_expect_errors(text: str, message: str) -> None:
    with pytest.raises(ExpectError, match=message):
        evaluate(text, VALUES)


def test_superposed_trace_files_with_per_part_transforms(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("arrival,model,service_time\n0,X,1\n10,X,1\n20,X,1\n")
    (tmp_path / "b.jsonl").write_text(
        '{"arrival": 5, "model": "Y", "service_time": 1}\n'
        '{"arrival": 15, "model": "Y", "service_time": 1}\n'
    )
    data = {
        **base(),
        "config": {"models": {"A": {}, "B": {}}},
        "trace": {
            "superpose": [
                {"file": str(tmp_path / "a.csv"), "transforms": [{"rename": {"X": "A"}}]},
                {"file": "b.jsonl", "format": "canonical", "transforms": [{"rename": {"Y": "B"}}]},
            ],
            "transforms": [{"time_scale": 2}],
        },
    }
    scenario = parse_scenario(data, tmp_path / "s.yaml")
    trace = scenario.load_trace()
    assert trace.model_names() == ["A", "B", "A", "B", "A"]
    assert trace.arrival.tolist() == [0.0, 10.0, 20.0, 30.0, 40.0]
    experiment = run_experiment(scenario, trace)
    assert experiment.summary["results"]["serial"]["completed"] == 5


def test_cli_bless_and_check_golden(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from llamaswap.cli import main

    folder = tmp_path / "scenarios"
    folder.mkdir()
    scenario = folder / "default.yaml"
    shutil.copy(ROOT / "scenarios" / "default.yaml", scenario)
    out = ["--out", str(tmp_path / "out"), "--quiet"]
    assert main(["sim", str(scenario), "--ci", "--check-golden", *out]) == 1
    assert main(["sim", str(scenario), "--ci", "--bless", *out]) == 0
    assert "(new golden file)" in capsys.readouterr().out
    assert main(["sim", str(scenario), "--ci", "--check-golden", *out]) == 0
    assert "matches golden" in capsys.readouterr().out
    assert main(["sim", str(scenario), "--bless", *out]) == 2  # only the CI-scaled run is golden
    assert "need --ci" in capsys.readouterr().err


def test_progress_bar_reports_each_scheduler() -> None:
    import io

    from rich.console import Console

    from sim.cli import _progress

    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=100)
    scenario, _ = ci_run(ROOT / "scenarios" / "default.yaml")
    with _progress(True, console) as factory:
        run_experiment(scenario, scenario.load_trace(ci=True), ["fifo"], progress=factory)
    assert "simulating fifo" in buffer.getvalue()


def test_warnings_for_ignored_models_and_unserved_trace_models(tmp_path: Path) -> None:
    data = {**base(), "config": {"models": {"A": {}, "B": {"cmd": "server --no-port"}}}}
    scenario = parse_scenario(data, tmp_path / "s.yaml")
    assert any("models.B" in w for w in scenario.warnings)  # the daemon would ignore B too
    trace = scenario.load_trace()
    (warning,) = scenario.trace_warnings(trace)
    assert "['B'] are not in the config" in warning
    experiment = run_experiment(scenario, trace)
    result = experiment.summary["results"]["fifo"]
    assert result["rejected"] == result["per_model"]["B"]["requests"] > 0


def test_empirical_load_times_from_a_csv_column(tmp_path: Path) -> None:
    (tmp_path / "loads.csv").write_text("timestamp,value\n1,2000\n2,4000\n3,\n")
    data = {
        **base(),
        "timing": {
            "default": {"load_time": {"kind": "empirical", "file": "loads.csv", "scale": 0.001}}
        },
    }
    scenario = parse_scenario(data, tmp_path / "s.yaml")
    load = scenario.profiles["A"].load_time
    assert load.kind == "empirical" and load.samples == (2.0, 4.0)
    bad = {**base(), "timing": {"A": {"load_time": {"file": "loads.csv", "column": "ms"}}}}
    with pytest.raises(ScenarioError, match=r"timing.A.load_time.column: 'ms' is not a column"):
        parse_scenario(bad, tmp_path / "s.yaml")
    missing = {**base(), "timing": {"A": {"load_time": {"file": "gone.csv"}}}}
    with pytest.raises(TraceMissingError, match="timing samples file not found"):
        parse_scenario(missing, tmp_path / "s.yaml")


def test_variants_compare_configurations_of_one_policy() -> None:
    """A variant runs its scheduler with its own settings, under its label, in results and expect."""
    data = {
        **base(),
        "config": {
            "models": {"A": {}, "B": {}},
            "routing": {
                "scheduler": {"use": "batch-aging", "settings": {"batch-aging": {"maxWait": 9}}}
            },
        },
        "timing": {"default": {"parallel": 1, "load_time": 1.0}},
        "trace": {"synthetic": {"duration": 300, "rate": 1.5, "models": ["A", "B"]}},
        "schedulers": [
            "fifo",
            "batch-aging",
            {"label": "planned", "use": "batch-aging", "settings": {"slots": 1}},
        ],
        "expect": ["planned.max_in_flight == 1", "fifo.max_in_flight > 1"],
    }
    scenario = parse_scenario(data, Path("v.yaml"))
    assert scenario.schedulers == ["fifo", "batch-aging", "planned"]
    planned = scenario.variant("planned")
    assert planned.scheduler == "batch-aging"
    assert planned.spec.settings_for("batch-aging") == {"maxWait": 9, "slots": 1}
    assert scenario.variant("batch-aging").spec.settings_for("batch-aging") == {"maxWait": 9}
    experiment = run_experiment(scenario, scenario.load_trace())
    assert list(experiment.summary["results"]) == ["fifo", "batch-aging", "planned"]
    assert experiment.passed, [o.detail for o in experiment.outcomes]
    assert experiment.summary["results"]["batch-aging"]["max_in_flight"] > 1
    with pytest.raises(ScenarioError, match=r"\['planned'\] are variants"):
        scenario.plain_schedulers(["fifo", "planned"], "--scheduler")
    scenario.plain_schedulers(["fifo", "batch-aging"], "--scheduler")
    with pytest.raises(ScenarioError, match=r"unknown schedulers \['nope'\]"):
        scenario.check_labels(["nope"], "--scheduler")
