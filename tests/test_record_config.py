"""The ``record:`` config key (llamaswap extension) and how ``serve`` picks its event log."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from llamaswap.config import ConfigError, parse_config
from llamaswap.daemon.cli import _recorder
from llamaswap.record import read_log
from llamaswap.record.meta import spec_from_meta

MODELS = {"m": {"cmd": "server --port 1", "proxy": "http://127.0.0.1:1"}}


def test_record_key_is_parsed_with_clear_errors() -> None:
    config = parse_config({"record": {"path": "ev.jsonl", "maxBytes": 65536}, "models": MODELS})
    assert (config.record_path, config.record_max_bytes) == ("ev.jsonl", 65536)
    assert config.warnings == ()
    assert parse_config({"models": MODELS}).record_path == ""
    with pytest.raises(ConfigError, match=r"^record.path: required"):
        parse_config({"record": {"maxBytes": 65536}, "models": MODELS})
    with pytest.raises(ConfigError, match=r"^record.maxBytes: must be at least 4096"):
        parse_config({"record": {"path": "x", "maxBytes": 10}, "models": MODELS})
    with pytest.raises(ConfigError, match=r"^record"):
        parse_config({"record": ["x"], "models": MODELS})
    warned = parse_config({"record": {"path": "x", "rotate": 2}, "models": MODELS})
    assert any(w.startswith("record.rotate") for w in warned.warnings)


async def test_serve_records_to_the_config_path_unless_the_flag_overrides(tmp_path: Path) -> None:
    config = parse_config(
        {
            "record": {"path": str(tmp_path / "from-config.jsonl"), "maxBytes": 8192},
            "routing": {"scheduler": {"use": "serial"}},
            "models": MODELS,
        }
    )
    recorder = _recorder(argparse.Namespace(record=None, record_max_mb=None), config)
    assert recorder is not None
    recorder.arrival("x", "m")
    recorder.close()
    records = read_log(tmp_path / "from-config.jsonl")
    assert [r["ev"] for r in records] == ["meta", "arrival"]
    assert records[0]["host"] == "daemon" and spec_from_meta(records[0]).scheduler == "serial"
    flag = tmp_path / "flag.jsonl"
    recorder = _recorder(argparse.Namespace(record=str(flag), record_max_mb=1.0), config)
    assert recorder is not None
    recorder.close()
    assert flag.exists() and read_log(flag)[0]["ev"] == "meta"
    none = parse_config({"models": MODELS})
    assert _recorder(argparse.Namespace(record=None, record_max_mb=None), none) is None
