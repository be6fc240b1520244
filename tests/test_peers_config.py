"""``peers`` config: llama-swap's own cases (internal/config/peer_test.go, router/peer_test.go).

Each case goes through the real parser; errors must be one ConfigError line naming the key.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llamaswap.config import Config, ConfigError, cli, parse_config
from llamaswap.config.peers import PeerRoute


def _config(peers: dict[str, Any], models: dict[str, Any] | None = None, **top: Any) -> Config:
    return parse_config({"models": models or {}, "peers": peers, **top}, require_cmd=False)


def _peer(*models: str, **extra: Any) -> dict[str, Any]:
    return {"proxy": "http://127.0.0.1:9", "models": list(models), **extra}


def test_valid_peer_with_api_key_and_default_timeouts() -> None:
    config = _config({"box": _peer("m1", "m1", "m2", apiKey="sk-1")})
    peer = config.peers["box"]
    assert peer.models == ("m1", "m2")  # duplicates ignored
    assert peer.api_key == "sk-1"
    t = peer.timeouts
    assert (t.connect, t.keepalive, t.response_header, t.tls_handshake, t.idle_conn) == (
        30,
        30,
        60,
        10,
        90,
    )
    assert config.warnings == ()


@pytest.mark.parametrize(
    ("peer", "message"),
    [
        ({"models": ["m"]}, "peers.box.proxy: required"),
        ({"proxy": "", "models": ["m"]}, "peers.box.proxy: required"),
        ({"proxy": "not a url", "models": ["m"]}, "peers.box.proxy: invalid peer proxy URL"),
        ({"proxy": "http://h"}, "peers.box.models: peer models can not be empty"),
        ({"proxy": "http://h", "models": []}, "peers.box.models: peer models can not be empty"),
        ({"proxy": "http://h", "models": "m"}, "peers.box.models"),
        (
            {"proxy": "http://h", "models": ["m"], "timeouts": {"connect": -1}},
            "peers.box.timeouts.connect: must be >= 0",
        ),
    ],
)
def test_invalid_peers_name_the_key(peer: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        _config({"box": peer})
    assert str(err.value).startswith(message)
    assert "\n" not in str(err.value)


def test_filters_and_timeouts_are_read() -> None:
    config = _config(
        {
            "box": _peer(
                "m",
                filters={
                    "stripParams": "temperature, top_p, model, temperature",
                    "setParams": {"provider": {"zdr": True}, "model": "no"},
                    "setParamsByID": {"box/m": {"top_k": 5}},
                },
                timeouts={"responseHeader": 5, "connect": 2},
            )
        }
    )
    peer = config.peers["box"]
    assert peer.strip_params == ("temperature", "top_p")  # model is protected
    assert peer.set_params == {"provider": {"zdr": True}}
    assert peer.params_for("box/m") == {"provider": {"zdr": True}, "top_k": 5}
    assert peer.params_for("m") == {"provider": {"zdr": True}}
    assert (peer.timeouts.response_header, peer.timeouts.connect) == (5, 2)


def test_unknown_peer_keys_warn() -> None:
    config = _config({"box": _peer("m", colour="red", filters={"useModelName": "x"})})
    assert config.warnings == (
        "peers.box.colour: unknown key; ignored",
        "peers.box.filters.useModelName: unknown key; ignored",
    )


def test_resolve_peer_model_as_llama_swap() -> None:
    """TestConfig_ResolvePeerModel: FQNs always, bare names only when unique and not local."""
    config = _config(
        {"p1": _peer("shared", "org/model"), "p2": _peer("shared", "unique")},
        models={"shared": {"proxy": "http://127.0.0.1:1"}},
    )
    assert config.peer_route("p1/shared") == PeerRoute("p1", "shared")
    assert config.peer_route("p2/shared") == PeerRoute("p2", "shared")
    assert config.peer_route("p1/org/model") == PeerRoute("p1", "org/model")
    assert config.peer_route("unique") == PeerRoute("p2", "unique")
    assert config.peer_route("shared") is None  # local wins (and two peers list it)
    assert config.resolve("shared") == "shared"
    assert config.peer_route("missing") is None


def test_bare_name_local_alias_wins() -> None:
    config = _config(
        {"p": _peer("fast")}, models={"local": {"proxy": "http://127.0.0.1:1", "aliases": ["fast"]}}
    )
    assert config.peer_route("fast") is None
    assert config.resolve("fast") == "local"
    assert config.peer_route("p/fast") == PeerRoute("p", "fast")


def test_fqn_precedes_colliding_bare_name() -> None:
    """TestConfig_ResolvePeerModel_FQNPrecedesBareName."""
    config = _config({"p1": _peer("model"), "p2": _peer("p1/model")})
    assert config.peer_route("p1/model") == PeerRoute("p1", "model")
    assert config.peer_route("p2/p1/model") == PeerRoute("p2", "p1/model")


def test_ambiguous_constructed_fqn_is_an_error() -> None:
    with pytest.raises(ConfigError, match=r"ambiguous between peers\.a model 'b/c' and peers\.a/b"):
        _config({"a": _peer("b/c"), "a/b": _peer("c")})


@pytest.mark.parametrize(
    ("models", "message"),
    [
        ({"peer/model": {"proxy": "http://127.0.0.1:1"}}, "models.peer/model: model ID conflicts"),
        (
            {"local": {"proxy": "http://127.0.0.1:1", "aliases": ["peer/model"]}},
            "models.local.aliases: alias 'peer/model' conflicts",
        ),
    ],
)
def test_fqn_is_reserved(models: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        _config({"peer": _peer("model")}, models=models)
    assert str(err.value).startswith(message)


def test_api_key_takes_global_macros() -> None:
    config = _config({"box": _peer("m", apiKey="${key}")}, macros={"key": "sk-macro"})
    assert config.peers["box"].api_key == "sk-macro"


def test_check_config_shows_peers_selectors_and_profiles(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f = tmp_path / "front.yaml"
    f.write_text(
        "models: {}\n"
        "peers:\n  box: {proxy: 'http://127.0.0.1:9', models: [m, n], apiKey: k}\n"
        "selectors:\n  s: {strategy: spillover, targets: [box/m, n], settings: {spillover: 3}}\n"
        "profiles:\n  p: {pins: {x: m, off: ~}}\n"
    )
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers())
    args = parser.parse_args(["check-config", "--config", str(f)])
    assert args.func(args) == 0
    out, err = capsys.readouterr()
    assert err == ""  # these keys no longer warn
    assert "peer box  http://127.0.0.1:9  (apiKey set)\n  models: m, n\n" in out
    assert "selector s  spillover  spillover 3  -> box/m, n\n" in out
    assert "profile p  x -> m, off -> (disabled)\n" in out
    args = parser.parse_args(["check-config", "--config", str(f), "--json"])
    assert args.func(args) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["peer_routes"] == {"box/m": "box/m", "box/n": "box/n", "m": "box/m", "n": "box/n"}
    assert info["selectors"]["s"] == {
        "strategy": "spillover",
        "targets": ["box/m", "n"],
        "spillover": 3,
    }
    assert info["profiles"] == {"p": {"x": "m", "off": ""}}
    assert info["peers"]["box"]["api_key"] is True  # the key itself is not printed


NAMES = st.sampled_from(["a", "b", "c", "p", "p/a", "a/b"])


@settings(max_examples=300, deadline=None)
@given(
    peers=st.dictionaries(
        st.sampled_from(["p", "q", "p/a", "a"]), st.lists(NAMES, min_size=1, max_size=4), max_size=3
    ),
    local=st.lists(st.sampled_from(["a", "b", "x"]), max_size=2, unique=True),
)
def test_peer_naming_invariants(peers: dict[str, list[str]], local: list[str]) -> None:
    """llama-swap's precedence, for any peers: every FQN routes to itself; a bare name routes iff
    exactly one peer lists it, it is no FQN and no local id; names nothing claims do not route."""
    models = {m: {"proxy": "http://127.0.0.1:1"} for m in local}
    try:
        config = _config({pid: _peer(*ms) for pid, ms in peers.items()}, models=models)
    except ConfigError as exc:  # only the reserved-name collisions may refuse a config
        assert "ambiguous" in str(exc) or "conflicts with fully qualified" in str(exc)
        return
    fqns = {f"{pid}/{m}": PeerRoute(pid, m) for pid, ms in peers.items() for m in ms}
    for fqn, route in fqns.items():
        assert config.peer_route(fqn) == route
    listed_by: dict[str, set[str]] = {}
    for pid, ms in peers.items():
        for m in ms:
            listed_by.setdefault(m, set()).add(pid)
    for name, owners in listed_by.items():
        if name in fqns:
            continue
        route = config.peer_route(name)
        if len(owners) == 1 and name not in local:
            assert route == PeerRoute(next(iter(owners)), name)
        else:
            assert route is None
    for name in config.peer_routes:
        assert name in fqns or name in listed_by
