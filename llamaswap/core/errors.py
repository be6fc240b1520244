"""Why a request was refused or failed, independent of any transport.

Hosts map :class:`ErrorKind` to their own vocabulary (HTTP status codes in the daemon, the
``status`` column in simulator reports).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class ErrorKind(enum.Enum):
    NOT_FOUND = "not_found"
    """The model is not configured."""
    OVER_LIMIT = "over_limit"
    """Admission refused: the model's concurrency limit is reached."""
    LOAD_FAILED = "load_failed"
    """The model's process failed to start or to pass its health check."""
    UNLOADED = "unloaded"
    """The model was unloaded (API or shutdown of a model) while the request waited for it."""
    SHUTTING_DOWN = "shutting_down"
    """The router is shutting down."""
    UPSTREAM_CRASHED = "upstream_crashed"
    """The model's process exited while serving."""
    LOAD_ABORTED = "load_aborted"
    """The load this request waited for was aborted (e.g. stopped before it became ready)."""


@dataclass(frozen=True)
class RequestError:
    kind: ErrorKind
    message: str

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class LoadFailure:
    """Why a load did not end ready. ``kind`` says aborted or failed, so nobody parses ``message``."""

    kind: ErrorKind
    """``LOAD_ABORTED`` (stopped on purpose before it was ready) or ``LOAD_FAILED``."""
    message: str

    @classmethod
    def aborted(cls, reason: str) -> LoadFailure:
        return cls(ErrorKind.LOAD_ABORTED, f"load aborted: {reason}")

    @classmethod
    def failed(cls, message: str) -> LoadFailure:
        return cls(ErrorKind.LOAD_FAILED, message)

    def __str__(self) -> str:
        return self.message
