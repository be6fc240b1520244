"""Canonical trace files, importers of the real public traces, synthetic generators, transforms."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from llamaswap.cli import main
from sim.importers import import_trace
from sim.shared import SharedDirMissingError, shared_path
from sim.synthetic import synthetic_trace
from sim.trace import Trace, TraceError, read_trace, trace_stats, write_trace
from sim.transforms import apply_transforms, superpose, top_n

RAW = Path("traces/raw")
"""Inside the shared directory (``sim.shared``: beside the checkout, or beside the main checkout)."""


def need(path: Path) -> Path:
    try:
        return shared_path(path)
    except SharedDirMissingError as exc:
        pytest.skip(f"real trace not available here: {exc}")


def small() -> Trace:
    return Trace.build(
        [0.0, 1.0, 1.5, 4.0],
        ["A", "B", "B", "A"],
        prompt_tokens=[10, np.nan, 30, 40],
        service_time=[np.nan, 2.0, np.nan, 1.0],
        cancel_after=[np.nan, np.nan, 5.0, np.nan],
    )


# ---------------------------------------------------------------------- canonical format


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_canonical_round_trip(tmp_path: Path, suffix: str) -> None:
    trace = small()
    path = tmp_path / f"t{suffix}"
    write_trace(trace, path)
    back = read_trace(path)
    assert back.model_names() == ["A", "B", "B", "A"]
    assert back.arrival.tolist() == [0.0, 1.0, 1.5, 4.0]
    assert back.prompt_tokens.tolist() == [10, -1, 30, 40]
    assert np.isnan(back.service_time[0]) and back.service_time[1] == 2.0
    assert back.cancel_after[2] == 5.0
    assert not back.has("output_tokens")


def test_read_sorts_by_arrival_and_keeps_ids(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("arrival,model,id\n5,A,late\n1,B,early\n")
    trace = read_trace(path)
    assert trace.request_ids() == ["early", "late"]
    assert trace.model_names() == ["B", "A"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("model\nA\n", "missing column 'arrival'"),
        ("arrival,model\nsoon,A\n", "row 1: 'arrival' is not a number"),
        ("arrival,model\n-1,A\n", "must be a non-negative number"),
        ("arrival,model\n1,\n", "row 1: 'model' is empty"),
        ("arrival,model,service_time\n1,A,x\n", "'service_time' is not a number"),
    ],
)
def test_bad_trace_files_name_the_problem(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(TraceError, match=message):
        read_trace(path)


def test_bad_jsonl_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"arrival": 1, "model": "A"}\nnot json\n')
    with pytest.raises(TraceError, match=r"bad.jsonl:2: not JSON"):
        read_trace(path)


def test_stats_switch_ratio_and_burstiness() -> None:
    trace = Trace.build([0, 1, 2, 3, 4], ["A", "A", "B", "A", "A"])
    stats = trace_stats(trace)
    assert stats["requests"] == 5 and stats["models"] == 2
    assert stats["switch_ratio"] == 0.5  # A->B and B->A out of 4 pairs
    assert stats["burstiness_cv"] == 0.0  # perfectly regular arrivals
    assert stats["rate"] == 1.25
    assert stats["requests_per_model"] == {"A": 4, "B": 1}


# ---------------------------------------------------------------------- importers (real traces)


def test_azure_two_files_are_two_models() -> None:
    folder = need(RAW / "azure-llm-2023")
    trace = import_trace(
        "azure",
        [folder / "AzureLLMInferenceTrace_code.csv", folder / "AzureLLMInferenceTrace_conv.csv"],
    )
    stats = trace_stats(trace)
    assert stats["requests_per_model"] == {"conv": 19366, "code": 8819}
    assert trace.arrival[0] == 0.0 and bool(np.all(np.diff(trace.arrival) >= 0))
    assert 3400 < stats["duration"] < 3600  # about 58 minutes
    assert trace.prompt_tokens.min() >= 0 and trace.output_tokens.min() >= 0


def test_mooncake_sessions_spread_over_models() -> None:
    path = need(RAW / "mooncake-fast25" / "conversation_trace.jsonl")
    one = import_trace("mooncake", [path])
    assert len(one) == 12031 and one.models == ["kimi"]
    assert abs(one.arrival[-1] - 3536.999) < 1e-6
    three = import_trace("mooncake", [path], models=3, assign="stripe")
    assert three.models == ["kimi-0", "kimi-1", "kimi-2"]
    counts = trace_stats(three)["requests_per_model"]
    assert max(counts.values()) - min(counts.values()) <= 1  # stripe is round-robin


def test_alibaba_models_and_service_times() -> None:
    path = need(RAW / "alibaba-gentd26" / "lora_request_trace.csv")
    trace = import_trace("alibaba", [path])
    stats = trace_stats(trace)
    assert stats["requests"] == 26823
    # ATTRIBUTION.md: 20,023 of 26,822 consecutive pairs switch model.
    assert round(stats["switch_ratio"] * 26822) == 20023
    assert stats["has_service_time"] and 25 < float(np.nanmean(trace.service_time)) < 32
    folded = top_n(trace, 5)
    assert len(folded.models) == 5
    assert 0.65 < len(folded) / len(trace) < 0.75  # top 5 carry ~70%


def _chunk(folder: Path, index: int, rows: list[str]) -> None:
    (folder / f"chunk-{index}-trace.csv").write_text("\n".join(rows) + "\n")


def test_servegen_windows_rate_and_stripe(tmp_path: Path) -> None:
    # Three clients: a steady Gamma client, a Weibull client, an idle one.
    _chunk(tmp_path, 0, ["0,2.0,1.0,Gamma,1.0,0.5", "600,0,0,,0,0"])
    _chunk(tmp_path, 1, ["0,1.0,2.0,Weibull,0.5,1.0", "600,1.0,2.0,Weibull,0.5,1.0"])
    _chunk(tmp_path, 2, ["0,0,0,,0,0", "600,0,0,,0,0"])
    trace = import_trace("servegen", [tmp_path], models=2, start=0, duration=1200, seed=3)
    counts = trace_stats(trace)["requests_per_model"]
    label = tmp_path.name
    # client 0 -> model 0 (2 req/s for 600 s), client 1 -> model 1 (1 req/s for 1200 s)
    assert abs(counts[f"{label}-0"] - 1200) < 150
    assert abs(counts[f"{label}-1"] - 1200) < 250
    again = import_trace("servegen", [tmp_path], models=2, start=0, duration=1200, seed=3)
    assert np.array_equal(trace.arrival, again.arrival)
    assert trace.arrival.max() < 1200


def test_servegen_real_directory() -> None:
    folder = need(RAW / "servegen" / "reason" / "deepseek-r1")
    trace = import_trace("servegen", [folder], models=3, start=36000, duration=600, rate_scale=0.1)
    assert trace.models == ["deepseek-r1-0", "deepseek-r1-1", "deepseek-r1-2"]
    assert len(trace) > 0 and trace.arrival.max() < 600


def test_importer_errors(tmp_path: Path) -> None:
    with pytest.raises(TraceError, match="unknown trace format 'nope'"):
        import_trace("nope", [tmp_path])
    with pytest.raises(TraceError, match="no such file"):
        import_trace("azure", [tmp_path / "missing.csv"])
    bad = tmp_path / "a.csv"
    bad.write_text("time,x\n")
    with pytest.raises(TraceError, match="expected header TIMESTAMP"):
        import_trace("azure", [bad])


# ---------------------------------------------------------------------- synthetic


def test_synthetic_rates_zipf_and_determinism() -> None:
    spec = {"duration": 2000, "rate": 3.0, "models": ["A", "B", "C"], "zipf": 1.0}
    trace = synthetic_trace(spec, seed=5)
    counts = trace_stats(trace)["requests_per_model"]
    # weights 1, 1/2, 1/3 of 3 req/s over 2000 s
    expected = {"A": 6000 * 6 / 11, "B": 6000 * 3 / 11, "C": 6000 * 2 / 11}
    for model, value in expected.items():
        assert abs(counts[model] - value) < 5 * value**0.5
    assert np.array_equal(trace.arrival, synthetic_trace(spec, seed=5).arrival)
    assert not np.array_equal(trace.arrival, synthetic_trace(spec, seed=6).arrival)


def test_synthetic_gamma_burstiness_and_bursts() -> None:
    base = {"duration": 4000, "rate": 2.0, "models": ["A"]}
    poisson = trace_stats(synthetic_trace(base, 1))["burstiness_cv"]
    bursty = trace_stats(synthetic_trace({**base, "arrivals": {"gamma": {"cv": 3.0}}}, 1))
    assert 0.9 < poisson < 1.1 and bursty["burstiness_cv"] > 2.0
    burst = synthetic_trace({**base, "bursts": [{"start": 1000, "duration": 100, "factor": 10}]}, 1)
    inside = np.count_nonzero((burst.arrival >= 1000) & (burst.arrival < 1100))
    assert 1500 < inside < 2500  # 10x of 2 req/s for 100 s


def test_synthetic_errors_name_the_key() -> None:
    with pytest.raises(TraceError, match=r"synthetic.models"):
        synthetic_trace({"rate": 1}, 0)
    with pytest.raises(TraceError, match=r"unknown keys \['rat'\]"):
        synthetic_trace({"rat": 1, "models": ["A"]}, 0)
    with pytest.raises(TraceError, match=r"bursts\[0\].model: 'Z'"):
        synthetic_trace({"rate": 1, "models": ["A"], "bursts": [{"model": "Z"}]}, 0)


# ---------------------------------------------------------------------- transforms


def test_transforms_window_scale_limit_rename_cancel() -> None:
    trace = Trace.build(np.arange(10.0), ["A", "B"] * 5)
    out = apply_transforms(
        trace,
        [
            {"window": {"start": 2, "duration": 6}},
            {"time_scale": 0.5},
            {"limit": 4},
            {"rename": {"A": "X"}},
            {"cancel": {"prob": 1.0, "after": 7}},
        ],
        seed=0,
    )
    assert out.arrival.tolist() == [0.0, 0.5, 1.0, 1.5]
    assert out.model_names() == ["X", "B", "X", "B"]
    assert out.cancel_after.tolist() == [7.0] * 4
    assert out.notes[0].startswith("window")


def test_top_n_drop_and_merge_and_sample() -> None:
    trace = Trace.build(np.arange(6.0), ["A", "A", "A", "B", "B", "C"])
    assert top_n(trace, 2).model_names() == ["A", "A", "A", "B", "B"]
    merged = top_n(trace, 1, merge=True)
    assert merged.model_names() == ["A", "A", "A", "other", "other", "other"]
    sampled = apply_transforms(Trace.build(np.arange(10000.0), ["A"] * 10000), [{"sample": 0.1}], 0)
    assert 800 < len(sampled) < 1200


def test_superpose_merges_in_time_order() -> None:
    a = Trace.build([0.0, 2.0], ["A", "A"])
    b = Trace.build([1.0, 3.0], ["B", "B"])
    both = superpose([a, b])
    assert both.model_names() == ["A", "B", "A", "B"]
    assert both.models == ["A", "B"]


def test_transform_errors() -> None:
    trace = small()
    with pytest.raises(TraceError, match=r"unknown transform 'squash'"):
        apply_transforms(trace, [{"squash": 1}], 0)
    with pytest.raises(TraceError, match=r"transforms\[0\].limit"):
        apply_transforms(trace, [{"limit": -1}], 0)
    with pytest.raises(TraceError, match=r"one-key mapping"):
        apply_transforms(trace, ["limit"], 0)


# ---------------------------------------------------------------------- CLI


def test_cli_synth_stats_and_import(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "s.csv"
    assert (
        main(
            [
                "trace",
                "synth",
                "-o",
                str(out),
                "--models",
                "A,B",
                "--rate",
                "2",
                "--duration",
                "100",
                "--burst",
                "10:5:4:A",
                "--seed",
                "1",
            ]
        )
        == 0
    )
    assert main(["trace", "stats", str(out), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out.split("\n", 1)[1])
    assert stats["models"] == 2 and stats["requests"] > 100
    assert main(["trace", "stats", str(out)]) == 0
    text = capsys.readouterr().out
    assert "switch ratio" in text and "burstiness" in text
    converted = tmp_path / "c.jsonl"
    assert (
        main(
            [
                "trace",
                "import",
                "--format",
                "canonical",
                str(out),
                "-o",
                str(converted),
                "--transform",
                "{limit: 10}",
            ]
        )
        == 0
    )
    assert len(read_trace(converted)) == 10
    assert main(["trace", "stats", str(tmp_path / "missing.csv")]) == 2
    assert "no such trace file" in capsys.readouterr().err


def test_cli_import_real_alibaba(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = need(RAW / "alibaba-gentd26" / "lora_request_trace.csv")
    out = tmp_path / "ali.csv"
    assert (
        main(
            [
                "trace",
                "import",
                "--format",
                "alibaba",
                str(path),
                "-o",
                str(out),
                "--transform",
                "{top_n: 3}",
            ]
        )
        == 0
    )
    trace = read_trace(out)
    assert len(trace.models) == 3 and trace.has("service_time")
