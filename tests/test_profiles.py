"""``profiles``: config validation (llama-swap's profile_test.go ported) and the runtime switch
through a real daemon (``GET /api/profiles``, ``PUT /api/profiles/active``, pins on requests)."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from llamaswap.config import Config, ConfigError, parse_config
from llamaswap.daemon.testing import fake_cmd, make_config, running_daemon


def _config(profiles: Any, **top: Any) -> Config:
    data: dict[str, Any] = {
        "models": {"local": {"proxy": "http://127.0.0.1:1", "aliases": ["local-fast"]}},
        "peers": {"remote": {"proxy": "http://example.com", "models": ["peer-model"]}},
        "profiles": profiles,
        **top,
    }
    return parse_config(data, require_cmd=False)


def test_load_and_resolve() -> None:
    config = _config(
        {
            "coding": {
                "description": "Coding profile",
                "pins": {
                    "direct": "local",
                    "alias": "local-fast",
                    "peer": "peer-model",
                    "peer-qualified": "remote/peer-model",
                    "disabled-empty": "",
                    "disabled-null": None,
                    "local": "peer-model",
                },
            }
        }
    )
    profile = config.profiles["coding"]
    assert profile.description == "Coding profile"
    assert dict(profile.pins) == {
        "direct": "local",
        "alias": "local-fast",
        "peer": "peer-model",
        "peer-qualified": "remote/peer-model",
        "disabled-empty": "",
        "disabled-null": "",
        "local": "peer-model",
    }
    assert config.warnings == ()


@pytest.mark.parametrize(
    ("profiles", "message"),
    [
        ({"old": ["local"]}, "profiles.old: profile must be a mapping with description and pins"),
        ({"p": {"pins": {}}}, "profiles.p.pins must contain at least one entry"),
        ({"p": {"description": "x"}}, "profiles.p.pins must contain at least one entry"),
        ({"p": {"pins": {"x": "missing"}}}, "profiles.p.pins.x references unknown model 'missing'"),
        ({"": {"pins": {"x": "local"}}}, "profiles: profile names cannot be empty"),
        ({"p": {"pins": {" ": "local"}}}, "profiles.p.pins: pin names cannot be empty"),
        (
            {"p": {"pins": {"remote/peer-model": "local"}}},
            "profiles.p.pins.remote/peer-model: 'remote/peer-model' conflicts with fully qualified",
        ),
        # pins do not chain: a pin name is not a target
        (
            {"p": {"pins": {"second": "first"}}},
            "profiles.p.pins.second references",
        ),
    ],
)
def test_validation(profiles: Any, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        _config(profiles)
    assert str(err.value).startswith(message)


def test_unknown_pin_target_is_dropped_with_a_warning_while_another_remains() -> None:
    config = _config({"p": {"pins": {"first": "local", "second": "first"}}})  # no chaining
    assert dict(config.profiles["p"].pins) == {"first": "local"}
    assert config.warnings == ("profiles.p.pins.second references unknown model 'first'; dropped",)


def test_pin_may_target_a_selector() -> None:
    config = _config(
        {"p": {"pins": {"public": "sel"}}},
        selectors={"sel": {"strategy": "pin", "targets": ["local"]}},
    )
    assert config.profiles["p"].pins["public"] == "sel"


# ----------------------------------------------------------------------------- daemon


@pytest.mark.daemon
async def test_profiles_switch_at_runtime_and_reset_on_reload() -> None:
    box_config = make_config({"remote-model": {"cmd": fake_cmd()}}, scheduler="fifo")
    async with running_daemon(box_config) as box, aiohttp.ClientSession() as session:
        front_config = make_config(
            {
                "real": {"cmd": fake_cmd(), "aliases": ["real-fast"]},
                "other": {"cmd": fake_cmd()},
            },
            scheduler="fifo",
            peers={"box": {"proxy": f"http://127.0.0.1:{box.port}", "models": ["remote-model"]}},
            selectors={"sel": {"strategy": "pin", "targets": ["real"]}},
            profiles={
                "coding": {
                    "description": "for coding",
                    "pins": {
                        "public": "real-fast",
                        "other": None,  # disabled while active
                        "real": "box/remote-model",  # a pin shadows a local id
                        "tosel": "sel",
                    },
                }
            },
        )
        async with running_daemon(front_config) as front:
            url = f"http://127.0.0.1:{front.port}"

            async def chat(model: str) -> tuple[int, dict[str, Any]]:
                payload = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
                async with session.post(f"{url}/v1/chat/completions", json=payload) as resp:
                    return resp.status, await resp.json(content_type=None)

            async def listed() -> set[str]:
                async with session.get(f"{url}/v1/models") as resp:
                    return {m["id"] for m in (await resp.json())["data"]}

            async def put(body: object) -> tuple[int, Any]:
                async with session.put(f"{url}/api/profiles/active", json=body) as resp:
                    return resp.status, await resp.json(content_type=None)

            async with session.get(f"{url}/api/profiles") as resp:
                assert await resp.json() == {
                    "active": None,
                    "profiles": [
                        {
                            "id": "coding",
                            "description": "for coding",
                            "pins": {
                                "public": "real-fast",
                                "other": "",
                                "real": "box/remote-model",
                                "tosel": "sel",
                            },
                        }
                    ],
                }
            # none active: no pin applies
            assert (await chat("public"))[0] == 404
            assert (await chat("other"))[0] == 200
            assert (await chat("real"))[1]["model"] == "real"
            assert "public" not in await listed()

            assert await put({"name": "coding"}) == (200, {"active": "coding"})
            status, body = await chat("public")
            assert status == 200 and body["model"] == "real-fast"  # served by local real
            status, body = await chat("other")
            assert status == 404
            assert body["error"]["message"] == "model 'other' is disabled by profile 'coding'"
            status, body = await chat("real")
            assert status == 200 and body["model"] == "remote-model"  # went to the peer
            assert (await chat("tosel"))[0] == 200  # pin -> selector -> real
            names = await listed()
            assert {"public", "tosel"} <= names and "other" in names  # "other" is a model

            status, body = await put({"name": "missing"})
            assert status == 404 and "profile 'missing' not found" in body["error"]["message"]
            assert (await put({"nom": "x"}))[0] == 400
            assert (await put({"name": 3}))[0] == 400
            async with session.get(f"{url}/api/profiles") as resp:
                assert (await resp.json())["active"] == "coding"

            assert await front.reload(front_config)
            async with session.get(f"{url}/api/profiles") as resp:
                assert (await resp.json())["active"] is None  # a reload selects none
            assert (await chat("other"))[0] == 200
            assert await put({"name": "coding"}) == (200, {"active": "coding"})
            assert await put({"name": None}) == (200, {"active": None})
            assert (await chat("public"))[0] == 404
