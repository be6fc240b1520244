"""Text from clients made safe for one log line: no CR/LF, ANSI escapes or other control bytes.

A request path with ``\\r`` and ``\\x1b[...`` written raw into ``/logs`` could forge log lines or
repaint an operator's terminal. Everything outside printable text is shown as a Python-style
escape (``\\r``, ``\\x1b``, ``\\u202e``), so the line still says what was sent.
"""

from __future__ import annotations

import re

_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2066-\u2069\ufeff\\]")


def _escape(match: re.Match[str]) -> str:
    ch = match.group(0)
    if ch == "\\":
        return "\\\\"
    return ch.encode("unicode_escape").decode("ascii")


def printable(text: str, limit: int = 2000) -> str:
    """``text`` with unsafe characters escaped and cut to ``limit`` characters."""
    if len(text) > limit:
        text = text[:limit] + "..."
    elif text.isascii() and text.isprintable() and "\\" not in text:
        return text  # the usual case, without the regex
    return _UNSAFE.sub(_escape, text)
