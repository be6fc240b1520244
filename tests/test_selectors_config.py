"""``selectors`` config validation: llama-swap's internal/config/selectors_test.go, ported."""

from __future__ import annotations

from typing import Any

import pytest

from llamaswap.config import Config, ConfigError, parse_config
from llamaswap.core.selectors import Strategy, Target


def _config(selectors: dict[str, Any], **top: Any) -> Config:
    data: dict[str, Any] = {
        "models": {
            "a": {"proxy": "http://127.0.0.1:1", "aliases": ["alias-a"]},
            "b": {"proxy": "http://127.0.0.1:2"},
        },
        "peers": {"remote": {"proxy": "http://example.com", "models": ["remote-model"]}},
        "selectors": selectors,
        **top,
    }
    return parse_config(data, require_cmd=False)


BALANCED = {"groups": {"balanced": {"swap": False, "members": ["a", "b"]}}}


def test_defaults_and_fields() -> None:
    config = _config(
        {
            "coding": {
                "strategy": "warm",
                "targets": ["a", "b"],
                "name": "Coding Model",
                "description": "Best available coding model",
                "unlisted": True,
                "metadata": {"family": "coding"},
            },
            "workers": {"strategy": "spillover", "targets": ["a", "b"]},
        },
        **BALANCED,
    )
    coding = config.selectors["coding"]
    assert coding.spec.strategy is Strategy.WARM
    assert [t.name for t in coding.spec.targets] == ["a", "b"]
    assert coding.spec.spillover == 1
    assert (coding.name, coding.description, coding.unlisted) == (
        "Coding Model",
        "Best available coding model",
        True,
    )
    assert coding.metadata == {"family": "coding"}
    assert config.selectors["workers"].spec.spillover == 1
    assert config.warnings == ()


@pytest.mark.parametrize(
    ("selectors", "message"),
    [
        ({"": {"strategy": "pin", "targets": ["a"]}}, "selectors: selector names cannot be empty"),
        ({"public": {"targets": ["a"]}}, "selectors.public.strategy is required"),
        (
            {"public": {"strategy": "fastest", "targets": ["a"]}},
            "selectors.public.strategy: unknown strategy 'fastest' (valid: warm, pin, spillover)",
        ),
        ({"public": {"strategy": "pin"}}, "selectors.public.targets must contain at least one"),
        (
            {"public": {"strategy": "pin", "targets": ["missing"]}},
            "selectors.public.targets[0] references unknown model 'missing'",
        ),
        (
            {
                "first": {"strategy": "pin", "targets": ["a"]},
                "second": {"strategy": "pin", "targets": ["first"]},
            },
            "selectors.second.targets[0] references selector 'first'; selector chaining",
        ),
        ({"a": {"strategy": "pin", "targets": ["b"]}}, "selectors.a: name conflicts with model ID"),
        (
            {"alias-a": {"strategy": "pin", "targets": ["a"]}},
            "selectors.alias-a: name conflicts with model alias",
        ),
        (
            {"public": {"strategy": "warm", "targets": ["remote-model"]}},
            "selectors.public.targets[0] must resolve to a local model for strategy 'warm'",
        ),
        (
            {"public": {"strategy": "spillover", "targets": ["a"], "settings": {"spillover": 0}}},
            "selectors.public.settings.spillover must be >= 1",
        ),
        (
            {"public": {"strategy": "spillover", "targets": ["a", "alias-a"]}},
            "selectors.public.targets contains duplicate resolved model 'a'",
        ),
        (
            {
                "public": {
                    "strategy": "spillover",
                    "targets": ["remote-model", "remote/remote-model"],
                }
            },
            "selectors.public.targets contains duplicate resolved model 'remote/remote-model'",
        ),
        (
            {"public": {"strategy": "spillover", "targets": ["a", "b"]}},
            "selectors.public spillover targets must share a group with swap: false",
        ),
        (
            {"remote/remote-model": {"strategy": "pin", "targets": ["a"]}},
            "selectors.remote/remote-model: 'remote/remote-model' conflicts with fully qualified",
        ),
    ],
)
def test_validation(selectors: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        _config(selectors)
    assert str(err.value).startswith(message)
    assert "\n" not in str(err.value)


def test_peer_targets_resolve_to_their_fqn() -> None:
    config = _config({"public": {"strategy": "spillover", "targets": ["a", "remote-model"]}})
    assert config.selectors["public"].spec.targets == (
        Target("a", "a", True),
        Target("remote-model", "remote/remote-model", False),
    )


def test_spillover_coexistence_needs_one_non_swapping_group() -> None:
    two_groups = {
        "groups": {
            "g1": {"swap": False, "members": ["a"]},
            "g2": {"swap": False, "members": ["b"]},
        }
    }
    with pytest.raises(ConfigError, match="must share one routing group"):
        _config({"s": {"strategy": "spillover", "targets": ["a", "b"]}}, **two_groups)
    swapping = {"groups": {"g": {"swap": True, "members": ["a", "b"]}}}
    with pytest.raises(ConfigError, match="must share a group with swap: false"):
        _config({"s": {"strategy": "spillover", "targets": ["a", "b"]}}, **swapping)
    ok = _config({"s": {"strategy": "spillover", "targets": ["alias-a", "b"]}}, **BALANCED)
    assert [t.key for t in ok.selectors["s"].spec.targets] == ["a", "b"]
    # one local target (plus peers) needs no group
    alone = _config({"s": {"strategy": "spillover", "targets": ["a", "remote-model"]}})
    assert len(alone.selectors["s"].spec.targets) == 2


def test_unknown_target_is_dropped_with_a_warning_while_another_remains() -> None:
    config = _config({"public": {"strategy": "pin", "targets": ["modelA", "b"]}})
    assert [t.name for t in config.selectors["public"].spec.targets] == ["b"]
    assert config.warnings == (
        "selectors.public.targets[0] references unknown model 'modelA'; dropped",
    )
