"""Per-model admission limits shared by every scheduler (reference §4.3 "Admission").

A reservation is taken when a request is admitted and released exactly once: when it fails, is
cancelled, or finishes serving. The limit therefore bounds queued + swap-waiting + serving.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping

from llamaswap.core.errors import ErrorKind, LoadFailure, RequestError
from llamaswap.core.spec import ModelSpec


class Admission:
    def __init__(self, models: Mapping[str, ModelSpec]) -> None:
        self._limits = {model_id: spec.limit() for model_id, spec in models.items()}
        self.reserved: Counter[str] = Counter()

    def try_admit(self, model: str) -> RequestError | None:
        """Reserve a slot, or say why not."""
        limit = self._limits.get(model)
        if limit is None:
            return not_found(model)
        if self.reserved[model] >= limit:
            return RequestError(
                ErrorKind.OVER_LIMIT, f"Too many requests: {model!r} already has {limit} admitted"
            )
        self.reserved[model] += 1
        return None

    def release(self, model: str) -> None:
        if self.reserved[model] <= 0:
            raise AssertionError(f"released a reservation {model!r} does not hold")
        self.reserved[model] -= 1
        if not self.reserved[model]:
            del self.reserved[model]


def unloaded(model: str) -> RequestError:
    return RequestError(
        ErrorKind.UNLOADED, f"model {model!r} was unloaded while the request waited"
    )


def shutting_down() -> RequestError:
    return RequestError(ErrorKind.SHUTTING_DOWN, "llamaswap is shutting down")


def load_failed(model: str, failure: LoadFailure) -> RequestError:
    return RequestError(failure.kind, f"unable to load model {model!r}: {failure.message}")


def not_found(model: str) -> RequestError:
    return RequestError(ErrorKind.NOT_FOUND, f"model {model!r} is not configured")
