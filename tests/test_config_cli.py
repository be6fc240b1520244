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
        "models:\n  m: {cmd: 'srv --port ${PORT}', aliases: [mm], ttl: 30}\n"
        "groups:\n  g: {members: [m], swap: false}\nperformance: {}\n"
    )
    assert run("--config", str(f)) == 0
    out, errs = capsys.readouterr()
    assert "model m  [group g]  ttl 30s  limit 10" in out
    assert "cmd:   srv --port 5800" in out and "aliases: mm" in out
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
    assert run() == 1
    assert "--config FILE or --config-dir DIR is required" in capsys.readouterr().err
