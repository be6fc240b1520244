"""``routing`` (and legacy ``groups``): group definitions and the scheduler choice (§1.5, 1.6)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from llamaswap.config.hardening import check_id
from llamaswap.config.model import DEFAULT_SCHEDULER, ConfigError, ModelConfig
from llamaswap.config.values import (
    UNSUPPORTED,
    Ctx,
    as_bool,
    as_list,
    as_mapping,
    as_string,
    opt,
)
from llamaswap.core.policies import parse_settings, policy, scheduler_names
from llamaswap.core.spec import GroupSpec

Resolver = Callable[[str], str | None]
"""Model id or alias -> real model id (None when unknown)."""


def parse_groups(
    ctx: Ctx,
    data: Mapping[str, Any],
    models: Mapping[str, ModelConfig],
    aliases: Mapping[str, str],
) -> tuple[GroupSpec, ...]:
    routing = as_mapping(opt(data, "routing"), "routing")
    ctx.unknown_keys(routing, "routing", frozenset({"router", "scheduler"}))
    router = as_mapping(opt(routing, "router"), "routing.router")
    ctx.unknown_keys(router, "routing.router", frozenset({"use", "settings"}))
    settings = as_mapping(opt(router, "settings"), "routing.router.settings")
    ctx.unknown_keys(
        settings,
        "routing.router.settings",
        frozenset({"groups"}),
        {"matrix": "matrix routing is " + UNSUPPORTED},
    )
    use = opt(router, "use")
    if use is not None:
        use = as_string(use, "routing.router.use")
        if use == "matrix":
            raise ConfigError(
                "routing.router.use: 'matrix' is not supported by llamaswap yet; use 'group' (the default)"
            )
        if use != "group":
            raise ConfigError(f"routing.router.use: unknown router {use!r} (valid: group)")

    legacy_groups = opt(data, "groups")
    uses_router = any(v is not None for v in router.values())
    if legacy_groups is not None and uses_router:
        raise ConfigError(
            "groups: the legacy top-level 'groups' cannot be combined with 'routing.router'; "
            "move the groups to routing.router.settings.groups"
        )
    if legacy_groups is not None and opt(data, "matrix") is not None:
        raise ConfigError("groups: a config cannot use both 'groups' and 'matrix'")
    if legacy_groups is not None:
        raw_groups, base = as_mapping(legacy_groups, "groups"), "groups"
    else:
        base = "routing.router.settings.groups"
        raw_groups = as_mapping(opt(settings, "groups"), base)

    member_of: dict[str, str] = {}
    groups: list[GroupSpec] = []
    for name, raw in raw_groups.items():
        path = f"{base}.{name}"
        check_id(name, path)
        group = as_mapping(raw, path)
        ctx.unknown_keys(group, path, frozenset({"swap", "exclusive", "persistent", "members"}))
        if opt(group, "members") is None:
            raise ConfigError(f"{path}.members: required (the model ids in this group)")
        members: list[str] = []
        for i, item in enumerate(as_list(group["members"], f"{path}.members")):
            where = f"{path}.members[{i}]"
            member = as_string(item, where)
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
            value = opt(group, flag)
            flags[flag] = default if value is None else as_bool(value, f"{path}.{flag}")
        groups.append(
            GroupSpec(name=name, members=tuple(m for m in members if m in models), **flags)
        )
    return tuple(groups)


def parse_scheduler(
    ctx: Ctx, data: Mapping[str, Any], resolve: Resolver, model_ids: Sequence[str]
) -> tuple[str, dict[str, Any]]:
    """The scheduler in use and every scheduler's parsed settings (by the registry's parsers)."""
    routing = as_mapping(opt(data, "routing"), "routing")
    sched = as_mapping(opt(routing, "scheduler"), "routing.scheduler")
    ctx.unknown_keys(sched, "routing.scheduler", frozenset({"use", "settings"}))
    valid = scheduler_names()
    name = DEFAULT_SCHEDULER
    if opt(sched, "use") is not None:
        name = as_string(sched["use"], "routing.scheduler.use")
        if name not in valid:
            raise ConfigError(
                f"routing.scheduler.use: unknown scheduler {name!r} (valid: {', '.join(valid)})"
            )

    settings_in = as_mapping(opt(sched, "settings"), "routing.scheduler.settings")
    settings: dict[str, Any] = {}
    for sname, raw in settings_in.items():
        path = f"routing.scheduler.settings.{sname}"
        if sname not in valid:
            ctx.warn(f"{path}: no scheduler named {sname!r} (valid: {', '.join(valid)}); ignored")
            continue
        body = _resolve_model_keys(ctx, sname, as_mapping(raw, path), path, resolve)
        try:
            # Parsed here, once: a bad value is a config error naming the key (so check-config
            # catches it and a reload keeps the old config), and the core trusts what it gets.
            settings[sname] = parse_settings(sname, body, list(model_ids))
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        if sname != name:
            # Kept (validated) for a later switch of `use`, but silent here would mislead:
            # e.g. fifo.priority does nothing under batch-aging, which has its own priority.
            ctx.warn(f"{path}: the scheduler in use is {name!r}, so these settings do nothing")
    return name, settings


def _resolve_model_keys(
    ctx: Ctx, sname: str, body: dict[str, Any], path: str, resolve: Resolver
) -> dict[str, Any]:
    """Key the policy's per-model maps by real model id: aliases resolved, duplicates refused.

    An unknown model is dropped with a warning or refused, as the policy's settings say. Stored by
    REAL model id: llama-swap validates alias keys of ``fifo.priority`` but looks priorities up by
    real id, so an alias-keyed priority silently does nothing there (quirk 14). Here it works.
    """
    kind = policy(sname).settings
    if kind.KNOWN_KEYS is not None:
        ctx.unknown_keys(body, path, kind.KNOWN_KEYS)
    out = dict(body)
    for key in kind.MODEL_KEYS:
        raw = opt(body, key)
        if raw is None:
            out.pop(key, None)
            continue
        if key in kind.SCALAR_KEYS and not isinstance(raw, Mapping):
            continue
        resolved: dict[str, Any] = {}
        named_by: dict[str, str] = {}
        for name, value in as_mapping(raw, f"{path}.{key}").items():
            where = f"{path}.{key}.{name}"
            real = resolve(str(name))
            if real is None:
                if kind.UNKNOWN_MODELS_WARN:
                    # llama-swap rejects this; its own example config lists illustrative ids.
                    ctx.warn(f"{where}: unknown model {name!r}; ignored")
                    continue
                raise ConfigError(f"{where}: unknown model {name!r}")
            if real in resolved and resolved[real] != value:
                shown = f"{key} {resolved[real]!r}" if key == "priority" else repr(resolved[real])
                raise ConfigError(
                    f"{where}: model {real!r} already has {shown} (via {named_by[real]!r})"
                )
            resolved[real] = value
            named_by[real] = str(name)
        out[key] = resolved
    return out
