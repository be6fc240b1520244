"""Issue 19: the new keys (``timeouts``, ``limits``, ``security``) read like every other key: one
clear line naming the key path for bad values, one warning per unknown key, llama-swap's own
example config accepted as it is."""

from __future__ import annotations

import pytest

from llamaswap.config import ConfigError, parse_config
from llamaswap.config.limits import Limits, Security, Timeouts

ONE = {"models": {"m": {"cmd": "run ${PORT}"}}}


def _with(**top: object) -> dict[str, object]:
    return {**ONE, **top}


def test_defaults_when_nothing_is_set() -> None:
    config = parse_config(ONE)
    assert config.limits == Limits() and config.security == Security()
    assert config.models["m"].timeouts == Timeouts()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {"models": {"m": {"cmd": "run ${PORT}", "timeouts": {"idle": -1}}}},
            "models.m.timeouts.idle: must be >= 0, got -1",
        ),
        (
            {"models": {"m": {"cmd": "run ${PORT}", "timeouts": {"connect": "x"}}}},
            "models.m.timeouts.connect: must be a number, got string 'x'",
        ),
        (_with(limits={"maxConnections": 1}), "limits.maxConnections: must be >= 16, got 1"),
        (_with(limits={"maxJsonBody": 1.5}), "limits.maxJsonBody: must be an integer, got 1.5"),
        (_with(security={"corsOrigins": "*"}), "security.corsOrigins: must be a list, got string"),
        (
            _with(security={"allowedHosts": ["a b"]}),
            "security.allowedHosts[0]: must be a non-empty name, got 'a b'",
        ),
        (_with(security={"inheritEnv": 2}), "security.inheritEnv: must be true or false"),
    ],
)
def test_bad_values_name_their_key(data: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    assert str(info.value).startswith(message)


def test_unknown_keys_warn_once_with_their_path() -> None:
    config = parse_config(
        {
            "models": {"m": {"cmd": "run ${PORT}", "timeouts": {"read": 5}}},
            "limits": {"colour": 1},
            "security": {"cors": []},
        }
    )
    assert sorted(config.warnings) == [
        "limits.colour: unknown key; ignored",
        "models.m.timeouts.read: unknown key; ignored",
        "security.cors: unknown key; ignored",
    ]


def test_values_are_read_and_macros_expand_in_timeouts() -> None:
    config = parse_config(
        {
            "macros": {"slow": 900},
            "models": {"m": {"cmd": "run ${PORT}", "timeouts": {"idle": "${slow}", "write": 5}}},
            "limits": {"maxConnections": 100, "headerTimeout": 2.5},
            "security": {"corsOrigins": ["HTTP://UI.local/"], "forwardCredentials": True},
        }
    )
    assert config.models["m"].timeouts.idle == 900 and config.models["m"].timeouts.write == 5
    assert config.limits.max_connections == 100 and config.limits.header_timeout == 2.5
    assert config.security.cors_origins == ("http://ui.local",)
    assert config.security.forward_credentials and not config.security.inherit_env
