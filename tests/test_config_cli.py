"""``llamaswap check-config`` (registered by ``llamaswap.config.cli.register``)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from llamaswap.config import cli


def run(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers())
    args = parser.parse_args(["check-config", *argv])
    return int(args.func(args))


def test_valid_config_text_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "c.yaml"
    f.write_text(
        "models:\n  m: {cmd: 'true --port ${PORT}', aliases: [mm], ttl: 30}\n"
        "groups:\n  g: {members: [m], swap: false}\nperformance: {}\n"
    )
    assert run("--config", str(f)) == 0
    out, errs = capsys.readouterr()
    assert "model m  [group g]  ttl 30s  limit 10" in out
    assert "cmd:   true --port 5800" in out and "aliases: mm" in out
    assert errs == "warning: performance: not supported by llamaswap yet; ignored\n"
    assert run("--config", str(f), "--json") == 0
    info = json.loads(capsys.readouterr().out)
    assert info["models"]["m"]["port"] == 5800 and info["models"]["m"]["group"] == "g"
    assert info["scheduler"] == "serial" and info["warnings"] == [
        "performance: not supported by llamaswap yet; ignored"
    ]
    assert run("--config", str(f), "--strict") == 2


def test_invalid_and_missing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("models:\n  m: {cmd: 'srv ${PORT}', ttl: -5}\n")
    assert run("--config", str(f)) == 1
    assert capsys.readouterr().err == "invalid config: models.m.ttl: must be >= -1, got -5\n"
    assert run() == 2  # a usage error
    assert "--config FILE or --config-dir DIR is required" in capsys.readouterr().err


def test_every_error_and_warning_at_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 21: one run names every bad key (not only the first) and every missing variable."""
    for name in ("LS_A", "LS_B", "LS_C"):
        monkeypatch.delenv(name, raising=False)
    f = tmp_path / "c.yaml"
    f.write_text(
        "healthCheckTimeout: soon\nstartPort: 0\nbogus: 1\n"
        "models:\n  a: {cmd: 'true ${PORT}', ttl: -5}\n  b: {cmd: 'true ${PORT}', concurrencyLimit: x}\n"
        "  c: {cmd: 'true ${PORT}'}\n"
    )
    assert run("--config", str(f)) == 1
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "invalid config: healthCheckTimeout: must be a number, got string 'soon'",
        "invalid config: startPort: must be between 1 and 65535, got 0",
        "invalid config: models.a.ttl: must be >= -1, got -5",
        "invalid config: models.b.concurrencyLimit: must be an integer, got string 'x'",
        "warning: bogus: unknown key; ignored",
        "4 errors",
    ]
    f.write_text("models:\n  a: {cmd: '${env.LS_A} ${env.LS_B} ${PORT}', proxy: '${env.LS_C}'}\n")
    assert run("--config", str(f)) == 1
    err = capsys.readouterr().err
    for name in ("LS_A", "LS_B", "LS_C"):
        assert f"environment variable {name!r} is not set" in err
    assert err.count("invalid config:") == 3


def test_empty_config_missing_program_and_yaml_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f = tmp_path / "empty.yaml"
    f.write_text("# nothing yet\n")
    assert run("--config", str(f)) == 0
    assert "warning: models: no models defined" in capsys.readouterr().err
    assert run("--config", str(f), "--strict") == 2
    capsys.readouterr()
    f.write_text("models:\n  m: {cmd: '/no/such/binary --port ${PORT}'}\n")
    assert run("--config", str(f)) == 0
    assert (
        "warning: models.m.cmd: program '/no/such/binary' no such executable file; "
        "loading 'm' will fail" in capsys.readouterr().err
    )
    f.write_text("models:\n  m: {cmd: 'true ${PORT}'\n  n: 1\n")
    assert run("--config", str(f)) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"invalid config: {f}: invalid YAML: line ") and "unicode" not in err
    assert len(err.splitlines()) == 1


def test_max_wait_below_two_loads_warns(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "c.yaml"
    body = (
        "models:\n  a: {cmd: 'true ${PORT}'}\n  b: {cmd: 'true ${PORT}'}\n"
        "routing:\n  scheduler:\n    use: batch-aging\n    settings:\n"
        "      batch-aging: {maxWait: %s, loadCost: {b: 30}}\n"
    )
    f.write_text(body % 100)
    assert run("--config", str(f)) == 0
    assert "maxWait" not in capsys.readouterr().err
    f.write_text(body % 45)
    assert run("--config", str(f)) == 0
    err = capsys.readouterr().err
    assert "maxWait: 45 s is below 2 load times of 1 model(s) (slowest: 'b', 30 s" in err
