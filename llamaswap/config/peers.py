"""``peers.<id>``: remote OpenAI-compatible servers and the names they answer to (reference §1.8).

Why a separate module: peer naming has its own precedence rules (llama-swap's
``ResolvePeerModel`` / ``ValidatePeerNamespace``) that the daemon, the selectors and the simulator
must all read the same way, so they are decided once here into one name -> :class:`PeerRoute` table.

Naming, as llama-swap: every peer model answers to ``<peer>/<model>`` (reserved: no local id, alias
or selector may take it); a bare ``<model>`` answers only when exactly one peer lists it and it is
not itself some peer's fully qualified name. Local ids and aliases win over bare peer names.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from llamaswap.config.model import ConfigError
from llamaswap.config.values import (
    Ctx,
    as_int,
    as_list,
    as_mapping,
    as_string,
    json_safe,
    opt,
)

PEER_KEYS = frozenset({"proxy", "apiKey", "models", "filters", "timeouts"})
FILTER_KEYS = frozenset({"stripParams", "setParams", "setParamsByID"})
PROTECTED_PARAMS = frozenset({"model"})

TIMEOUT_DEFAULTS: Mapping[str, int] = {
    "connect": 30,
    "keepalive": 30,
    "responseHeader": 60,
    "tlsHandshake": 10,
    "expectContinue": 1,
    "idleConn": 90,
}
"""llama-swap's peer transport defaults (http.DefaultTransport, but 60 s for response headers)."""


@dataclass(frozen=True)
class PeerTimeouts:
    """Seconds; 0 disables that timeout (as in Go's transport)."""

    connect: int = 30
    keepalive: int = 30
    response_header: int = 60
    tls_handshake: int = 10
    expect_continue: int = 1
    idle_conn: int = 90


@dataclass(frozen=True)
class PeerConfig:
    id: str
    proxy: str
    models: tuple[str, ...]
    """De-duplicated, in config order."""
    api_key: str = ""
    strip_params: tuple[str, ...] = ()
    set_params: Mapping[str, Any] = field(default_factory=dict)
    set_params_by_id: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    timeouts: PeerTimeouts = PeerTimeouts()

    def params_for(self, requested: str) -> dict[str, Any]:
        """setParams then setParamsByID[requested] (which overrides): what this request gets."""
        return {**self.set_params, **self.set_params_by_id.get(requested, {})}


@dataclass(frozen=True)
class PeerRoute:
    """Where one public name goes: ``model`` as the peer itself calls it."""

    peer: str
    model: str

    @property
    def fqn(self) -> str:
        return f"{self.peer}/{self.model}"


def parse_peers(ctx: Ctx, raw: Any) -> dict[str, PeerConfig]:
    peers: dict[str, PeerConfig] = {}
    for peer_id, body in sorted(as_mapping(raw, "peers").items()):
        path = f"peers.{peer_id}"
        if not str(peer_id).strip():
            raise ConfigError("peers: peer ids cannot be empty")
        peers[peer_id] = _peer(ctx, str(peer_id), as_mapping(body, path), path)
    return peers


def _peer(ctx: Ctx, peer_id: str, body: Mapping[str, Any], path: str) -> PeerConfig:
    ctx.unknown_keys(body, path, PEER_KEYS)
    proxy = as_string(opt(body, "proxy"), f"{path}.proxy") if opt(body, "proxy") is not None else ""
    if not proxy:
        raise ConfigError(f"{path}.proxy: required (the peer's base URL)")
    parts = urlsplit(proxy)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"{path}.proxy: invalid peer proxy URL {proxy!r} (need http(s)://host)")
    models: list[str] = []
    for i, item in enumerate(as_list(opt(body, "models"), f"{path}.models")):
        name = as_string(item, f"{path}.models[{i}]")
        if not name:
            raise ConfigError(f"{path}.models[{i}]: empty model id")
        if name not in models:
            models.append(name)
    if not models:
        raise ConfigError(f"{path}.models: peer models can not be empty")
    api_key = ""
    if opt(body, "apiKey") is not None:
        api_key = as_string(body["apiKey"], f"{path}.apiKey")
    strip, set_params, by_id = _filters(ctx, opt(body, "filters"), f"{path}.filters")
    return PeerConfig(
        id=peer_id,
        proxy=proxy.rstrip("/"),
        models=tuple(models),
        api_key=api_key,
        strip_params=strip,
        set_params=set_params,
        set_params_by_id=by_id,
        timeouts=_timeouts(ctx, opt(body, "timeouts"), f"{path}.timeouts"),
    )


def _filters(
    ctx: Ctx, raw: Any, path: str
) -> tuple[tuple[str, ...], dict[str, Any], dict[str, dict[str, Any]]]:
    filters = as_mapping(raw, path)
    ctx.unknown_keys(filters, path, FILTER_KEYS)
    strip: list[str] = []
    if opt(filters, "stripParams") is not None:
        for name in as_string(filters["stripParams"], f"{path}.stripParams").split(","):
            name = name.strip()
            if name and name not in PROTECTED_PARAMS and name not in strip:
                strip.append(name)
    set_params = _params(as_mapping(opt(filters, "setParams"), f"{path}.setParams"), path)
    by_id: dict[str, dict[str, Any]] = {}
    raw_by_id = as_mapping(opt(filters, "setParamsByID"), f"{path}.setParamsByID")
    for requested, params in raw_by_id.items():
        where = f"{path}.setParamsByID.{requested}"
        by_id[str(requested)] = _params(as_mapping(params, where), where)
    return tuple(sorted(strip)), set_params, by_id


def _params(params: Mapping[str, Any], path: str) -> dict[str, Any]:
    out = {k: v for k, v in params.items() if k not in PROTECTED_PARAMS}
    json_safe(out, path)
    return out


def _timeouts(ctx: Ctx, raw: Any, path: str) -> PeerTimeouts:
    timeouts = as_mapping(raw, path)
    ctx.unknown_keys(timeouts, path, frozenset(TIMEOUT_DEFAULTS))
    values = dict(TIMEOUT_DEFAULTS)
    for key in TIMEOUT_DEFAULTS:
        if opt(timeouts, key) is not None:
            value = as_int(timeouts[key], f"{path}.{key}")
            if value < 0:
                raise ConfigError(f"{path}.{key}: must be >= 0 seconds, got {value}")
            values[key] = value
    return PeerTimeouts(
        connect=values["connect"],
        keepalive=values["keepalive"],
        response_header=values["responseHeader"],
        tls_handshake=values["tlsHandshake"],
        expect_continue=values["expectContinue"],
        idle_conn=values["idleConn"],
    )


def peer_routes(
    peers: Mapping[str, PeerConfig],
    models: Mapping[str, Any],
    aliases: Mapping[str, str],
    reserved_elsewhere: Mapping[str, str] | None = None,
) -> dict[str, PeerRoute]:
    """Name -> route: every FQN, plus each bare id exactly one peer lists (llama-swap's NewPeer).

    Raises when two peers produce the same FQN or an FQN collides with a local id, an alias, or one
    of ``reserved_elsewhere`` (name -> the key path that claims it: selectors, profile pins).
    Bare names shadowed by a local id or alias are left out: local wins at dispatch.
    """
    routes: dict[str, PeerRoute] = {}
    bare: dict[str, list[PeerRoute]] = {}
    for peer_id in sorted(peers):
        for model in peers[peer_id].models:
            route = PeerRoute(peer_id, model)
            if route.fqn in routes:
                other = routes[route.fqn]
                raise ConfigError(
                    f"peers: peer model name {route.fqn!r} is ambiguous between peers.{other.peer}"
                    f" model {other.model!r} and peers.{peer_id} model {model!r}"
                )
            routes[route.fqn] = route
            bare.setdefault(model, []).append(route)
    for fqn in sorted(routes):
        if fqn in models:
            raise ConfigError(
                f"models.{fqn}: model ID conflicts with fully qualified peer model name"
            )
        if fqn in aliases:
            raise ConfigError(
                f"models.{aliases[fqn]}.aliases: alias {fqn!r} conflicts with fully qualified"
                " peer model name"
            )
        if reserved_elsewhere and fqn in reserved_elsewhere:
            raise ConfigError(
                f"{reserved_elsewhere[fqn]}: {fqn!r} conflicts with fully qualified peer model name"
            )
    for name, candidates in sorted(bare.items()):
        if (
            len(candidates) == 1
            and name not in routes
            and name not in models
            and name not in aliases
        ):
            routes[name] = candidates[0]
    return routes
