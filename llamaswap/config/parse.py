"""Validation of a merged llama-swap config tree into :class:`Config` (reference §1.2-1.6, 1.12).

Every error is a :class:`ConfigError` whose message starts with the key path; every key this
project does not implement yields exactly one warning in ``Config.warnings`` instead of a crash.
"""

from __future__ import annotations

import math
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from llamaswap.config.macros import (
    leftover_macros,
    resolve_macros,
    substitute,
    validate_macros,
)
from llamaswap.config.model import (
    DEFAULT_CHECK_ENDPOINT,
    DEFAULT_PROXY,
    DEFAULT_SCHEDULER,
    DEFAULT_START_PORT,
    Config,
    ConfigError,
    ModelConfig,
)
from llamaswap.config.sources import format_scalar, type_name
from llamaswap.core.policies import scheduler_names
from llamaswap.core.spec import (
    DEFAULT_CONCURRENCY_LIMIT,
    DEFAULT_HEALTH_CHECK_TIMEOUT,
    DEFAULT_UNLOAD_TIMEOUT,
    GroupSpec,
)

MIN_HEALTH_CHECK_TIMEOUT = 15.0
LOG_LEVELS = ("debug", "info", "warn", "error")
COMFYUI_MODEL_ID = "comfyui_auto"
COMFYUI_MIN_CONCURRENCY = 50
MAX_PORT = 65535
MAX_MAGNITUDE = 1e15
"""Bound on numeric settings (about 31 million years of seconds): rejects overflow-sized values."""

_UNSUPPORTED = "not supported by llamaswap yet; ignored"

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
    }
)
TOP_LEVEL_UNSUPPORTED = {
    "logTimeFormat": _UNSUPPORTED,
    "logToStdout": _UNSUPPORTED + " (llamaswap logs proxy output to stderr)",
    "logRequests": "deprecated in llama-swap; ignored",
    "metricsMaxInMemory": _UNSUPPORTED,
    "captureBuffer": _UNSUPPORTED,
    "store": _UNSUPPORTED,
    "ui": _UNSUPPORTED,
    "performance": _UNSUPPORTED,
    "profiles": _UNSUPPORTED,
    "selectors": _UNSUPPORTED,
    "peers": _UNSUPPORTED,
    "upstream": _UNSUPPORTED,
    "matrix": "matrix routing is " + _UNSUPPORTED + " (models use group routing)",
}
MODEL_KEYS = frozenset(
    {
        "cmd",
        "cmdStop",
        "proxy",
        "aliases",
        "env",
        "checkEndpoint",
        "ttl",
        "unloadTimeout",
        "unlisted",
        "useModelName",
        "name",
        "description",
        "concurrencyLimit",
        "filters",
        "macros",
        "metadata",
        "sendLoadingState",
    }
)
MODEL_UNSUPPORTED = {
    "timeouts": _UNSUPPORTED,
    "compat": _UNSUPPORTED,
    "capabilities": _UNSUPPORTED,
    "healthCheckTimeout": "per-model value is ignored (llama-swap overwrites it with the global healthCheckTimeout)",
}
STRING_FIELDS = ("cmd", "cmdStop", "proxy", "checkEndpoint", "name", "description", "useModelName")
TYPED_FIELDS = (
    "ttl",
    "unloadTimeout",
    "concurrencyLimit",
    "unlisted",
    "sendLoadingState",
    "metadata",
)
PROTECTED_PARAMS = frozenset({"model"})


@dataclass
class _Ctx:
    require_cmd: bool
    warnings: list[str] = field(default_factory=list)

    def warn(self, message: str) -> None:
        if message not in self.warnings:
            self.warnings.append(message)

    def unknown_keys(
        self,
        raw: Mapping[str, Any],
        path: str,
        known: frozenset[str],
        unsupported: Mapping[str, str] | None = None,
    ) -> None:
        for key in raw:
            if key in known:
                continue
            where = f"{path}.{key}" if path else key
            if unsupported and key in unsupported:
                self.warn(f"{where}: {unsupported[key]}")
            else:
                self.warn(f"{where}: unknown key; ignored")


# ---------------------------------------------------------------------------------------------
# typed accessors


def _fmt(value: Any) -> str:
    return (
        format_scalar(value)
        if isinstance(value, int | float) and not isinstance(value, bool)
        else repr(value)
    )


def _mapping(value: Any, path: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{path}: must be a mapping, got {type_name(value)}")
    return dict(value)


def _list(value: Any, path: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ConfigError(f"{path}: must be a list, got {type_name(value)}")
    return value


def _number(value: Any, path: str, *, integer: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        kind = "an integer" if integer else "a number"
        raise ConfigError(f"{path}: must be {kind}, got {type_name(value)} {_fmt(value)}")
    if abs(value) > MAX_MAGNITUDE:
        raise ConfigError(f"{path}: number out of range, got {_fmt(value)}")
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ConfigError(f"{path}: must be a finite number, got {_fmt(value)}")
        if integer:
            if not value.is_integer():
                raise ConfigError(f"{path}: must be an integer, got {_fmt(value)}")
            return int(value)
    return value


def _int(value: Any, path: str) -> int:
    return int(_number(value, path, integer=True))


_YAML11_TRUE = frozenset({"y", "Y", "yes", "Yes", "YES", "on", "On", "ON"})
_YAML11_FALSE = frozenset({"n", "N", "no", "No", "NO", "off", "Off", "OFF"})


def _bool(value: Any, path: str) -> bool:
    # Like Go's yaml.v3, YAML 1.1 words are accepted where a boolean is expected (only there).
    if isinstance(value, str) and value in _YAML11_TRUE:
        return True
    if isinstance(value, str) and value in _YAML11_FALSE:
        return False
    if not isinstance(value, bool):
        raise ConfigError(f"{path}: must be true or false, got {type_name(value)} {_fmt(value)}")
    return value


def _string(value: Any, path: str) -> str:
    """A string; numbers are accepted as their text, as Go's YAML decoder does for string fields."""
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return format_scalar(value)
    raise ConfigError(f"{path}: must be a string, got {type_name(value)}")


def _opt(raw: Mapping[str, Any], key: str) -> Any:
    """``key: ~`` (YAML null) means the same as leaving the key out, as in llama-swap."""
    return raw.get(key)


def _json_safe(value: Any, path: str) -> None:
    """Metadata and setParams end up in JSON bodies: NaN/Infinity would make them invalid JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{path}: must be a finite number, got {_fmt(value)}")
    if isinstance(value, Mapping):
        for k, v in value.items():
            _json_safe(v, f"{path}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _json_safe(v, f"{path}[{i}]")


# ---------------------------------------------------------------------------------------------
# commands


def strip_comment_lines(text: str) -> str:
    """Drop lines whose first non-blank character is ``#`` (llama-swap ``StripComments``)."""
    return "\n".join(line for line in text.split("\n") if not line.strip().startswith("#"))


def join_continuations(text: str) -> str:
    """Drop comment lines and turn trailing-``\\`` continuations into spaces (llama-swap rules)."""
    lines = []
    for line in text.split("\n"):
        trimmed = line.strip()
        if trimmed.startswith("#"):
            continue
        if trimmed.endswith("\\"):
            lines.append(trimmed[:-1] + " ")
        else:
            lines.append(line)
    return "\n".join(lines)


def split_command(text: str, path: str) -> tuple[str, ...]:
    """Multi-line command -> argv: comment lines dropped, trailing ``\\`` joins lines, POSIX shlex."""
    try:
        argv = shlex.split(join_continuations(text), posix=True)
    except ValueError as exc:
        raise ConfigError(f"{path}: cannot split command: {exc}") from None
    if not argv:
        raise ConfigError(f"{path}: empty command")
    return tuple(argv)


# ---------------------------------------------------------------------------------------------
# top level


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
    ctx = _Ctx(require_cmd=require_cmd)
    ctx.unknown_keys(data, "", TOP_LEVEL_KEYS, TOP_LEVEL_UNSUPPORTED)

    hct_raw = _opt(data, "healthCheckTimeout")
    health_check_timeout = (
        DEFAULT_HEALTH_CHECK_TIMEOUT
        if hct_raw is None
        else float(_number(hct_raw, "healthCheckTimeout"))
    )
    health_check_timeout = max(health_check_timeout, MIN_HEALTH_CHECK_TIMEOUT)

    log_level = "info"
    if _opt(data, "logLevel") is not None:
        level = _string(data["logLevel"], "logLevel")
        if level in LOG_LEVELS:
            log_level = level
        else:
            ctx.warn(
                f"logLevel: unknown level {level!r} (valid: {', '.join(LOG_LEVELS)}); using info"
            )

    start_port = DEFAULT_START_PORT
    if _opt(data, "startPort") is not None:
        start_port = _int(data["startPort"], "startPort")
        if start_port < 1 or start_port > MAX_PORT:
            raise ConfigError(f"startPort: must be between 1 and {MAX_PORT}, got {start_port}")

    global_ttl = 0.0
    if _opt(data, "globalTTL") is not None:
        global_ttl = float(_number(data["globalTTL"], "globalTTL"))
        if global_ttl < 0:
            raise ConfigError(f"globalTTL: must be >= 0, got {_fmt(data['globalTTL'])}")

    unload_timeout = DEFAULT_UNLOAD_TIMEOUT
    if _opt(data, "unloadTimeout") is not None:
        unload_timeout = float(_number(data["unloadTimeout"], "unloadTimeout"))
        if unload_timeout < 0:
            raise ConfigError(f"unloadTimeout: must be >= 0, got {_fmt(data['unloadTimeout'])}")
        if unload_timeout == 0:
            unload_timeout = DEFAULT_UNLOAD_TIMEOUT

    include_aliases = False
    if _opt(data, "includeAliasesInList") is not None:
        include_aliases = _bool(data["includeAliasesInList"], "includeAliasesInList")
    send_loading_state = False
    if _opt(data, "sendLoadingState") is not None:
        send_loading_state = _bool(data["sendLoadingState"], "sendLoadingState")

    global_macros = validate_macros(_opt(data, "macros"), "macros")
    resolve_macros([(n, v, f"macros.{n}") for n, v in global_macros])

    api_keys = _api_keys(_opt(data, "apiKeys"))

    models = _models(
        ctx,
        _mapping(_opt(data, "models"), "models"),
        global_macros=global_macros,
        global_ttl=global_ttl,
        unload_timeout=unload_timeout,
        send_loading_state=send_loading_state,
        start_port=start_port,
    )
    aliases = {alias: mid for mid, m in models.items() for alias in m.aliases}

    def resolve(name: str) -> str | None:
        return name if name in models else aliases.get(name)

    groups = _groups(ctx, data, models, aliases)
    scheduler, scheduler_settings = _scheduler(ctx, data, resolve)
    preload = _preload(ctx, data, resolve)

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
    )


def _api_keys(raw: Any) -> tuple[str, ...]:
    keys = []
    for i, item in enumerate(_list(raw, "apiKeys")):
        key = _string(item, f"apiKeys[{i}]")
        if not key:
            raise ConfigError(f"apiKeys[{i}]: empty api key")
        if any(ch.isspace() for ch in key):
            raise ConfigError(f"apiKeys[{i}]: api key cannot contain spaces")
        keys.append(key)
    return tuple(keys)


def _preload(ctx: _Ctx, data: Mapping[str, Any], resolve: Any) -> tuple[str, ...]:
    hooks = _mapping(_opt(data, "hooks"), "hooks")
    ctx.unknown_keys(hooks, "hooks", frozenset({"on_startup"}))
    on_startup = _mapping(_opt(hooks, "on_startup"), "hooks.on_startup")
    ctx.unknown_keys(on_startup, "hooks.on_startup", frozenset({"preload"}))
    out: list[str] = []
    path = "hooks.on_startup.preload"
    for i, item in enumerate(_list(_opt(on_startup, "preload"), path)):
        name = _string(item, f"{path}[{i}]").strip()
        if not name:
            continue
        real = resolve(name)
        if real is None:
            ctx.warn(f"{path}[{i}]: unknown model {name!r}; not preloaded")
        elif real not in out:
            out.append(real)
    return tuple(out)


# ---------------------------------------------------------------------------------------------
# models


def _models(
    ctx: _Ctx,
    raw_models: dict[str, Any],
    *,
    global_macros: list[tuple[str, Any]],
    global_ttl: float,
    unload_timeout: float,
    send_loading_state: bool,
    start_port: int,
) -> dict[str, ModelConfig]:
    # Phase 1: shape checks and ordinary macro expansion, per model.
    expanded: dict[str, dict[str, Any]] = {}
    for mid, raw in raw_models.items():
        path = f"models.{mid}"
        if not mid:
            raise ConfigError("models: a model id must not be empty")
        if raw is None and not ctx.require_cmd:
            raw = {}
        if raw is None:
            raise ConfigError(f"{path}: must be a mapping with at least 'cmd', got null")
        expanded[mid] = _expand_model(ctx, mid, _mapping(raw, path), global_macros)

    # Phase 2: ${PORT}, only for models whose cmd uses it, in sorted model-id order (quirk 13).
    ports: dict[str, int] = {}
    next_port = start_port
    for mid in sorted(expanded):
        cmd = expanded[mid].get("cmd")
        if isinstance(cmd, str) and "${PORT}" in cmd:
            if next_port > MAX_PORT:
                raise ConfigError(
                    f"models.{mid}.cmd: no port left for ${{PORT}} (startPort {start_port} + allocations exceed {MAX_PORT})"
                )
            ports[mid] = next_port
            next_port += 1

    # Phase 3: typed validation.
    models: dict[str, ModelConfig] = {}
    owners: dict[str, str] = {}
    for mid, fields in expanded.items():
        done = _finish_model(
            ctx,
            mid,
            fields,
            port=ports.get(mid),
            global_ttl=global_ttl,
            unload_timeout=unload_timeout,
            send_loading_state=send_loading_state,
        )
        if done is None:
            continue
        for i, alias in enumerate(done.aliases):
            where = f"models.{mid}.aliases[{i}]"
            if alias in expanded:
                raise ConfigError(f"{where}: alias {alias!r} is also a model id")
            if alias in owners:
                raise ConfigError(
                    f"{where}: duplicate alias {alias!r}, already used by model {owners[alias]!r}"
                )
            owners[alias] = mid
        models[mid] = done
    return models


def _expand_model(
    ctx: _Ctx, mid: str, model: dict[str, Any], global_macros: list[tuple[str, Any]]
) -> dict[str, Any]:
    path = f"models.{mid}"
    ctx.unknown_keys(model, path, MODEL_KEYS, MODEL_UNSUPPORTED)

    local = validate_macros(_opt(model, "macros"), f"{path}.macros")
    entries: list[tuple[str, Any, str]] = [("MODEL_ID", mid, f"{path}.<MODEL_ID>")]
    entries += [(n, v, f"macros.{n}") for n, v in global_macros]
    index = {n: i for i, (n, _, _) in enumerate(entries)}
    for n, v in local:
        if n in index:
            entries[index[n]] = (n, v, f"{path}.macros.{n}")
        else:
            index[n] = len(entries)
            entries.append((n, v, f"{path}.macros.{n}"))
    macros = resolve_macros(entries)

    out: dict[str, Any] = {}
    for key in STRING_FIELDS:
        value = _opt(model, key)
        if value is None:
            continue
        text = _string(value, f"{path}.{key}")
        if key in ("cmd", "cmdStop"):
            text = strip_comment_lines(text)
        out[key] = substitute(text, macros, typed=False)
    for key in TYPED_FIELDS:
        value = _opt(model, key)
        if value is not None:
            out[key] = substitute(value, macros, typed=True)
    for key in ("aliases", "env"):
        value = _opt(model, key)
        if value is not None:
            out[key] = substitute(_list(value, f"{path}.{key}"), macros, typed=False)

    filters = _mapping(_opt(model, "filters"), f"{path}.filters")
    ctx.unknown_keys(
        filters,
        f"{path}.filters",
        frozenset({"stripParams", "strip_params", "setParams"}),
        {"setParamsByID": _UNSUPPORTED + " (its keys are not registered as aliases)"},
    )
    strip = _opt(filters, "stripParams")
    legacy = _opt(filters, "strip_params")
    if strip and legacy is not None:
        # llama-swap reads the legacy spelling only when stripParams is empty.
        ctx.warn(f"{path}.filters.strip_params: ignored because filters.stripParams is set")
    strip_key = "stripParams"
    if legacy is not None and not strip:
        strip, strip_key = legacy, "strip_params"
    if strip is not None:
        out["stripParams"] = substitute(
            _string(strip, f"{path}.filters.{strip_key}"), macros, typed=False
        )
    set_params = _opt(filters, "setParams")
    if set_params is not None:
        out["setParams"] = substitute(
            _mapping(set_params, f"{path}.filters.setParams"), macros, typed=True
        )
    return out


def _finish_model(
    ctx: _Ctx,
    mid: str,
    fields: dict[str, Any],
    *,
    port: int | None,
    global_ttl: float,
    unload_timeout: float,
    send_loading_state: bool,
) -> ModelConfig | None:
    """The validated model, or None when it must be skipped (warned)."""
    path = f"models.{mid}"
    has_cmd = "cmd" in fields
    if not has_cmd and ctx.require_cmd:
        raise ConfigError(f"{path}.cmd: required (the command that starts the model's server)")
    proxy_defaulted = "proxy" not in fields
    if proxy_defaulted:
        fields["proxy"] = DEFAULT_PROXY if has_cmd else ""

    if port is not None:
        port_macro = {"PORT": port}
        for key, value in list(fields.items()):
            fields[key] = substitute(
                value, port_macro, typed=key in TYPED_FIELDS or key == "setParams"
            )
    elif "${PORT}" in fields["proxy"] and proxy_defaulted:
        # llama-swap rejects the whole config here, yet its own example config has such a model.
        # Skipping just this model (loudly) keeps every other model usable.
        ctx.warn(
            f"{path}.proxy: not set and cmd does not use ${{PORT}}, so the server's address is "
            f"unknown (proxy would default to {DEFAULT_PROXY}); model ignored. Set proxy, "
            "or use ${PORT} in cmd"
        )
        return None
    elif "${PORT}" in fields["proxy"]:
        raise ConfigError(
            f"{path}.proxy: uses ${{PORT}} but cmd does not; ${{PORT}} is only allocated for "
            "models whose cmd uses it, so a cmd with a fixed port must set proxy explicitly"
        )
    for key, value in fields.items():
        sub = {"stripParams": "filters.stripParams", "setParams": "filters.setParams"}.get(key, key)
        leftover_macros(
            value, f"{path}.{sub}", frozenset({"PID"}) if key == "cmdStop" else frozenset()
        )

    cmd = split_command(fields["cmd"], f"{path}.cmd") if has_cmd else ()
    cmd_stop = join_continuations(fields.get("cmdStop", "")).strip()

    proxy = fields["proxy"]
    if proxy:
        try:
            parts = urlsplit(proxy)
            ok = parts.scheme in ("http", "https") and bool(parts.hostname)
            _ = parts.port  # raises ValueError for a bad port
        except ValueError:
            ok = False
        if not ok:
            raise ConfigError(f"{path}.proxy: must be an http(s) URL with a host, got {proxy!r}")

    aliases: list[str] = []
    for i, item in enumerate(fields.get("aliases", [])):
        alias = _string(item, f"{path}.aliases[{i}]").strip()
        if not alias:
            raise ConfigError(f"{path}.aliases[{i}]: alias must not be empty")
        if alias in aliases:
            raise ConfigError(f"{path}.aliases[{i}]: duplicate alias {alias!r}")
        aliases.append(alias)

    env: dict[str, str] = {}
    for i, item in enumerate(fields.get("env", [])):
        where = f"{path}.env[{i}]"
        entry = _string(item, where)
        name, sep, value = entry.partition("=")
        if not sep or not name.strip() or "\0" in entry:
            raise ConfigError(f"{where}: must be NAME=value, got {entry!r}")
        env[name] = value

    check_endpoint = DEFAULT_CHECK_ENDPOINT
    if "checkEndpoint" in fields:
        check_endpoint = fields["checkEndpoint"].strip()

    ttl_raw = fields.get("ttl", -1)
    ttl = float(_number(ttl_raw, f"{path}.ttl"))
    if ttl < -1:
        raise ConfigError(f"{path}.ttl: must be >= -1, got {_fmt(ttl_raw)}")
    if -1 < ttl < 0:
        raise ConfigError(f"{path}.ttl: must be -1 (use globalTTL) or >= 0, got {_fmt(ttl_raw)}")
    if ttl == -1:
        ttl = global_ttl

    ut_raw = fields.get("unloadTimeout", 0)
    model_unload = float(_number(ut_raw, f"{path}.unloadTimeout"))
    if model_unload < 0:
        raise ConfigError(f"{path}.unloadTimeout: must be >= 0, got {_fmt(ut_raw)}")
    if model_unload == 0:
        model_unload = unload_timeout

    limit_raw = fields.get("concurrencyLimit", 0)
    limit = _int(limit_raw, f"{path}.concurrencyLimit")
    if limit < 0:
        raise ConfigError(f"{path}.concurrencyLimit: must be >= 0, got {limit}")
    if limit == 0:
        limit = DEFAULT_CONCURRENCY_LIMIT
    if mid == COMFYUI_MODEL_ID:
        # llama-swap backs /comfyui/ with this id and raises its limit.
        limit = max(limit, COMFYUI_MIN_CONCURRENCY)

    strip_params: list[str] = []
    for name in fields.get("stripParams", "").split(","):
        name = name.strip()
        if not name:
            continue
        if name in PROTECTED_PARAMS:
            ctx.warn(
                f"{path}.filters.stripParams: {name!r} is protected and cannot be stripped; ignored"
            )
            continue
        if name not in strip_params:
            strip_params.append(name)

    set_params = dict(fields.get("setParams", {}))
    for name in PROTECTED_PARAMS & set(set_params):
        ctx.warn(
            f"{path}.filters.setParams.{name}: {name!r} is protected and cannot be set; ignored"
        )
        del set_params[name]

    metadata = _mapping(fields.get("metadata"), f"{path}.metadata")
    _json_safe(metadata, f"{path}.metadata")
    _json_safe(set_params, f"{path}.filters.setParams")

    model_sls = fields.get("sendLoadingState")
    sls = send_loading_state if model_sls is None else _bool(model_sls, f"{path}.sendLoadingState")

    return ModelConfig(
        id=mid,
        cmd=cmd,
        cmd_stop=cmd_stop,
        proxy=proxy,
        aliases=tuple(aliases),
        env=env,
        check_endpoint=check_endpoint,
        ttl=ttl,
        unload_timeout=model_unload,
        unlisted=_bool(fields["unlisted"], f"{path}.unlisted") if "unlisted" in fields else False,
        use_model_name=fields.get("useModelName", ""),
        name=fields.get("name", ""),
        description=fields.get("description", ""),
        concurrency_limit=limit,
        strip_params=tuple(sorted(strip_params)),
        set_params=set_params,
        metadata=metadata,
        send_loading_state=sls,
        port=port,
    )


# ---------------------------------------------------------------------------------------------
# routing: groups and scheduler


def _groups(
    ctx: _Ctx,
    data: Mapping[str, Any],
    models: Mapping[str, ModelConfig],
    aliases: Mapping[str, str],
) -> tuple[GroupSpec, ...]:
    routing = _mapping(_opt(data, "routing"), "routing")
    ctx.unknown_keys(routing, "routing", frozenset({"router", "scheduler"}))
    router = _mapping(_opt(routing, "router"), "routing.router")
    ctx.unknown_keys(router, "routing.router", frozenset({"use", "settings"}))
    settings = _mapping(_opt(router, "settings"), "routing.router.settings")
    ctx.unknown_keys(
        settings,
        "routing.router.settings",
        frozenset({"groups"}),
        {"matrix": "matrix routing is " + _UNSUPPORTED},
    )
    use = _opt(router, "use")
    if use is not None:
        use = _string(use, "routing.router.use")
        if use == "matrix":
            raise ConfigError(
                "routing.router.use: 'matrix' is not supported by llamaswap yet; use 'group' (the default)"
            )
        if use != "group":
            raise ConfigError(f"routing.router.use: unknown router {use!r} (valid: group)")

    legacy_groups = _opt(data, "groups")
    uses_router = any(v is not None for v in router.values())
    if legacy_groups is not None and uses_router:
        raise ConfigError(
            "groups: the legacy top-level 'groups' cannot be combined with 'routing.router'; "
            "move the groups to routing.router.settings.groups"
        )
    if legacy_groups is not None and _opt(data, "matrix") is not None:
        raise ConfigError("groups: a config cannot use both 'groups' and 'matrix'")
    if legacy_groups is not None:
        raw_groups, base = _mapping(legacy_groups, "groups"), "groups"
    else:
        base = "routing.router.settings.groups"
        raw_groups = _mapping(_opt(settings, "groups"), base)

    member_of: dict[str, str] = {}
    groups: list[GroupSpec] = []
    for name, raw in raw_groups.items():
        path = f"{base}.{name}"
        group = _mapping(raw, path)
        ctx.unknown_keys(group, path, frozenset({"swap", "exclusive", "persistent", "members"}))
        if _opt(group, "members") is None:
            raise ConfigError(f"{path}.members: required (the model ids in this group)")
        members: list[str] = []
        for i, item in enumerate(_list(group["members"], f"{path}.members")):
            where = f"{path}.members[{i}]"
            member = _string(item, where)
            if member in members:
                raise ConfigError(f"{where}: duplicate member {member!r} in group {name!r}")
            members.append(member)
            if member not in models:
                # llama-swap itself accepts members that are not models (its own example config has
                # them); dropping them with a warning keeps that config loadable and is never silent.
                hint = (
                    f" (it is an alias of {aliases[member]!r}; members must be model ids)"
                    if member in aliases
                    else ""
                )
                ctx.warn(f"{where}: unknown model {member!r}{hint}; ignored")
                continue
            if member in member_of:
                raise ConfigError(
                    f"{where}: model {member!r} is already a member of group {member_of[member]!r}"
                )
            member_of[member] = name
        flags = {}
        for flag, default in (("swap", True), ("exclusive", True), ("persistent", False)):
            value = _opt(group, flag)
            flags[flag] = default if value is None else _bool(value, f"{path}.{flag}")
        groups.append(
            GroupSpec(name=name, members=tuple(m for m in members if m in models), **flags)
        )
    return tuple(groups)


def _scheduler(ctx: _Ctx, data: Mapping[str, Any], resolve: Any) -> tuple[str, dict[str, Any]]:
    routing = _mapping(_opt(data, "routing"), "routing")
    sched = _mapping(_opt(routing, "scheduler"), "routing.scheduler")
    ctx.unknown_keys(sched, "routing.scheduler", frozenset({"use", "settings"}))
    valid = scheduler_names()
    name = DEFAULT_SCHEDULER
    if _opt(sched, "use") is not None:
        name = _string(sched["use"], "routing.scheduler.use")
        if name not in valid:
            raise ConfigError(
                f"routing.scheduler.use: unknown scheduler {name!r} (valid: {', '.join(valid)})"
            )

    settings_in = _mapping(_opt(sched, "settings"), "routing.scheduler.settings")
    settings: dict[str, Any] = {}
    for sname, raw in settings_in.items():
        path = f"routing.scheduler.settings.{sname}"
        if sname not in valid:
            ctx.warn(f"{path}: no scheduler named {sname!r} (valid: {', '.join(valid)}); ignored")
            continue
        body = _mapping(raw, path)
        if sname == "fifo":
            body = _fifo_settings(ctx, body, path, resolve)
        settings[sname] = body
    return name, settings


def _fifo_settings(ctx: _Ctx, body: dict[str, Any], path: str, resolve: Any) -> dict[str, Any]:
    ctx.unknown_keys(body, path, frozenset({"priority"}))
    out = dict(body)
    if _opt(body, "priority") is None:
        out.pop("priority", None)
        return out
    priority: dict[str, int] = {}
    named_by: dict[str, str] = {}
    for key, value in _mapping(body["priority"], f"{path}.priority").items():
        where = f"{path}.priority.{key}"
        level = _int(value, where)
        real = resolve(key)
        if real is None:
            # llama-swap rejects this; its own example config lists illustrative ids, so warn instead.
            ctx.warn(f"{where}: unknown model {key!r}; ignored")
            continue
        if real in priority and priority[real] != level:
            raise ConfigError(
                f"{where}: model {real!r} already has priority {priority[real]} (via {named_by[real]!r})"
            )
        # Stored by REAL model id: llama-swap validates alias keys but looks priorities up by real id,
        # so an alias-keyed priority silently does nothing there (quirk 14). Here it works.
        priority[real] = level
        named_by[real] = key
    out["priority"] = priority
    return out
