"""The trace importers' options: one table that validates them, converts them and documents them.

``trace import --option KEY=VALUE`` and a scenario's ``trace.options`` both go through
:func:`check_options`, so a wrong key names the valid ones (instead of leaking a Python signature)
and ``models=coder,chat`` becomes a list, not ten characters. reports/README.md lists the same
table; ``trace import --help`` prints it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple


class Option(NamedTuple):
    kind: str
    """``int``, ``float``, ``bool``, ``str`` or ``list`` (of strings; ``a,b`` on the command line)."""
    default: Any
    help: str


OPTIONS: dict[str, dict[str, Option]] = {
    "canonical": {},
    "azure": {
        "models": Option(
            "list",
            None,
            "one model name per file, in file order (default: each file name's last "
            "'_' part, e.g. code, conv)",
        ),
    },
    "mooncake": {
        "models": Option("int", 1, "spread the one model's requests over N models"),
        "assign": Option(
            "str", "session", "session (a conversation stays on one model) or stripe (i mod N)"
        ),
        "prefix": Option("str", "kimi", "model names: PREFIX, or PREFIX-0 .. PREFIX-(N-1)"),
    },
    "alibaba": {
        "succeeded_only": Option("bool", False, "keep only predict_status SUCCEED requests"),
    },
    "servegen": {
        "models": Option("int", 3, "clients are striped over N models"),
        "assign": Option("str", "stripe", "only stripe (client i -> model i mod N)"),
        "start": Option("float", 0.0, "first second of the day to use"),
        "duration": Option("float", 3600.0, "seconds to use from start"),
        "rate_scale": Option("float", 1.0, "multiply every window's rate"),
        "max_clients": Option("int", None, "use only the first N clients (chunk files)"),
        "seed": Option("int", 0, "seed of the arrival draws (a scenario passes its own seed)"),
        "prefix": Option("str", "", "model name prefix (default: the model directory's name)"),
    },
}

_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


class OptionError(ValueError):
    """An importer option is unknown or has the wrong type; the message lists the valid ones."""


def _convert(fmt: str, key: str, option: Option, value: Any) -> Any:
    where = f"format {fmt!r}: option {key}"
    kind = option.kind
    if kind == "list":
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        if isinstance(value, Sequence) and all(isinstance(v, str | int) for v in value):
            return [str(v) for v in value]
        raise OptionError(f"{where}: expected a list of names (a,b,c), got {value!r}")
    if kind == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str | int) and str(value).lower() in _TRUE | _FALSE:
            return str(value).lower() in _TRUE
        raise OptionError(f"{where}: expected true or false, got {value!r}")
    if kind in ("int", "float"):
        if value is None and option.default is None:
            return None
        if isinstance(value, bool):
            raise OptionError(f"{where}: expected a number, got {value!r}")
        try:
            number = float(value)
            if kind == "int":
                if not number.is_integer():
                    raise ValueError
                return int(number)
            return number
        except (TypeError, ValueError, OverflowError):
            kind_name = "an integer" if kind == "int" else "a number"
            raise OptionError(f"{where}: expected {kind_name}, got {value!r}") from None
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        return str(value)
    raise OptionError(f"{where}: expected a string, got {value!r}")


def check_options(fmt: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """Validated keyword arguments for ``fmt``'s importer (unknown keys name the valid ones)."""
    table = OPTIONS.get(fmt, {})
    out: dict[str, Any] = {}
    for key, value in options.items():
        option = table.get(str(key))
        if option is None:
            valid = ", ".join(table) or "none"
            raise OptionError(f"format {fmt!r}: unknown option {key!r} (valid: {valid})")
        out[str(key)] = _convert(fmt, str(key), option, value)
    return out


def parse_cli_options(fmt: str, items: Sequence[str]) -> dict[str, Any]:
    """``--option KEY=VALUE`` strings -> validated options (the text is converted per type)."""
    raw: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise OptionError(f"--option {item!r}: expected KEY=VALUE")
        raw[key.strip()] = value.strip()
    return check_options(fmt, raw)


def markdown_table() -> str:
    """The options as a Markdown table (reports/README.md embeds it; a test keeps them equal)."""
    lines = ["| format | option | type | default | meaning |", "|---|---|---|---|---|"]
    for fmt, table in OPTIONS.items():
        if not table:
            lines.append(f"| {fmt} | (none) | | | |")
        for key, option in table.items():
            default = "-" if option.default in (None, "") else f"`{option.default}`"
            lines.append(f"| {fmt} | `{key}` | {option.kind} | {default} | {option.help} |")
    return "\n".join(lines)
