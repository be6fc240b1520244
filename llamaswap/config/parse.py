"""Validation of a merged llama-swap config tree into :class:`Config` (reference §1.2-1.6, 1.12).

Every error is a :class:`ConfigError` whose message starts with the key path; every key this
project does not implement yields exactly one warning in ``Config.warnings`` instead of a crash.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from llamaswap.config.hardening import parse_limits, parse_security
from llamaswap.config.macros import leftover_macros, resolve_macros, substitute, validate_macros
from llamaswap.config.model import DEFAULT_START_PORT, Config, ConfigError
from llamaswap.config.per_model import MAX_PORT, parse_models
from llamaswap.config.routing import Resolver, parse_groups, parse_scheduler
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
from llamaswap.core.spec import DEFAULT_HEALTH_CHECK_TIMEOUT, DEFAULT_UNLOAD_TIMEOUT

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
    "profiles": UNSUPPORTED,
    "selectors": UNSUPPORTED,
    "peers": UNSUPPORTED,
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
    global_macros = validate_macros(opt(data, "macros"), "macros")
    data = _apply_global_macros(
        data, resolve_macros([(n, v, f"macros.{n}") for n, v in global_macros])
    )

    hct_raw = opt(data, "healthCheckTimeout")
    health_check_timeout = (
        DEFAULT_HEALTH_CHECK_TIMEOUT
        if hct_raw is None
        else float(as_number(hct_raw, "healthCheckTimeout"))
    )
    health_check_timeout = max(health_check_timeout, MIN_HEALTH_CHECK_TIMEOUT)

    log_level = "info"
    if opt(data, "logLevel") is not None:
        level = as_string(data["logLevel"], "logLevel")
        if level in LOG_LEVELS:
            log_level = level
        else:
            ctx.warn(
                f"logLevel: unknown level {level!r} (valid: {', '.join(LOG_LEVELS)}); using info"
            )

    start_port = DEFAULT_START_PORT
    if opt(data, "startPort") is not None:
        start_port = as_int(data["startPort"], "startPort")
        if start_port < 1 or start_port > MAX_PORT:
            raise ConfigError(f"startPort: must be between 1 and {MAX_PORT}, got {start_port}")

    global_ttl = 0.0
    if opt(data, "globalTTL") is not None:
        global_ttl = float(as_number(data["globalTTL"], "globalTTL"))
        if global_ttl < 0:
            raise ConfigError(f"globalTTL: must be >= 0, got {fmt_value(data['globalTTL'])}")

    unload_timeout = DEFAULT_UNLOAD_TIMEOUT
    if opt(data, "unloadTimeout") is not None:
        unload_timeout = float(as_number(data["unloadTimeout"], "unloadTimeout"))
        if unload_timeout < 0:
            raise ConfigError(
                f"unloadTimeout: must be >= 0, got {fmt_value(data['unloadTimeout'])}"
            )
        if unload_timeout == 0:
            unload_timeout = DEFAULT_UNLOAD_TIMEOUT

    include_aliases = False
    if opt(data, "includeAliasesInList") is not None:
        include_aliases = as_bool(data["includeAliasesInList"], "includeAliasesInList")
    send_loading_state = False
    if opt(data, "sendLoadingState") is not None:
        send_loading_state = as_bool(data["sendLoadingState"], "sendLoadingState")

    api_keys = _api_keys(opt(data, "apiKeys"))
    record_path, record_max_bytes = _record(ctx, opt(data, "record"))

    models = parse_models(
        ctx,
        as_mapping(opt(data, "models"), "models"),
        global_macros=global_macros,
        global_ttl=global_ttl,
        unload_timeout=unload_timeout,
        send_loading_state=send_loading_state,
        start_port=start_port,
    )
    aliases = {alias: mid for mid, m in models.items() for alias in m.aliases}

    def resolve(name: str) -> str | None:
        return name if name in models else aliases.get(name)

    groups = parse_groups(ctx, data, models, aliases)
    scheduler, scheduler_settings = parse_scheduler(ctx, data, resolve, sorted(models))
    preload = _preload(ctx, data, resolve)
    limits = parse_limits(ctx, opt(data, "limits"))
    security = parse_security(ctx, opt(data, "security"))

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
        limits=limits,
        security=security,
    )


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
