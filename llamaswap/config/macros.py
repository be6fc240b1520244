"""llama-swap macros (reference §1.4): ``${name}`` expansion, typed where a value is only a macro.

Order matters: a macro may use only macros declared before it (``MODEL_ID`` is always first, model
macros override same-named globals in place). ``${PORT}`` and ``${PID}`` are expanded elsewhere:
``PORT`` after allocation, ``PID`` by the host when it runs ``cmdStop``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from llamaswap.config.model import ConfigError
from llamaswap.config.sources import format_scalar, type_name

MACRO_NAME_RE = re.compile(r"^[a-zA-Z0-9_-]+$")
MACRO_REF_RE = re.compile(r"\$\{([a-zA-Z0-9_.-]+)\}")
"""Any ``${...}`` that looks like a macro (dots included so a stray ``${env.X}`` is reported too)."""
RESERVED = frozenset({"PID", "PORT", "MODEL_ID"})
LATE_BOUND = frozenset({"PID", "PORT"})
"""Expanded after ordinary macros, so they pass through macro values untouched."""
MAX_EXPANDED = 64 * 1024
"""Characters a macro, or a value using macros, may expand to. Macros that repeat earlier macros
grow geometrically (500 bytes of YAML reached megabytes, and splitting such a ``cmd`` is
quadratic): past this the config is refused, naming the macro, instead of hanging or running out
of memory. A real ``cmd`` is a few hundred characters; Linux caps one argument at 128 KiB."""


def validate_macros(raw: Any, path: str) -> list[tuple[str, Any]]:
    """Check a ``macros`` mapping and return its (name, value) pairs in declaration order."""
    if raw is None:
        return []
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{path}: must be a mapping of macro name to value, got {type_name(raw)}")
    out: list[tuple[str, Any]] = []
    for name, value in raw.items():
        where = f"{path}.{name}"
        if not MACRO_NAME_RE.match(name) or len(name) >= 64:
            raise ConfigError(
                f"{where}: invalid macro name; use letters, digits, '_' or '-' (fewer than 64 characters)"
            )
        if name in RESERVED:
            raise ConfigError(
                f"{where}: {name} is a reserved macro name (reserved: PID, PORT, MODEL_ID)"
            )
        if isinstance(value, Mapping | list) or value is None:
            raise ConfigError(
                f"{where}: macro values must be a string, number or boolean, got {type_name(value)}"
            )
        if isinstance(value, str) and f"${{{name}}}" in value:
            raise ConfigError(f"{where}: macro refers to itself")
        out.append((name, value))
    return out


def resolve_macros(
    entries: list[tuple[str, Any, str]],
) -> dict[str, Any]:
    """Expand each macro with the ones declared before it; ``entries`` = (name, value, key path).

    A reference to a macro declared *later* is an error here (llama-swap would leave it unexpanded
    and fail later with a less helpful message).
    """
    position = {name: i for i, (name, _, _) in enumerate(entries)}
    resolved: dict[str, Any] = {}
    for i, (name, value, where) in enumerate(entries):
        if isinstance(value, str):
            for ref in MACRO_REF_RE.findall(value):
                if ref in position and position[ref] > i and ref not in resolved:
                    raise ConfigError(
                        f"{where}: uses '${{{ref}}}', which is declared after it; "
                        "a macro may only use macros declared before it"
                    )
            value = substitute(value, resolved, typed=True, where=where)
        resolved[name] = value
    return resolved


def substitute(value: Any, macros: Mapping[str, Any], *, typed: bool, where: str = "") -> Any:
    """Expand known macros in strings, recursing through lists and mapping values (not keys).

    With ``typed``, a string that is exactly ``${name}`` becomes the macro's own value (so
    ``port: ${PORT}`` stays an integer); otherwise values are interpolated as text. A result
    longer than :data:`MAX_EXPANDED` is an error naming ``where`` (the macro or key being expanded).
    """
    if isinstance(value, str):
        if "${" not in value:
            return value
        whole = MACRO_REF_RE.fullmatch(value)
        if typed and whole and whole.group(1) in macros:
            return macros[whole.group(1)]
        refs = [m.group(1) for m in MACRO_REF_RE.finditer(value) if m.group(1) in macros]
        size = len(value) + sum(len(format_scalar(macros[r])) for r in refs)
        if size > MAX_EXPANDED:  # measured before building it
            biggest = max(refs, key=lambda r: len(format_scalar(macros[r])))
            raise ConfigError(
                f"{where or 'macros'}: expands to about {size} characters, more than "
                f"{MAX_EXPANDED} (through macro '${{{biggest}}}'); macros repeating macros grow "
                "geometrically"
            )
        return MACRO_REF_RE.sub(
            lambda m: format_scalar(macros[m.group(1)]) if m.group(1) in macros else m.group(0),
            value,
        )
    if isinstance(value, Mapping):
        return {k: substitute(v, macros, typed=typed, where=where) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute(v, macros, typed=typed, where=where) for v in value]
    return value


def leftover_macros(value: Any, path: str, allow: frozenset[str] = frozenset()) -> None:
    """Raise for the first ``${...}`` still present anywhere in ``value``."""
    if isinstance(value, str):
        for ref in MACRO_REF_RE.findall(value):
            if ref in allow:
                continue
            if ref == "PORT" and path.startswith("models."):
                raise ConfigError(
                    f"{path}: uses ${{PORT}} but the model's cmd does not; "
                    "${PORT} is only allocated for models whose cmd uses it"
                )
            raise ConfigError(f"{path}: unknown macro '${{{ref}}}' found in {path}")
    elif isinstance(value, Mapping):
        for k, v in value.items():
            leftover_macros(v, f"{path}.{k}", allow)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            leftover_macros(v, f"{path}[{i}]", allow)
