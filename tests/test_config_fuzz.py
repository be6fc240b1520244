"""Fuzzed configs: any input yields a Config or a ConfigError, never another exception.

These call the *unguarded* internals (``build_config``, ``parse_yaml``, ...) so that a bug of ours
fails here instead of being turned into a ConfigError by the public API's safety net.
"""

from __future__ import annotations

import tempfile
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


def mostly(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Usually a valid value, sometimes anything: lets most examples reach the deeper checks."""
    return st.integers(min_value=0, max_value=19).flatmap(lambda n: VALUES if n == 0 else valid)


IDS = st.sampled_from(["a", "b", "m", "z", "comfyui_auto"])
NAMES = st.one_of(IDS, st.sampled_from(["alias1", "alias2", "ghost", " a "]))
CMDS = st.sampled_from(
    [
        "srv --port ${PORT}", "srv ${a} --port ${PORT}", "srv --id ${MODEL_ID} --port ${PORT}",
        "# c\nsrv \\\n --port ${PORT}", "srv --port 9000", "srv ${PID}", "srv ${nope} ${PORT}",
        "srv 'unclosed ${PORT}", "# only comment",
    ]
)  # fmt: skip
REAL_MODEL = st.fixed_dictionaries(
    {"cmd": mostly(CMDS)},
    optional={
        "proxy": mostly(
            st.sampled_from(["http://127.0.0.1:9000", "http://localhost:${PORT}", "bad"])
        ),
        "cmdStop": mostly(st.sampled_from(["kill ${PID}", "stop ${MODEL_ID}", "x ${PORT}"])),
        "aliases": mostly(st.lists(NAMES, max_size=3)),
        "env": mostly(st.lists(st.sampled_from(["A=1", "B=${PORT}", "bad", "=x"]), max_size=3)),
        "checkEndpoint": mostly(st.sampled_from(["none", "/health", "/v1/models"])),
        "ttl": mostly(st.integers(min_value=-3, max_value=100)),
        "unloadTimeout": mostly(st.integers(min_value=-1, max_value=30)),
        "concurrencyLimit": mostly(st.integers(min_value=-1, max_value=60)),
        "unlisted": mostly(st.booleans()),
        "sendLoadingState": mostly(st.booleans()),
        "name": mostly(st.sampled_from(["Model ${MODEL_ID}", "plain"])),
        "macros": mostly(
            st.dictionaries(st.sampled_from(["a", "b", "PORT", "x y"]), SCALARS, max_size=3)
        ),
        "metadata": mostly(st.dictionaries(KEYS, st.one_of(MACRO_TEXT, VALUES), max_size=3)),
        "filters": mostly(
            st.fixed_dictionaries(
                {},
                optional={
                    "stripParams": mostly(st.sampled_from(["a, b", "model", ""])),
                    "setParams": mostly(st.dictionaries(KEYS, VALUES, max_size=3)),
                    "setParamsByID": VALUES,
                },
            )
        ),
    },
)
GROUP = st.fixed_dictionaries(
    {"members": mostly(st.lists(NAMES, max_size=3))},
    optional={k: mostly(st.booleans()) for k in ("swap", "exclusive", "persistent")},
)
REALISTIC = st.fixed_dictionaries(
    {"models": mostly(st.dictionaries(IDS, REAL_MODEL, max_size=4))},
    optional={
        "healthCheckTimeout": mostly(st.integers(min_value=0, max_value=600)),
        "logLevel": mostly(st.sampled_from(["debug", "info", "warn", "error", "loud"])),
        "startPort": mostly(st.integers(min_value=1, max_value=65535)),
        "globalTTL": mostly(st.integers(min_value=0, max_value=100)),
        "unloadTimeout": mostly(st.integers(min_value=0, max_value=30)),
        "includeAliasesInList": mostly(st.booleans()),
        "sendLoadingState": mostly(st.booleans()),
        "apiKeys": mostly(
            st.lists(st.sampled_from(["sk-1", "sk 2", "", "${env.HOME}"]), max_size=3)
        ),
        "macros": mostly(st.dictionaries(st.sampled_from(["a", "b", "m"]), SCALARS, max_size=3)),
        "hooks": mostly(
            st.fixed_dictionaries(
                {
                    "on_startup": mostly(
                        st.fixed_dictionaries({"preload": mostly(st.lists(NAMES, max_size=3))})
                    )
                }
            )
        ),
        "groups": GROUP.map(lambda g: {"legacy": g}),
        "routing": mostly(
            st.fixed_dictionaries(
                {},
                optional={
                    "router": mostly(
                        st.fixed_dictionaries(
                            {},
                            optional={
                                "use": mostly(st.sampled_from(["group", "matrix", "x"])),
                                "settings": mostly(
                                    st.fixed_dictionaries(
                                        {
                                            "groups": mostly(
                                                st.dictionaries(
                                                    st.sampled_from(["g1", "g2"]), GROUP, max_size=2
                                                )
                                            )
                                        }
                                    )
                                ),
                            },
                        )
                    ),
                    "scheduler": mostly(
                        st.fixed_dictionaries(
                            {},
                            optional={
                                "use": mostly(st.sampled_from(["fifo", "serial", "lottery"])),
                                "settings": mostly(
                                    st.fixed_dictionaries(
                                        {
                                            "fifo": mostly(
                                                st.fixed_dictionaries(
                                                    {
                                                        "priority": mostly(
                                                            st.dictionaries(
                                                                NAMES,
                                                                st.integers(-5, 5),
                                                                max_size=3,
                                                            )
                                                        )
                                                    }
                                                )
                                            )
                                        }
                                    )
                                ),
                            },
                        )
                    ),
                },
            )
        ),
        "peers": VALUES,
    },
)
ANY_CONFIG = st.one_of(REALISTIC, REALISTIC, CONFIG, VALUES)
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


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
@given(data=ANY_CONFIG, require_cmd=st.booleans())
def test_fuzzed_trees_give_config_or_config_error(data: Any, require_cmd: bool) -> None:
    _build(data, require_cmd)


@FUZZ
@given(first=st.one_of(REALISTIC, CONFIG), second=st.one_of(REALISTIC, CONFIG))
def test_fuzzed_merges_give_config_or_config_error(first: Any, second: Any) -> None:
    try:
        merged = merge_sources([("one.yaml", normalize(first)), ("two.yaml", normalize(second))])
    except ConfigError:
        return
    _build(merged, True)


@settings(max_examples=120, deadline=None)
@given(
    data=st.one_of(REALISTIC, CONFIG),
    cut=st.integers(min_value=0, max_value=400),
    junk=st.text(max_size=8),
)
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


PORT_IDS = st.dictionaries(
    st.text(alphabet="abcxyzAZ019-_.", min_size=1, max_size=6),
    st.booleans(),
    min_size=1,
    max_size=8,
)


@settings(max_examples=100, deadline=None)
@given(uses_port=PORT_IDS, start=st.integers(min_value=1, max_value=60000))
def test_port_allocation_property(uses_port: dict[str, bool], start: int) -> None:
    """Ports go to exactly the models whose cmd uses ${PORT}, consecutively in sorted-id order."""
    models = {
        mid: {"cmd": "srv --port ${PORT}"} if port else {"cmd": "srv", "proxy": "http://h:1"}
        for mid, port in uses_port.items()
    }
    cfg = build_config({"startPort": start, "models": models})
    users = sorted(mid for mid, port in uses_port.items() if port)
    assert {mid: m.port for mid, m in cfg.models.items() if m.port is not None} == {
        mid: start + i for i, mid in enumerate(users)
    }
    for mid in users:
        assert cfg.models[mid].cmd == ("srv", "--port", str(cfg.models[mid].port))


@settings(max_examples=25, deadline=None)
@given(
    uses_port=PORT_IDS,
    split=st.lists(st.integers(min_value=0, max_value=2), min_size=8, max_size=8),
)
def test_splitting_models_across_files_changes_nothing(
    uses_port: dict[str, bool], split: list[int]
) -> None:
    """A config dir holding pieces of a config loads the same models as the single file."""
    models = {
        mid: {"cmd": "srv --port ${PORT}", "aliases": [f"{mid}-alias"]}
        if port
        else {"cmd": "srv", "proxy": "http://h:1", "ttl": 5}
        for mid, port in uses_port.items()
    }
    with tempfile.TemporaryDirectory() as tmp:
        whole = Path(tmp) / "whole.yaml"
        whole.write_text(yaml.safe_dump({"models": models, "apiKeys": ["k"]}))
        parts = Path(tmp) / "parts"
        parts.mkdir()
        (parts / "00-top.yaml").write_text(yaml.safe_dump({"apiKeys": ["k"]}))
        for i, (mid, body) in enumerate(models.items()):
            piece = parts / f"{split[i % len(split)]}.yaml"
            existing = yaml.safe_load(piece.read_text()) if piece.exists() else {"models": {}}
            existing["models"][mid] = body
            piece.write_text(yaml.safe_dump(existing))
        one, many = load_config(whole, env={}), load_config(None, parts, env={})
    assert (
        one.models == many.models and one.aliases == many.aliases and one.api_keys == many.api_keys
    )
