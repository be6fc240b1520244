"""Scheduler settings are validated when the config loads, with the key path in the message."""

import pytest

from llamaswap.config import ConfigError, parse_config


def _config(settings: dict[str, object]) -> dict[str, object]:
    return {
        "models": {"big": {"aliases": ["b"]}, "small": {}},
        "routing": {"scheduler": {"use": "batch-aging", "settings": {"batch-aging": settings}}},
    }


def test_batch_aging_settings_with_aliases_resolve_to_real_model_ids() -> None:
    config = parse_config(
        _config({"maxWait": 30, "priority": {"b": 2, "big": 2}, "loadCost": {"small": 1.5}}),
        require_cmd=False,
    )
    settings = config.scheduler_settings["batch-aging"]
    assert settings["priority"] == {"big": 2}
    slots = parse_config(_config({"slots": {"b": 1, "small": 4}}), require_cmd=False)
    assert slots.scheduler_settings["batch-aging"]["slots"] == {"big": 1, "small": 4}
    assert (
        parse_config(_config({"slots": 2}), require_cmd=False).scheduler_settings["batch-aging"][
            "slots"
        ]
        == 2
    )
    assert settings["loadCost"] == {"small": 1.5}
    assert config.routing_spec().scheduler == "batch-aging"


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (
            {"maxWait": -3},
            r"routing\.scheduler\.settings\.batch-aging\.maxWait: must be a finite number > 0",
        ),
        ({"maxWait": "soon"}, r"batch-aging\.maxWait: must be a number of seconds"),
        ({"surprise": 1}, r"batch-aging\.surprise: unknown setting"),
        ({"slots": 0}, r"batch-aging\.slots: must be a whole number of slots >= 1"),
        ({"slots": {"big": 1}}, r"batch-aging\.slots: give every model its slot count"),
        ({"slots": {"nope": 1}}, r"batch-aging\.slots\.nope: unknown model"),
        ({"priority": {"nope": 1}}, r"batch-aging\.priority\.nope: unknown model"),
        (
            {"loadCost": {"big": -1}},
            r"batch-aging\.loadCost\.big: must be a finite number of seconds >= 0",
        ),
        (
            {"loadCost": {"big": 3, "b": 5}},
            r"batch-aging\.loadCost\.b: model 'big' already has 3 \(via 'big'\)",
        ),
    ],
)
def test_bad_batch_aging_settings_are_config_errors_naming_the_key(
    settings: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(_config(settings), require_cmd=False)
