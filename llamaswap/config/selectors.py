"""``selectors.<id>``: validation as llama-swap's ``internal/config/selectors.go`` (reference §1.9).

Deliberate difference: a target naming no model is dropped with a warning while another target
remains (as unknown group members are; llama-swap's own example config has such names); a
selector left with no target is an error.

Why here and not in the core: the core's :mod:`llamaswap.core.selectors` only chooses among
already-resolved targets; which names exist, what they resolve to and whether spillover targets
can be resident together are config facts, checked once at load with one error line per problem.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from llamaswap.config.model import ConfigError
from llamaswap.config.peers import PeerRoute
from llamaswap.config.values import (
    Ctx,
    as_bool,
    as_int,
    as_list,
    as_mapping,
    as_string,
    json_safe,
    opt,
)
from llamaswap.core.selectors import SelectorSpec, Strategy, Target
from llamaswap.core.spec import GroupSpec

SELECTOR_KEYS = frozenset(
    {"strategy", "targets", "settings", "name", "description", "unlisted", "metadata"}
)
STRATEGIES = ", ".join(s.value for s in (Strategy.WARM, Strategy.PIN, Strategy.SPILLOVER))


@dataclass(frozen=True)
class SelectorConfig:
    spec: SelectorSpec
    name: str = ""
    description: str = ""
    unlisted: bool = False
    metadata: Mapping[str, Any] = field(default_factory=dict)


def selector_ids(raw: Any, models: Mapping[str, Any], aliases: Mapping[str, str]) -> list[str]:
    """The selector ids, checked against model ids and aliases (before peer names are known)."""
    ids = []
    for sid in as_mapping(raw, "selectors"):
        sid = str(sid)
        if not sid.strip():
            raise ConfigError("selectors: selector names cannot be empty")
        if sid in models:
            raise ConfigError(f"selectors.{sid}: name conflicts with model ID {sid!r}")
        if sid in aliases:
            raise ConfigError(f"selectors.{sid}: name conflicts with model alias {sid!r}")
        ids.append(sid)
    return ids


def parse_selectors(
    ctx: Ctx,
    raw: Any,
    resolve: Callable[[str], str | None],
    peer_routes: Mapping[str, PeerRoute],
    groups: tuple[GroupSpec, ...],
) -> dict[str, SelectorConfig]:
    """Every selector validated; ``resolve``: local id/alias -> model id (None: not local)."""
    selectors = as_mapping(raw, "selectors")
    out: dict[str, SelectorConfig] = {}
    for sid, body_raw in sorted(selectors.items()):
        path = f"selectors.{sid}"
        body = as_mapping(body_raw, path)
        ctx.unknown_keys(body, path, SELECTOR_KEYS)
        strategy_raw = opt(body, "strategy")
        if strategy_raw is None or strategy_raw == "":
            raise ConfigError(f"{path}.strategy is required")
        name = as_string(strategy_raw, f"{path}.strategy")
        try:
            strategy = Strategy(name)
        except ValueError:
            raise ConfigError(
                f"{path}.strategy: unknown strategy {name!r} (valid: {STRATEGIES})"
            ) from None
        targets: list[Target] = []
        unknown: list[str] = []
        for i, item in enumerate(as_list(opt(body, "targets"), f"{path}.targets")):
            target = as_string(item, f"{path}.targets[{i}]")
            where = f"{path}.targets[{i}]"
            if target in selectors:
                raise ConfigError(
                    f"{where} references selector {target!r}; selector chaining is not supported"
                )
            key = resolve(target)
            local = key is not None
            if key is None:
                route = peer_routes.get(target)
                if route is None:
                    unknown.append(f"{where} references unknown model {target!r}")
                    continue
                if strategy is Strategy.WARM:
                    raise ConfigError(f"{where} must resolve to a local model for strategy 'warm'")
                key = route.fqn
            targets.append(Target(name=target, key=key, local=local))
        if not targets:
            raise ConfigError(
                unknown[0] if unknown else f"{path}.targets must contain at least one entry"
            )
        for message in unknown:  # as group members: llama-swap's example names illustrative models
            ctx.warn(f"{message}; dropped")
        settings = as_mapping(opt(body, "settings"), f"{path}.settings")
        ctx.unknown_keys(settings, f"{path}.settings", frozenset({"spillover"}))
        spillover = 1
        if opt(settings, "spillover") is not None:
            spillover = as_int(settings["spillover"], f"{path}.settings.spillover")
        if strategy is Strategy.SPILLOVER:
            _check_spillover(path, spillover, targets, groups)
        metadata = as_mapping(opt(body, "metadata"), f"{path}.metadata")
        json_safe(metadata, f"{path}.metadata")
        out[sid] = SelectorConfig(
            spec=SelectorSpec(sid, strategy, tuple(targets), spillover),
            name=_text(body, "name", path),
            description=_text(body, "description", path),
            unlisted=as_bool(body["unlisted"], f"{path}.unlisted")
            if opt(body, "unlisted") is not None
            else False,
            metadata=metadata,
        )
    return out


def _text(body: Mapping[str, Any], key: str, path: str) -> str:
    return as_string(body[key], f"{path}.{key}") if opt(body, key) is not None else ""


def _check_spillover(
    path: str, spillover: int, targets: list[Target], groups: tuple[GroupSpec, ...]
) -> None:
    """``settings.spillover >= 1``, no duplicate resolved targets, local targets can coexist."""
    if spillover < 1:
        raise ConfigError(f"{path}.settings.spillover must be >= 1")
    seen: set[str] = set()
    for target in targets:
        if target.key in seen:
            raise ConfigError(f"{path}.targets contains duplicate resolved model {target.key!r}")
        seen.add(target.key)
    local = [t.key for t in targets if t.local]
    if len(local) <= 1:
        return
    group_of = {member: group for group in groups for member in group.members}
    first = group_of.get(local[0])
    if first is None or first.swap:  # no group: llama-swap's implicit (default) group, swap: true
        raise ConfigError(f"{path} spillover targets must share a group with swap: false")
    if any(group_of.get(key) is not first for key in local[1:]):
        raise ConfigError(f"{path} spillover targets must share one routing group")
