"""Fuzzed configs: any input yields a Config or a ConfigError, never another exception.

These call the *unguarded* internals (``build_config``, ``parse_yaml``, ...) so that a bug of ours
fails here instead of being turned into a ConfigError by the public API's safety net.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llamaswap.config import Config, ConfigError, load_config
from llamaswap.config.parse import build_config
from llamaswap.config.sources import merge_sources, normalize, parse_yaml, substitute_env_text

TOP_KEYS = [
    "healthCheckTimeout", "logLevel", "startPort", "globalTTL", "unloadTimeout", "macros", "apiKeys",
    "models", "hooks", "includeAliasesInList", "sendLoadingState", "routing", "groups", "peers",
    "matrix", "profiles", "logToStdout",
]  # fmt: skip
MODEL_KEYS = [
    "cmd", "cmdStop", "proxy", "aliases", "env", "checkEndpoint", "ttl", "unloadTimeout", "unlisted",
    "useModelName", "name", "description", "concurrencyLimit", "filters", "macros", "metadata",
    "sendLoadingState", "timeouts", "capabilities",
]  # fmt: skip
INNER_KEYS = [
    "router", "scheduler", "use", "settings", "groups", "fifo", "priority", "serial", "members",
    "swap", "exclusive", "persistent", "on_startup", "preload", "stripParams", "strip_params",
    "setParams", "setParamsByID", "matrix", "a", "b", "m", "PORT", "MODEL_ID", "x-y",
]  # fmt: skip
MACRO_TEXT = st.sampled_from(
    [
        "${PORT}", "${PID}", "${MODEL_ID}", "${a}", "${b}", "${m}", "${env.HOME}", "${", "}",
        "srv --port ${PORT}", "http://localhost:${PORT}", "http://127.0.0.1:9000", "none", "/health",
        "# comment\nsrv \\\n --x", "'", '"', "A=1", "model", "temperature, model", "fifo", "serial",
        "group", "matrix", "m", "a", "b", "", " ", "\\", "-1", "1e309",
    ]
)  # fmt: skip
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    MACRO_TEXT,
)
KEYS = st.one_of(st.sampled_from(TOP_KEYS + MODEL_KEYS + INNER_KEYS), st.text(max_size=6))
VALUES = st.recursive(
    SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(KEYS, children, max_size=4),
    ),
    max_leaves=12,
)
MODEL = st.one_of(
    VALUES,
    st.dictionaries(st.sampled_from(MODEL_KEYS), st.one_of(MACRO_TEXT, VALUES), max_size=6),
)
CONFIG = st.fixed_dictionaries(
    {},
    optional={
        **{key: VALUES for key in TOP_KEYS},
        "models": st.one_of(
            VALUES, st.dictionaries(st.sampled_from(["a", "b", "m", "z"]), MODEL, max_size=4)
        ),
        "macros": st.one_of(
            VALUES, st.dictionaries(st.sampled_from(["a", "b", "m", "PORT"]), SCALARS, max_size=3)
        ),
        "routing": st.one_of(
            VALUES,
            st.fixed_dictionaries(
                {},
                optional={
                    "router": st.dictionaries(
                        st.sampled_from(["use", "settings"]), VALUES, max_size=2
                    ),
                    "scheduler": st.dictionaries(
                        st.sampled_from(["use", "settings"]), VALUES, max_size=2
                    ),
                },
            ),
        ),
    },
)
FUZZ = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _build(data: Any, require_cmd: bool) -> None:
    try:
        result = build_config(normalize(data), require_cmd=require_cmd)
    except ConfigError as exc:
        assert str(exc), "a ConfigError must say what is wrong"
        return
    assert isinstance(result, Config)
    result.routing_spec()
    for model in result.models.values():
        assert result.resolve(model.id) == model.id
        assert not require_cmd or model.cmd


@FUZZ
@given(data=st.one_of(CONFIG, VALUES), require_cmd=st.booleans())
def test_fuzzed_trees_give_config_or_config_error(data: Any, require_cmd: bool) -> None:
    _build(data, require_cmd)


@FUZZ
@given(first=CONFIG, second=CONFIG)
def test_fuzzed_merges_give_config_or_config_error(first: Any, second: Any) -> None:
    try:
        merged = merge_sources([("one.yaml", normalize(first)), ("two.yaml", normalize(second))])
    except ConfigError:
        return
    _build(merged, True)


@settings(max_examples=200, deadline=None)
@given(data=CONFIG, cut=st.integers(min_value=0, max_value=400), junk=st.text(max_size=8))
def test_fuzzed_yaml_text_gives_config_or_config_error(data: Any, cut: int, junk: str) -> None:
    """Real YAML text (also truncated / spliced with junk) through the text-level pipeline."""
    text = yaml.safe_dump(data, sort_keys=False)
    text = text[:cut] + junk + text[cut:]
    try:
        text = substitute_env_text(text, "<fuzz>", {"HOME": "/h"})
        tree = parse_yaml(text, "<fuzz>")
    except ConfigError:
        return
    _build(tree, True)


def test_public_api_wraps_everything(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("models:\n  m: {cmd: [1, 2]}\nrouting: {scheduler: {use: 7}}\n")
    try:
        load_config(path, env={})
    except ConfigError as exc:
        assert str(exc).startswith("models.m.cmd: must be a string, got list")
