"""Typed readers for raw config values, and the warning collector.

Each reader names the key path and the offending type in its error, so every validation site
produces a ``ConfigError`` that starts with the key path without repeating that logic.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from llamaswap.config.model import ConfigError
from llamaswap.config.sources import format_scalar, type_name

MAX_MAGNITUDE = 1e15
"""Bound on numeric settings (about 31 million years of seconds): rejects overflow-sized values."""
UNSUPPORTED = "not supported by llamaswap yet; ignored"
T = TypeVar("T")


@dataclass
class Ctx:
    require_cmd: bool
    warnings: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def warn(self, message: str) -> None:
        if message not in self.warnings:
            self.warnings.append(message)

    def attempt(self, check: Callable[[], T], default: T) -> T:
        """Run one independent piece of validation; on a ConfigError note it and go on.

        This is how a config with several mistakes gets all of them reported in one run.
        """
        try:
            return check()
        except ConfigError as exc:
            self.errors.extend(exc.errors)
            return default

    def raise_errors(self) -> None:
        if self.errors:
            raise ConfigError.collected(self.errors, self.warnings)

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


def fmt_value(value: Any) -> str:
    return (
        format_scalar(value)
        if isinstance(value, int | float) and not isinstance(value, bool)
        else repr(value)
    )


def as_mapping(value: Any, path: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{path}: must be a mapping, got {type_name(value)}")
    return dict(value)


def as_list(value: Any, path: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ConfigError(f"{path}: must be a list, got {type_name(value)}")
    return value


def as_number(value: Any, path: str, *, integer: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        kind = "an integer" if integer else "a number"
        raise ConfigError(f"{path}: must be {kind}, got {type_name(value)} {fmt_value(value)}")
    if abs(value) > MAX_MAGNITUDE:
        raise ConfigError(f"{path}: number out of range, got {fmt_value(value)}")
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ConfigError(f"{path}: must be a finite number, got {fmt_value(value)}")
        if integer:
            if not value.is_integer():
                raise ConfigError(f"{path}: must be an integer, got {fmt_value(value)}")
            return int(value)
    return value


def as_int(value: Any, path: str) -> int:
    return int(as_number(value, path, integer=True))


_YAML11_TRUE = frozenset({"y", "Y", "yes", "Yes", "YES", "on", "On", "ON"})
_YAML11_FALSE = frozenset({"n", "N", "no", "No", "NO", "off", "Off", "OFF"})


def as_bool(value: Any, path: str) -> bool:
    # Like Go's yaml.v3, YAML 1.1 words are accepted where a boolean is expected (only there).
    if isinstance(value, str) and value in _YAML11_TRUE:
        return True
    if isinstance(value, str) and value in _YAML11_FALSE:
        return False
    if not isinstance(value, bool):
        raise ConfigError(
            f"{path}: must be true or false, got {type_name(value)} {fmt_value(value)}"
        )
    return value


def as_string(value: Any, path: str) -> str:
    """A string; numbers are accepted as their text, as Go's YAML decoder does for string fields."""
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return format_scalar(value)
    raise ConfigError(f"{path}: must be a string, got {type_name(value)}")


def opt(raw: Mapping[str, Any], key: str) -> Any:
    """``key: ~`` (YAML null) means the same as leaving the key out, as in llama-swap."""
    return raw.get(key)


def json_safe(value: Any, path: str) -> None:
    """Metadata and setParams end up in JSON bodies: NaN/Infinity would make them invalid JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{path}: must be a finite number, got {fmt_value(value)}")
    if isinstance(value, Mapping):
        for k, v in value.items():
            json_safe(v, f"{path}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            json_safe(v, f"{path}[{i}]")
