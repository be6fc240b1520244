"""Validation of a merged llama-swap config tree into :class:`Config` (reference §1.2-1.6, 1.12).

Every error is a :class:`ConfigError` whose message starts with the key path; every key this
project does not implement yields exactly one warning in ``Config.warnings`` instead of a crash.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from llamaswap.config.hardening import parse_limits, parse_security
from llamaswap.config.macros import leftover_macros, resolve_macros, substitute, validate_macros
from llamaswap.config.model import (
    DEFAULT_SCHEDULER,
    DEFAULT_START_PORT,
    Config,
    ConfigError,
    Limits,
    Security,
)
from llamaswap.config.peers import parse_peers, peer_routes
from llamaswap.config.per_model import MAX_PORT, parse_models
from llamaswap.config.profiles import parse_profiles, pin_names
from llamaswap.config.routing import Resolver, parse_groups, parse_scheduler
from llamaswap.config.selectors import parse_selectors, selector_ids
from llamaswap.config.sources import type_name
from llamaswap.config.values import (
    UNSUPPORTED,
    Ctx,
    as_bool,
    as_int,
    as_list,
    as_mapping,
    as_number,
    as_string,
    fmt_value,
    opt,
)
from llamaswap.core.spec import DEFAULT_HEALTH_CHECK_TIMEOUT, DEFAULT_UNLOAD_TIMEOUT, GroupSpec

MIN_HEALTH_CHECK_TIMEOUT = 15.0
DEFAULT_RECORD_MAX_BYTES = 256 * 1024 * 1024
LOG_LEVELS = ("debug", "info", "warn", "error")

TOP_LEVEL_KEYS = frozenset(
    {
        "healthCheckTimeout",
        "logLevel",
        "startPort",
        "globalTTL",
        "unloadTimeout",
        "macros",
        "apiKeys",
        "models",
        "hooks",
        "includeAliasesInList",
        "sendLoadingState",
        "routing",
        "groups",
        "record",
        "peers",
        "selectors",
        "profiles",
        "limits",
        "security",
    }
)
TOP_LEVEL_UNSUPPORTED = {
    "logTimeFormat": UNSUPPORTED,
    "logToStdout": UNSUPPORTED + " (llamaswap logs proxy output to stderr)",
    "logRequests": "deprecated in llama-swap; ignored",
    "metricsMaxInMemory": UNSUPPORTED,
    "captureBuffer": UNSUPPORTED,
    "store": UNSUPPORTED,
    "ui": UNSUPPORTED,
    "performance": UNSUPPORTED,
    "upstream": UNSUPPORTED,
    "matrix": "matrix routing is " + UNSUPPORTED + " (models use group routing)",
}


def build_config(
    data: Any,
    *,
    source: str = "<config>",
    require_cmd: bool = True,
    sources: tuple[str, ...] = (),
) -> Config:
    """Validate a merged, env-substituted config tree (plain dict/list/scalars)."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: the top level must be a mapping, got {type_name(data)}")
    ctx = Ctx(require_cmd=require_cmd)
    ctx.unknown_keys(data, "", TOP_LEVEL_KEYS, TOP_LEVEL_UNSUPPORTED)
    # Macros feed every other value: with a broken macro, what follows would only echo it.
    global_macros = validate_macros(opt(data, "macros"), "macros")
    data = _apply_global_macros(
        data, resolve_macros([(n, v, f"macros.{n}") for n, v in global_macros])
    )
    # Each top-level value is checked on its own, so one run reports every mistake (ctx.attempt).
    health_check_timeout = ctx.attempt(
        lambda: max(_number(data, "healthCheckTimeout"), MIN_HEALTH_CHECK_TIMEOUT),
        DEFAULT_HEALTH_CHECK_TIMEOUT,
    )
    log_level = ctx.attempt(lambda: _log_level(ctx, data), "info")
    start_port = ctx.attempt(lambda: _start_port(data), DEFAULT_START_PORT)
    global_ttl = ctx.attempt(lambda: _number(data, "globalTTL", minimum=0.0), 0.0)
    unload_timeout = ctx.attempt(
        lambda: _number(data, "unloadTimeout", minimum=0.0) or DEFAULT_UNLOAD_TIMEOUT,
        DEFAULT_UNLOAD_TIMEOUT,
    )
    include_aliases = ctx.attempt(lambda: _flag(data, "includeAliasesInList"), False)
    send_loading_state = ctx.attempt(lambda: _flag(data, "sendLoadingState"), False)
    none: tuple[str, ...] = ()
    api_keys = ctx.attempt(lambda: _api_keys(opt(data, "apiKeys")), none)
    record_path, record_max_bytes = ctx.attempt(
        lambda: _record(ctx, opt(data, "record")), ("", DEFAULT_RECORD_MAX_BYTES)
    )

    models = parse_models(
        ctx,
        ctx.attempt(lambda: as_mapping(opt(data, "models"), "models"), {}),
        global_macros=global_macros,
        global_ttl=global_ttl,
        unload_timeout=unload_timeout,
        send_loading_state=send_loading_state,
        start_port=start_port,
    )
    if not models and not ctx.errors and not opt(data, "peers"):
        # A front box that only forwards to peers is a real set-up (docs/peers.md), not a mistake.
        ctx.warn("models: no models defined; every request will be answered 404")
    aliases = {alias: mid for mid, m in models.items() for alias in m.aliases}

    def resolve(name: str) -> str | None:
        return name if name in models else aliases.get(name)

    no_groups: tuple[GroupSpec, ...] = ()
    groups = ctx.attempt(lambda: parse_groups(ctx, data, models, aliases), no_groups)
    no_settings: dict[str, Any] = {}
    scheduler, scheduler_settings = ctx.attempt(
        lambda: parse_scheduler(ctx, data, resolve, sorted(models)),
        (DEFAULT_SCHEDULER, no_settings),
    )
    preload = ctx.attempt(lambda: _preload(ctx, data, resolve), none)
    limits = ctx.attempt(lambda: parse_limits(ctx, opt(data, "limits")), Limits())
    security = ctx.attempt(lambda: parse_security(ctx, opt(data, "security")), Security())
    # Federation (peers, selectors, profiles) is checked against the models, aliases and groups
    # above, so it is checked once they are valid (otherwise it would report follow-on errors).
    ctx.raise_errors()
    peers = parse_peers(ctx, opt(data, "peers"))
    reserved = {
        sid: f"selectors.{sid}" for sid in selector_ids(opt(data, "selectors"), models, aliases)
    }
    reserved.update(pin_names(opt(data, "profiles")))
    routes = peer_routes(peers, models, aliases, reserved)
    selectors = parse_selectors(ctx, opt(data, "selectors"), resolve, routes, groups)
    profiles = parse_profiles(
        ctx, opt(data, "profiles"), lambda n: resolve(n) is not None or n in routes, selectors
    )
    ctx.raise_errors()

    return Config(
        models=models,
        groups=groups,
        health_check_timeout=health_check_timeout,
        log_level=log_level,
        start_port=start_port,
        global_ttl=global_ttl,
        unload_timeout=unload_timeout,
        api_keys=api_keys,
        preload=preload,
        include_aliases_in_list=include_aliases,
        send_loading_state=send_loading_state,
        scheduler=scheduler,
        scheduler_settings=scheduler_settings,
        warnings=tuple(ctx.warnings),
        aliases=aliases,
        sources=sources,
        record_path=record_path,
        record_max_bytes=record_max_bytes,
        peers=peers,
        peer_routes=routes,
        selectors=selectors,
        profiles=profiles,
        limits=limits,
        security=security,
    )


def _number(data: Mapping[str, Any], key: str, minimum: float | None = None) -> float:
    """An optional top-level number (its default is the caller's: 0.0 stands for unset)."""
    raw = opt(data, key)
    if raw is None:
        return DEFAULT_HEALTH_CHECK_TIMEOUT if key == "healthCheckTimeout" else 0.0
    value = float(as_number(raw, key))
    if minimum is not None and value < minimum:
        raise ConfigError(f"{key}: must be >= {minimum:g}, got {fmt_value(raw)}")
    return value


def _flag(data: Mapping[str, Any], key: str) -> bool:
    raw = opt(data, key)
    return False if raw is None else as_bool(raw, key)


def _log_level(ctx: Ctx, data: Mapping[str, Any]) -> str:
    if opt(data, "logLevel") is None:
        return "info"
    level = as_string(data["logLevel"], "logLevel")
    if level in LOG_LEVELS:
        return level
    ctx.warn(f"logLevel: unknown level {level!r} (valid: {', '.join(LOG_LEVELS)}); using info")
    return "info"


def _start_port(data: Mapping[str, Any]) -> int:
    if opt(data, "startPort") is None:
        return DEFAULT_START_PORT
    start_port = as_int(data["startPort"], "startPort")
    if start_port < 1 or start_port > MAX_PORT:
        raise ConfigError(f"startPort: must be between 1 and {MAX_PORT}, got {start_port}")
    return start_port


def _apply_global_macros(data: Mapping[str, Any], macros: Mapping[str, Any]) -> dict[str, Any]:
    """Global macros in every supported top-level value except ``models`` (expanded per model).

    llama-swap documents macros as usable "in any configuration value"; anything left unexpanded
    here (including ``${MODEL_ID}``/``${PORT}``, which only exist per model) is an error.
    """
    out = dict(data)
    for key, value in data.items():
        if key in TOP_LEVEL_KEYS and key not in ("models", "macros"):
            out[key] = substitute(value, macros, typed=True, where=key)
            leftover_macros(out[key], key)
    return out


def _record(ctx: Ctx, raw: Any) -> tuple[str, int]:
    """llamaswap extension ``record: {path, maxBytes}``: the event log ``serve --record`` writes."""
    record = as_mapping(raw, "record")
    ctx.unknown_keys(record, "record", frozenset({"path", "maxBytes"}))
    path = as_string(opt(record, "path"), "record.path") if opt(record, "path") is not None else ""
    max_bytes = DEFAULT_RECORD_MAX_BYTES
    if opt(record, "maxBytes") is not None:
        max_bytes = as_int(record["maxBytes"], "record.maxBytes")
        if max_bytes < 4096:
            raise ConfigError(f"record.maxBytes: must be at least 4096, got {max_bytes}")
    if record and not path:
        raise ConfigError("record.path: required when 'record' is set (the event log file)")
    return path, max_bytes


def _api_keys(raw: Any) -> tuple[str, ...]:
    keys = []
    for i, item in enumerate(as_list(raw, "apiKeys")):
        key = as_string(item, f"apiKeys[{i}]")
        if not key:
            raise ConfigError(f"apiKeys[{i}]: empty api key")
        if any(ch.isspace() for ch in key):
            raise ConfigError(f"apiKeys[{i}]: api key cannot contain spaces")
        keys.append(key)
    return tuple(keys)


def _preload(ctx: Ctx, data: Mapping[str, Any], resolve: Resolver) -> tuple[str, ...]:
    hooks = as_mapping(opt(data, "hooks"), "hooks")
    ctx.unknown_keys(hooks, "hooks", frozenset({"on_startup"}))
    on_startup = as_mapping(opt(hooks, "on_startup"), "hooks.on_startup")
    ctx.unknown_keys(on_startup, "hooks.on_startup", frozenset({"preload"}))
    out: list[str] = []
    path = "hooks.on_startup.preload"
    for i, item in enumerate(as_list(opt(on_startup, "preload"), path)):
        name = as_string(item, f"{path}[{i}]").strip()
        if not name:
            continue
        real = resolve(name)
        if real is None:
            ctx.warn(f"{path}[{i}]: unknown model {name!r}; not preloaded")
        elif real not in out:
            out.append(real)
    return tuple(out)
