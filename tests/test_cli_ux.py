"""Issue 21: what a new user trips over on the command line.

Every sub-command answers bad input with one clear line and exit status 2 (1 for failed
expectations), never a traceback; the summary table fits 80 and 120 columns; trace options are
validated and typed; and a hypothesis fuzz test throws random arguments and files at the CLI.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from rich.console import Console

from llamaswap.cli import INTERNAL_ERROR, main

ROOT = Path(__file__).resolve().parent.parent

TINY = {
    "name": "tiny",
    "seed": 1,
    "schedulers": ["serial", "fifo"],
    "config": {"models": {"A": {}, "B": {}}},
    "timing": {"default": {"load_time": 1.0, "parallel": 2}},
    "trace": {"synthetic": {"duration": 40, "rate": 0.5, "models": ["A", "B"]}},
    "expect": ["serial.order_violations == 0"],
}


def run(*argv: str) -> tuple[int, str, str]:
    """``llamaswap ARGV`` in this process: (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            code = main(list(argv))
        except SystemExit as exc:  # argparse's own usage errors
            code = exc.code if isinstance(exc.code, int) else 2
    return code, out.getvalue(), err.getvalue()


def assert_one_line_error(code: int, err: str, expected: int = 2) -> str:
    assert code == expected, err
    assert "Traceback" not in err and INTERNAL_ERROR not in err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    return lines[0]


def scenario_file(tmp_path: Path, **changes: object) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump({**TINY, **changes}))
    return path


# ---------------------------------------------------------------------- sim


@pytest.mark.parametrize(
    ("check", "message"),
    [
        ("fifo.latnecy.p99 < 300", "unknown metric 'fifo.latnecy' (available here: "),
        ("fifo.swaps <", "incomplete expression"),
        ("lifo.swaps < 3", "unknown metric 'lifo' (available here: fifo, serial, trace)"),
        ("fifo.swaps / 0 < 1", "division by zero"),
        ("fifo.swaps < 3 < 4", "unexpected '<' after the comparison"),
    ],
)
def test_expect_typos_are_one_line(tmp_path: Path, check: str, message: str) -> None:
    path = scenario_file(tmp_path, expect=[check])
    code, _, err = run("sim", str(path), "--quiet", "--out", str(tmp_path / "out"))
    line = assert_one_line_error(code, err)
    assert message in line and str(path) in line


def test_replacing_the_trace_skips_its_expectations_unless_asked(tmp_path: Path) -> None:
    trace = tmp_path / "other.csv"
    assert run("trace", "synth", "-o", str(trace), "--models", "X,Y", "--duration", "30")[0] == 0
    path = scenario_file(tmp_path, expect=["fifo.latency.p99 < 300", "fifo.completed > 0"])
    out = ["--out", str(tmp_path / "out")]
    code, stdout, err = run("sim", str(path), "--trace", str(trace), *out)
    assert code == 0, err
    assert "its 2 expect: checks (written for that trace) are skipped; add --expect" in err
    assert "are not in the config" in err  # the models differ: their requests are rejected
    assert "FAIL" not in stdout and "PASS" not in stdout
    # --expect forces them; a metric without a value is a failed check, and --quiet still says so
    code, stdout, err = run("sim", str(path), "--trace", str(trace), "--expect", "--quiet", *out)
    assert code == 1 and "Traceback" not in err
    assert "FAIL fifo.latency.p99 < 300" in stdout and "has no value in this run" in stdout
    assert "FAIL fifo.completed > 0" in stdout and "PASS" not in stdout


def test_quiet_still_prints_failures(tmp_path: Path) -> None:
    path = scenario_file(tmp_path, expect=["serial.order_violations == 0", "fifo.swaps < 0"])
    code, stdout, _ = run("sim", str(path), "--quiet", "--out", str(tmp_path / "out"))
    assert code == 1
    assert stdout.splitlines() == [line for line in stdout.splitlines() if line.startswith("FAIL")]
    assert stdout.startswith("FAIL fifo.swaps < 0")


def test_scenario_yaml_errors_and_duplicate_keys(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("name: a\nseed: 1\nseed: 2\n")
    line = assert_one_line_error(*run("sim", str(path))[::2])
    assert f"{path}: not valid YAML: line 3, column 1: duplicate key 'seed'" in line
    path.write_text("name: [a\n")
    line = assert_one_line_error(*run("sim", str(path))[::2])
    assert str(path) in line and "unicode string" not in line


def test_missing_files_say_so(tmp_path: Path) -> None:
    nope = str(tmp_path / "nope.jsonl")
    for argv in (("sim", "--from-log", nope), ("trace", "from-log", nope)):
        line = assert_one_line_error(*run(*argv)[::2])
        assert line == f"error: {nope}: no such event log file"
    line = assert_one_line_error(*run("sim", str(tmp_path / "none.yaml"))[::2])
    assert "no such scenario file" in line
    line = assert_one_line_error(*run("trace", "stats", nope)[::2])
    assert "no such trace file" in line


# ---------------------------------------------------------------------- the table


def _goldens() -> list[Path]:
    return sorted((ROOT / "scenarios" / "golden").glob("*.json"))


@pytest.mark.parametrize("width", [80, 120])
@pytest.mark.parametrize("wide", [False, True])
def test_summary_table_fits_the_terminal(width: int, wide: bool) -> None:
    """No line wider than the terminal and no cell cut or wrapped, for every bundled scenario."""
    from sim.cli import print_table
    from sim.report import COMPACT_COLUMNS, TABLE_COLUMNS, table_rows

    for golden in _goldens():
        summary = {"scenario": golden.stem, **json.loads(golden.read_text())}
        console = Console(width=width, record=True, file=io.StringIO())
        print_table(console, summary, wide=wide)
        text = console.export_text()
        assert max(len(line) for line in text.splitlines()) <= width, golden
        assert "…" not in text
        _, rows = table_rows(summary, TABLE_COLUMNS if wide else COMPACT_COLUMNS)
        lines = text.splitlines()
        for row in rows:
            # each scheduler's cells, whole, on one line (transposed: each metric's row)
            name = row[0]
            assert any(line.split()[:1] == [name] for line in lines) or wide, (golden, name)
            for cell in row[1:]:
                assert any(cell in line.split() for line in lines), (golden, name, cell)


# ---------------------------------------------------------------------- trace tools


def _azure(path: Path, rows: int) -> Path:
    lines = ["TIMESTAMP,ContextTokens,GeneratedTokens"]
    lines += [f"2023-11-16 18:15:{i:02d}.0000000,100,10" for i in range(rows)]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_import_options_are_validated_and_typed(tmp_path: Path) -> None:
    a, b = _azure(tmp_path / "a_code.csv", 3), _azure(tmp_path / "b_conv.csv", 2)
    out = tmp_path / "t.csv"
    code, stdout, err = run(
        "trace", "import", "--format", "azure", str(a), str(b), "-o", str(out),
        "--option", "models=coder,chat",
    )  # fmt: skip
    assert code == 0, err
    code, stdout, _ = run("trace", "stats", str(out), "--json")
    assert json.loads(stdout)["requests_per_model"] == {"coder": 3, "chat": 2}
    line = assert_one_line_error(
        *run("trace", "import", "--format", "azure", str(a), "-o", str(out), "--option", "bogus=1")[
            ::2
        ]
    )
    assert line == "error: format 'azure': unknown option 'bogus' (valid: models)"
    line = assert_one_line_error(
        *run(
            "trace",
            "import",
            "--format",
            "mooncake",
            str(a),
            "-o",
            str(out),
            "--option",
            "models=x",
        )[::2]
    )
    assert "option models: expected an integer, got 'x'" in line
    line = assert_one_line_error(
        *run(
            "trace",
            "import",
            "--format",
            "azure",
            str(a),
            "-o",
            str(out),
            "--transform",
            "{window: ",
        )[::2]
    )
    assert line.startswith("error: --transform '{window: ': not valid YAML: line 1, column")


def test_stats_on_a_raw_trace_suggests_import(tmp_path: Path) -> None:
    raw = _azure(tmp_path / "AzureLLMInferenceTrace_code.csv", 2)
    line = assert_one_line_error(*run("trace", "stats", str(raw))[::2])
    assert "missing column 'arrival'" in line
    assert f"'llamaswap trace import --format azure {raw} -o TRACE.csv'" in line


def test_help_shows_defaults_and_the_real_output_name() -> None:
    _, synth, _ = run("trace", "synth", "--help")
    assert "(default: 1.0)" in synth and "(default: A,B,C)" in synth
    _, from_log, _ = run("trace", "from-log", "--help")
    assert "events.jsonl -> events.trace.csv" in from_log
    _, imp, _ = run("trace", "import", "--help")
    assert "servegen: models, assign, start, duration, rate_scale" in " ".join(imp.split())


def test_readme_lists_the_importer_options() -> None:
    from sim.import_options import markdown_table

    assert markdown_table() in (ROOT / "reports" / "README.md").read_text()


def test_broken_pipe_is_quiet(tmp_path: Path) -> None:
    trace = tmp_path / "t.csv"
    assert run("trace", "synth", "-o", str(trace), "--models", "A,B,C,D,E")[0] == 0
    read, write = os.pipe()
    os.close(read)  # the reader is gone before the first line is written (`| head -0`)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "llamaswap", "trace", "stats", str(trace)],
        stdout=write,
        stderr=subprocess.PIPE,
        env=env,
        check=False,
    )
    os.close(write)
    assert done.stderr == b"" and done.returncode == 1


def test_version_imports_no_command_module() -> None:
    code = (
        "import sys; from llamaswap.cli import main\n"
        "try: main(['--version'])\n"
        "except SystemExit: pass\n"
        "heavy = [m for m in ('numpy', 'matplotlib', 'simpy', 'aiohttp', 'rich', 'sim') "
        "if m in sys.modules]\n"
        "print(heavy)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.stdout.strip().endswith("[]"), out
    code = code.replace("['--version']", "['fake-upstream', '--help']")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.stdout.strip().endswith("['aiohttp']"), out


# ---------------------------------------------------------------------- fuzz

OPTIONS = st.sampled_from(
    [
        ("--seed", "3"), ("--seed", "x"), ("--scheduler", "fifo"), ("--scheduler", "nope"),
        ("--quiet",), ("--wide",), ("--expect",), ("--ci",), ("--json",), ("--strict",),
        ("--option", "models=coder,chat"), ("--option", "bogus=1"), ("--option", "x="),
        ("--transform", "{limit: 3}"), ("--transform", "{window: "), ("--transform", "[]"),
        ("--transform", "{sample: 2}"), ("--rate", "0"), ("--rate", "-1"), ("--rate", "nan"),
        ("--duration", "1e400"), ("--duration", "0"), ("--burst", "0:10:2"), ("--burst", "1:2"),
        ("--burst", "0:5:2:Z"), ("--models", ","), ("--zipf", "-3"), ("--cv", "nan"),
        ("--cv", "0"), ("--slots", "A=2"), ("--slots", "0"), ("--slots", "nope=1"),
        ("--trace", "@FILE"), ("--trace", "@DIR"), ("--output-tokens", "-5"),
    ]
)  # fmt: skip
VALID_CONFIG = "models:\n  A: {cmd: 'true ${PORT}'}\n  B: {cmd: 'true ${PORT}', ttl: 5}\n"
FILE_TEXTS = st.one_of(
    st.sampled_from(["arrival,model\n0,A\n1,B\n2.5,A\n", yaml.safe_dump(TINY), VALID_CONFIG]),
    st.sampled_from(["@LOG"]),
    st.text(max_size=60),
    st.sampled_from(
        [
            "arrival,model\n0,A\n1,B\n",
            "arrival,model\n-1,A\n",
            "arrival,model\nx,A\n",
            "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.6805900,1,2\n",
            '{"ev": "meta"}\n{"ev": "arrival"}\n',
            "{}",
            "models: {}\n",
            "models:\n  m: {cmd: 'x ${PORT}', ttl: nope}\n",
            yaml.safe_dump({**TINY, "expect": ["fifo.swaps <"]}),
            yaml.safe_dump({**TINY, "expect": ["fifo.swapz < 3"]}),
            yaml.safe_dump({**TINY, "trace": {"file": "nope.csv"}}),
            yaml.safe_dump({**TINY, "timing": {"default": {"load_time": -1}}}),
            yaml.safe_dump({**TINY, "config": {"models": {"A": {"ttl": "x"}}}}),
        ]
    ),
)
COMMANDS = st.sampled_from(
    [
        ["sim", "@FILE", "--out", "@OUT"],
        ["sim", "--from-log", "@FILE", "--out", "@OUT"],
        ["trace", "stats", "@FILE"],
        ["trace", "import", "--format", "canonical", "@FILE", "-o", "@OUT.csv"],
        ["trace", "import", "--format", "azure", "@FILE", "-o", "@OUT.csv"],
        ["trace", "synth", "-o", "@OUT.csv", "--duration", "30"],
        ["trace", "from-log", "@FILE", "--out-trace", "@OUT.csv", "--out-profile", "@OUT.yaml"],
        ["check-config", "--config", "@FILE"],
    ]
)
_LOG: list[str] = []


def _event_log(tmp_path: Path) -> str:
    """A real event log (the simulator writes the daemon's format), made once."""
    if not _LOG:
        code, _, err = run(
            "sim", str(scenario_file(tmp_path)), "--quiet", "--scheduler", "fifo",
            "--out", str(tmp_path / "log-run"), "--record-dir", str(tmp_path / "rec"),
        )  # fmt: skip
        assert code == 0, err
        _LOG.append((tmp_path / "rec" / "fifo" / "events.jsonl").read_text())
    return _LOG[0]


@pytest.mark.slow
@settings(  # a fixed, derandomized set (same code => same run), as the core's property tests
    max_examples=100,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(command=COMMANDS, options=st.lists(OPTIONS, max_size=3), text=FILE_TEXTS)
@example(
    command=["sim", "@FILE", "--out", "@OUT"], options=[("--wide",)], text=yaml.safe_dump(TINY)
)
@example(command=["sim", "--from-log", "@FILE", "--out", "@OUT"], options=[], text="@LOG")
@example(  # found by this test: an arrival without its keys was a KeyError
    command=["sim", "--from-log", "@FILE", "--out", "@OUT"],
    options=[],
    text='{"ev":""}\n{"ev":"arrival"}',
)
@example(command=["trace", "from-log", "@FILE"], options=[("--slots", "A=2")], text="@LOG")
@example(  # found by this test: an infinite duration overflowed inside the generator
    command=["trace", "synth", "-o", "@OUT.csv", "--duration", "30"],
    options=[("--duration", "1e400")],
    text="@LOG",
)
@example(command=["check-config", "--config", "@FILE"], options=[("--json",)], text=VALID_CONFIG)
def test_fuzz_cli_never_tracebacks(
    tmp_path: Path, command: list[str], options: list[tuple[str, ...]], text: str
) -> None:
    """Whatever the arguments and files: exit 0, 1 (failed checks) or 2, never a traceback or
    an internal error, and a failure says why on stderr."""
    file = tmp_path / "input.yaml"
    file.write_text(_event_log(tmp_path) if text == "@LOG" else text)
    places = {"@FILE": str(file), "@DIR": str(tmp_path), "@OUT": str(tmp_path / "out")}
    words = [*command, *(w for option in options for w in option)]
    argv = [places.get(w, w.replace("@OUT", str(tmp_path / "out"))) for w in words]
    here = os.getcwd()
    os.chdir(tmp_path)  # whatever a command writes by default lands here, not in the repo
    try:
        code, _, err = run(*argv)
    finally:
        os.chdir(here)
    assert code in (0, 1, 2), (argv, code, err)
    assert "Traceback" not in err and INTERNAL_ERROR not in err, (argv, err)
    if code == 2:
        assert err.strip(), argv


def test_expect_syntax_check_does_not_guess_metric_values() -> None:
    """The pre-run check reads the grammar only: a division by a difference of two metrics is
    not a division by zero before the run has values."""
    from sim.expect import ExpectError, check_syntax

    check_syntax("fifo.swaps / (serial.swaps - fifo.swaps) < 3", "here")
    check_syntax("-(fifo.latency.p99) * 2 <= trace.requests + 1", "here")
    with pytest.raises(
        ExpectError, match=re.escape("here: 'fifo.swaps / 0 < 1': division by zero")
    ):
        check_syntax("fifo.swaps / 0 < 1", "here")
    with pytest.raises(ExpectError, match="here: each assertion must be a non-empty string"):
        check_syntax(3, "here")
