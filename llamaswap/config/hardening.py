"""Reading ``models.<id>.timeouts``, ``limits`` and ``security``, and refusing unsafe ids.

Each reader is a table of (YAML key, field, kind, minimum) so adding a bound is one row; every
error names the key path, as everywhere in the config.
"""

from __future__ import annotations

import dataclasses
import unicodedata
from typing import Any

from llamaswap.config.limits import Limits, Security, Timeouts
from llamaswap.config.model import ConfigError
from llamaswap.config.values import Ctx, as_bool, as_int, as_list, as_mapping, as_number, as_string

# (YAML key, dataclass field, integer?, minimum)
TIMEOUT_KEYS: tuple[tuple[str, str, bool, float], ...] = (
    ("connect", "connect", False, 0),
    ("keepalive", "keepalive", False, 0),
    ("responseHeader", "response_header", False, 0),
    ("tlsHandshake", "tls_handshake", False, 0),
    ("expectContinue", "expect_continue", False, 0),
    ("idleConn", "idle_conn", False, 0),
    ("idle", "idle", False, 0),
    ("total", "total", False, 0),
    ("write", "write", False, 0),
)
LIMIT_KEYS: tuple[tuple[str, str, bool, float], ...] = (
    ("maxConnections", "max_connections", True, 16),
    ("headerTimeout", "header_timeout", False, 0.1),
    ("bodyIdle", "body_idle", False, 0.1),
    ("bodyMinRate", "body_min_rate", False, 0),
    ("maxJsonBody", "max_json_body", True, 1024),
    ("maxJsonContainers", "max_json_containers", True, 16),
)
SECURITY_LISTS = (("corsOrigins", "cors_origins"), ("allowedHosts", "allowed_hosts"))
SECURITY_FLAGS = (("inheritEnv", "inherit_env"), ("forwardCredentials", "forward_credentials"))


def _numbers(
    ctx: Ctx, raw: Any, path: str, table: tuple[tuple[str, str, bool, float], ...], base: Any
) -> Any:
    data = as_mapping(raw, path)
    ctx.unknown_keys(data, path, frozenset(key for key, *_ in table))
    values: dict[str, Any] = {}
    for key, name, integer, minimum in table:
        if data.get(key) is None:
            continue
        where = f"{path}.{key}"
        value = as_int(data[key], where) if integer else float(as_number(data[key], where))
        if value < minimum:
            raise ConfigError(f"{where}: must be >= {minimum:g}, got {value:g}")
        values[name] = value
    return dataclasses.replace(base, **values)


def parse_timeouts(ctx: Ctx, raw: Any, path: str) -> Timeouts:
    """``models.<id>.timeouts``: llama-swap's six keys plus ``idle``, ``total`` and ``write``."""
    return _numbers(ctx, raw, path, TIMEOUT_KEYS, Timeouts())


def parse_limits(ctx: Ctx, raw: Any) -> Limits:
    return _numbers(ctx, raw, "limits", LIMIT_KEYS, Limits())


def parse_security(ctx: Ctx, raw: Any) -> Security:
    data = as_mapping(raw, "security")
    known = frozenset(key for key, _ in SECURITY_LISTS + SECURITY_FLAGS)
    ctx.unknown_keys(data, "security", known)
    values: dict[str, Any] = {}
    for key, name in SECURITY_LISTS:
        items = []
        for i, item in enumerate(as_list(data.get(key), f"security.{key}")):
            text = as_string(item, f"security.{key}[{i}]").strip()
            if not text or any(c.isspace() for c in text):
                raise ConfigError(f"security.{key}[{i}]: must be a non-empty name, got {text!r}")
            items.append(text.rstrip("/").lower() if key == "corsOrigins" else text.lower())
        values[name] = tuple(items)
    for key, name in SECURITY_FLAGS:
        if data.get(key) is not None:
            values[name] = as_bool(data[key], f"security.{key}")
    return dataclasses.replace(Security(), **values)


_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
"""Control, format (U+200B zero-width space, U+202E right-to-left override, ...), surrogate,
private-use, unassigned, line and paragraph separators: characters that make two ids look alike
or make a log line lie."""


def check_id(text: str, path: str) -> None:
    """Refuse control and invisible characters in a model id, alias or group name."""
    for ch in text:
        if unicodedata.category(ch) in _UNSAFE_CATEGORIES:
            raise ConfigError(
                f"{path}: contains the control or invisible character U+{ord(ch):04X} "
                f"({unicodedata.name(ch, 'unnamed')}); ids must be visible text"
            )
