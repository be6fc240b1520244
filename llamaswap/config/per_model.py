"""``models.<id>``: macro expansion, ``${PORT}`` allocation and per-model validation (§1.3, 1.4)."""

from __future__ import annotations

from functools import partial
from typing import Any
from urllib.parse import urlsplit

from llamaswap.config.commands import join_continuations, split_command, strip_comment_lines
from llamaswap.config.hardening import check_id, parse_timeouts
from llamaswap.config.macros import leftover_macros, resolve_macros, substitute, validate_macros
from llamaswap.config.model import DEFAULT_CHECK_ENDPOINT, DEFAULT_PROXY, ConfigError, ModelConfig
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
    json_safe,
    opt,
)
from llamaswap.core.spec import DEFAULT_CONCURRENCY_LIMIT

COMFYUI_MODEL_ID = "comfyui_auto"
COMFYUI_MIN_CONCURRENCY = 50
MAX_PORT = 65535
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
        "timeouts",
    }
)
MODEL_UNSUPPORTED = {
    "compat": UNSUPPORTED,
    "capabilities": UNSUPPORTED,
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


def parse_models(
    ctx: Ctx,
    raw_models: dict[str, Any],
    *,
    global_macros: list[tuple[str, Any]],
    global_ttl: float,
    unload_timeout: float,
    send_loading_state: bool,
    start_port: int,
) -> dict[str, ModelConfig]:
    # Every model is validated on its own (ctx.attempt), so one run reports all bad models.
    # Phase 1: shape checks and ordinary macro expansion, per model.
    expanded: dict[str, dict[str, Any]] = {}
    for mid, raw in raw_models.items():
        fields = ctx.attempt(partial(_shape, ctx, mid, raw, global_macros), None)
        if fields is not None:
            expanded[mid] = fields

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
        finish = partial(
            _finish_model,
            ctx,
            mid,
            fields,
            port=ports.get(mid),
            global_ttl=global_ttl,
            unload_timeout=unload_timeout,
            send_loading_state=send_loading_state,
        )
        done = ctx.attempt(finish, None)
        if done is None:
            continue
        if ctx.attempt(partial(_claim_aliases, done, expanded, owners), False):
            models[mid] = done
    return models


def _shape(ctx: Ctx, mid: str, raw: Any, global_macros: list[tuple[str, Any]]) -> dict[str, Any]:
    path = f"models.{mid}"
    if not mid:
        raise ConfigError("models: a model id must not be empty")
    check_id(mid, f"models.{mid!r}")
    if raw is None and not ctx.require_cmd:
        raw = {}
    if raw is None:
        raise ConfigError(f"{path}: must be a mapping with at least 'cmd', got null")
    return _expand_model(ctx, mid, as_mapping(raw, path), global_macros)


def _claim_aliases(
    model: ModelConfig, expanded: dict[str, dict[str, Any]], owners: dict[str, str]
) -> bool:
    for i, alias in enumerate(model.aliases):
        where = f"models.{model.id}.aliases[{i}]"
        if alias in expanded:
            raise ConfigError(f"{where}: alias {alias!r} is also a model id")
        if alias in owners:
            raise ConfigError(
                f"{where}: duplicate alias {alias!r}, already used by model {owners[alias]!r}"
            )
    owners.update((alias, model.id) for alias in model.aliases)
    return True


def _expand_model(
    ctx: Ctx, mid: str, model: dict[str, Any], global_macros: list[tuple[str, Any]]
) -> dict[str, Any]:
    path = f"models.{mid}"
    ctx.unknown_keys(model, path, MODEL_KEYS, MODEL_UNSUPPORTED)

    local = validate_macros(opt(model, "macros"), f"{path}.macros")
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
        value = opt(model, key)
        if value is None:
            continue
        text = as_string(value, f"{path}.{key}")
        if key in ("cmd", "cmdStop"):
            text = strip_comment_lines(text)
        out[key] = substitute(text, macros, typed=False, where=f"{path}.{key}")
    for key in TYPED_FIELDS:
        value = opt(model, key)
        if value is not None:
            out[key] = substitute(value, macros, typed=True, where=f"{path}.{key}")
    for key in ("aliases", "env"):
        value = opt(model, key)
        if value is not None:
            where = f"{path}.{key}"
            out[key] = substitute(as_list(value, where), macros, typed=False, where=where)
    if opt(model, "timeouts") is not None:
        out["timeouts"] = substitute(
            as_mapping(model["timeouts"], f"{path}.timeouts"), macros, typed=True
        )

    filters = as_mapping(opt(model, "filters"), f"{path}.filters")
    ctx.unknown_keys(
        filters,
        f"{path}.filters",
        frozenset({"stripParams", "strip_params", "setParams"}),
        {"setParamsByID": UNSUPPORTED + " (its keys are not registered as aliases)"},
    )
    strip = opt(filters, "stripParams")
    legacy = opt(filters, "strip_params")
    if strip and legacy is not None:
        # llama-swap reads the legacy spelling only when stripParams is empty.
        ctx.warn(f"{path}.filters.strip_params: ignored because filters.stripParams is set")
    strip_key = "stripParams"
    if legacy is not None and not strip:
        strip, strip_key = legacy, "strip_params"
    if strip is not None:
        out["stripParams"] = substitute(
            as_string(strip, f"{path}.filters.{strip_key}"), macros, typed=False
        )
    set_params = opt(filters, "setParams")
    if set_params is not None:
        out["setParams"] = substitute(
            as_mapping(set_params, f"{path}.filters.setParams"), macros, typed=True
        )
    return out


def _finish_model(
    ctx: Ctx,
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
                value, port_macro, typed=key in TYPED_FIELDS or key in ("setParams", "timeouts")
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
        alias = as_string(item, f"{path}.aliases[{i}]").strip()
        if not alias:
            raise ConfigError(f"{path}.aliases[{i}]: alias must not be empty")
        if alias in aliases:
            raise ConfigError(f"{path}.aliases[{i}]: duplicate alias {alias!r}")
        check_id(alias, f"{path}.aliases[{i}]")
        aliases.append(alias)

    env: dict[str, str] = {}
    for i, item in enumerate(fields.get("env", [])):
        where = f"{path}.env[{i}]"
        entry = as_string(item, where)
        name, sep, value = entry.partition("=")
        if not sep or not name.strip() or "\0" in entry:
            raise ConfigError(f"{where}: must be NAME=value, got {entry!r}")
        env[name] = value

    check_endpoint = DEFAULT_CHECK_ENDPOINT
    if "checkEndpoint" in fields:
        check_endpoint = fields["checkEndpoint"].strip()

    ttl_raw = fields.get("ttl", -1)
    ttl = float(as_number(ttl_raw, f"{path}.ttl"))
    if ttl < -1:
        raise ConfigError(f"{path}.ttl: must be >= -1, got {fmt_value(ttl_raw)}")
    if -1 < ttl < 0:
        raise ConfigError(
            f"{path}.ttl: must be -1 (use globalTTL) or >= 0, got {fmt_value(ttl_raw)}"
        )
    if ttl == -1:
        ttl = global_ttl

    ut_raw = fields.get("unloadTimeout", 0)
    model_unload = float(as_number(ut_raw, f"{path}.unloadTimeout"))
    if model_unload < 0:
        raise ConfigError(f"{path}.unloadTimeout: must be >= 0, got {fmt_value(ut_raw)}")
    if model_unload == 0:
        model_unload = unload_timeout

    limit_raw = fields.get("concurrencyLimit", 0)
    limit = as_int(limit_raw, f"{path}.concurrencyLimit")
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

    metadata = as_mapping(fields.get("metadata"), f"{path}.metadata")
    json_safe(metadata, f"{path}.metadata")
    json_safe(set_params, f"{path}.filters.setParams")

    model_sls = fields.get("sendLoadingState")
    sls = (
        send_loading_state if model_sls is None else as_bool(model_sls, f"{path}.sendLoadingState")
    )

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
        unlisted=as_bool(fields["unlisted"], f"{path}.unlisted") if "unlisted" in fields else False,
        use_model_name=fields.get("useModelName", ""),
        name=fields.get("name", ""),
        description=fields.get("description", ""),
        concurrency_limit=limit,
        strip_params=tuple(sorted(strip_params)),
        set_params=set_params,
        metadata=metadata,
        send_loading_state=sls,
        port=port,
        timeouts=parse_timeouts(ctx, fields.get("timeouts"), f"{path}.timeouts"),
    )
