"""``expect:`` assertions: a tiny, safe expression grammar (never ``eval``).

    check  := sum CMP sum            CMP: == != <= >= < >
    sum    := prod (('+' | '-') prod)*
    prod   := atom (('*' | '/') atom)*
    atom   := NUMBER | PATH | '(' sum ')' | '-' atom
    PATH   := name ('.' name)*       e.g. fifo.latency.p99, serial.busy_fraction.idle

A path's first name is a scheduler (or ``trace``); the rest walk the summary mapping.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

_TOKEN = re.compile(
    r"\s*(?:(?P<num>\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?)"
    r"|(?P<path>[A-Za-z_][\w-]*(?:\.[A-Za-z_0-9][\w-]*)*)"
    r"|(?P<op>==|!=|<=|>=|<|>|[-+*/()]))"
)
_CMP: dict[str, Callable[[float, float], bool]] = {
    "==": operator.eq,
    "!=": operator.ne,
    "<=": operator.le,
    ">=": operator.ge,
    "<": operator.lt,
    ">": operator.gt,
}


class ExpectError(ValueError):
    """An assertion is malformed or names a metric that does not exist."""


class NoValueError(ExpectError):
    """The metric exists but this run has no value for it (say, no request completed): the
    assertion then fails instead of stopping the run."""


@dataclass(frozen=True)
class Outcome:
    text: str
    passed: bool
    detail: str


def _tokenize(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if not match or match.end() == pos:
            raise ExpectError(f"{text!r}: unexpected character at {pos + 1}: {text[pos:]!r}")
        kind = match.lastgroup or ""
        tokens.append((kind, match.group(kind)))
        pos = match.end()
    return tokens


class _Parser:
    def __init__(self, text: str, values: Mapping[str, Any] | None) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.pos = 0
        self.values = values
        """None: check the grammar only (every path reads as 1)."""
        self.seen: dict[str, float] = {}

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> tuple[str, str]:
        token = self.peek()
        if token is None:
            raise ExpectError(f"{self.text!r}: incomplete expression")
        self.pos += 1
        return token

    def check(self) -> tuple[bool, str]:
        left = self.sum()
        _kind, op = self.take()
        if op not in _CMP:
            raise ExpectError(f"{self.text!r}: expected a comparison (== != <= >= < >), got {op!r}")
        right = self.sum()
        if self.peek() is not None:
            raise ExpectError(f"{self.text!r}: unexpected {self.peek()[1]!r} after the comparison")  # type: ignore[index]
        detail = ", ".join(f"{k} = {v:g}" for k, v in self.seen.items())
        return _CMP[op](left, right), f"{left:g} {op} {right:g}" + (
            f" ({detail})" if detail else ""
        )

    def sum(self) -> float:
        value = self.prod()
        while (token := self.peek()) is not None and token[1] in ("+", "-"):
            self.take()
            rhs = self.prod()
            value = value + rhs if token[1] == "+" else value - rhs
        return value

    def prod(self) -> float:
        value = self.atom()
        while (token := self.peek()) is not None and token[1] in ("*", "/"):
            self.take()
            rhs = self.atom()
            if token[1] == "/" and rhs == 0:
                raise ExpectError(f"{self.text!r}: division by zero")
            value = value * rhs if token[1] == "*" else value / rhs
        return value

    def atom(self) -> float:
        kind, text = self.take()
        if kind == "num":
            return float(text)
        if kind == "path":
            if self.values is None:
                # Grammar only: distinct irrational stand-ins, so `a / (b - c)` is not taken for
                # a division by zero while `x / 0` and `a / (a - a)` still are.
                return self.seen.setdefault(text, math.sqrt(2) * (len(self.seen) + 1))
            value = resolve(self.values, text, self.text)
            self.seen[text] = value
            return value
        if text == "-":
            return -self.atom()
        if text == "(":
            value = self.sum()
            if self.take()[1] != ")":
                raise ExpectError(f"{self.text!r}: missing ')'")
            return value
        raise ExpectError(f"{self.text!r}: unexpected {text!r}")


def resolve(values: Mapping[str, Any], path: str, where: str = "") -> float:
    node: Any = values
    walked: list[str] = []
    for part in path.split("."):
        walked.append(part)
        if not isinstance(node, Mapping) or part not in node:
            options = sorted(node) if isinstance(node, Mapping) else []
            raise ExpectError(
                f"{where or path!r}: unknown metric {'.'.join(walked)!r}"
                + (f" (available here: {', '.join(map(str, options))})" if options else "")
            )
        node = node[part]
    if node is None:
        raise NoValueError(f"{where or path!r}: {path} has no value in this run (no data)")
    if isinstance(node, bool) or not isinstance(node, int | float):
        raise ExpectError(
            f"{where or path!r}: {path} is not a number (it is a {type(node).__name__})"
        )
    return float(node)


def evaluate(text: str, values: Mapping[str, Any]) -> Outcome:
    """Evaluate one assertion; raises ExpectError when it is malformed."""
    if not isinstance(text, str) or not text.strip():
        raise ExpectError(f"expect: each assertion must be a non-empty string, got {text!r}")
    passed, detail = _Parser(text, values).check()
    return Outcome(text, passed, detail)


def check_syntax(text: Any, where: str) -> None:
    """Reject a malformed assertion before a run (metric names are checked after it)."""
    if not isinstance(text, str) or not text.strip():
        raise ExpectError(f"{where}: each assertion must be a non-empty string, got {text!r}")
    try:
        _Parser(text, None).check()
    except ExpectError as exc:
        raise ExpectError(f"{where}: {exc}") from None


def evaluate_all(checks: list[str], values: Mapping[str, Any]) -> list[Outcome]:
    """Every assertion; one about a metric this run has no value for fails (it was not met)."""
    out = []
    for text in checks:
        try:
            out.append(evaluate(text, values))
        except NoValueError as exc:
            out.append(Outcome(text, False, str(exc)))
    return out
