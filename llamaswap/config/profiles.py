"""``profiles.<name>``: runtime-switchable model-id rewrites ("pins"), as llama-swap's (§1.10).

Why a table of pins and nothing more: a profile only renames what a client asked for before
anything else looks at it (selectors, aliases, filters, routing), so one request path serves both
states; ``""`` or ``~`` as a target disables the name (404 while the profile is active).
Which profile is active is runtime state (``PUT /api/profiles/active``), never config: none at
start and after every reload.

Deliberate difference (as for group members and selector targets): a pin whose target names no
model is dropped with a warning while another pin remains; a profile left with none is an error.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from llamaswap.config.model import ConfigError
from llamaswap.config.values import Ctx, as_mapping, as_string, opt

LEGACY = (
    "profile must be a mapping with description and pins; the legacy list syntax is no longer"
    " supported"
)


@dataclass(frozen=True)
class ProfileConfig:
    name: str
    description: str = ""
    pins: Mapping[str, str] = field(default_factory=dict)
    """Requested id -> target (a model id, alias, peer name or selector); "" = disabled."""


def pin_names(raw: Any) -> dict[str, str]:
    """Every pin name -> its key path, read before peer names are fixed (they are reserved)."""
    out: dict[str, str] = {}
    for name, body in as_mapping(raw, "profiles").items():
        if isinstance(body, Mapping) and isinstance(body.get("pins"), Mapping):
            for pin in body["pins"]:
                out.setdefault(str(pin), f"profiles.{name}.pins.{pin}")
    return out


def parse_profiles(
    ctx: Ctx,
    raw: Any,
    resolves: Callable[[str], bool],
    selectors: Collection[str],
) -> dict[str, ProfileConfig]:
    """``resolves``: the name is a local model/alias or a peer model (selectors checked apart)."""
    out: dict[str, ProfileConfig] = {}
    for name, body in sorted(as_mapping(raw, "profiles").items()):
        name = str(name)
        path = f"profiles.{name}"
        if not name.strip():
            raise ConfigError("profiles: profile names cannot be empty")
        if isinstance(body, list):
            raise ConfigError(f"{path}: {LEGACY}")
        profile = as_mapping(body, path)
        ctx.unknown_keys(profile, path, frozenset({"description", "pins"}))
        pins_raw = as_mapping(opt(profile, "pins"), f"{path}.pins")
        if not pins_raw:
            raise ConfigError(f"{path}.pins must contain at least one entry")
        pins: dict[str, str] = {}
        unknown: list[str] = []
        for pin, target_raw in pins_raw.items():
            pin = str(pin)
            if not pin.strip():
                raise ConfigError(f"{path}.pins: pin names cannot be empty")
            target = "" if target_raw is None else as_string(target_raw, f"{path}.pins.{pin}")
            if target and not resolves(target) and target not in selectors:
                unknown.append(f"{path}.pins.{pin} references unknown model {target!r}")
                continue
            pins[pin] = target
        if not pins:
            raise ConfigError(unknown[0])
        for message in unknown:  # as selector targets: llama-swap's example has such names
            ctx.warn(f"{message}; dropped")
        description = ""
        if opt(profile, "description") is not None:
            description = as_string(profile["description"], f"{path}.description")
        out[name] = ProfileConfig(name=name, description=description, pins=pins)
    return out
