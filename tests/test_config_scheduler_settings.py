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


def test_fifo_settings_are_parsed_once_by_the_registry_and_trusted_by_the_core() -> None:
    from llamaswap.core.fifo import FifoScheduler, FifoSettings
    from llamaswap.core.router import Router

    data = {
        "models": {"big": {"aliases": ["b"]}, "small": {}},
        "routing": {
            "scheduler": {
                "use": "fifo",
                "settings": {"fifo": {"cancelLoads": False, "priority": {"b": 3}}},
            }
        },
    }
    config = parse_config(data, require_cmd=False)
    parsed = config.scheduler_settings["fifo"]
    assert isinstance(parsed, FifoSettings)
    assert parsed == {"cancelLoads": False, "priority": {"big": 3}}, "the plain form, for logs"
    assert parsed.cancel_loads is False and parsed.priority == {"big": 3}
    router = Router(config.routing_spec(), _NullHost(), _NullClock())
    assert isinstance(router.scheduler, FifoScheduler)
    assert router.scheduler.settings is parsed, "the core takes the parsed object as it is"
    data["routing"]["scheduler"]["settings"]["fifo"]["cancelLoads"] = "sometimes"  # type: ignore[index]
    with pytest.raises(ConfigError, match=r"fifo\.cancelLoads: must be true or false"):
        parse_config(data, require_cmd=False)


class _NullHost:
    def __getattr__(self, name: str) -> object:
        return lambda *args: None


class _NullClock:
    def now(self) -> float:
        return 0.0

    def call_at(self, when: float, event: object) -> object:
        raise AssertionError("nothing is timed in this test")


def test_check_config_json_shows_parsed_settings_in_their_plain_form() -> None:
    import json

    from llamaswap.config.cli import summary

    config = parse_config(
        _config({"maxWait": 30, "slots": {"b": 1, "small": 2}}), require_cmd=False
    )
    shown = json.loads(json.dumps(summary(config)))
    assert shown["scheduler_settings"] == {
        "batch-aging": {"maxWait": 30, "slots": {"big": 1, "small": 2}}
    }
