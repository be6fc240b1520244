"""llama-swap command strings (``cmd``, ``cmdStop``): comment lines, continuations, shlex."""

from __future__ import annotations

import shlex

from llamaswap.config.model import ConfigError


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
