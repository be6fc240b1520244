"""The waiting line: per model, the requests not yet granted, oldest first, with arrival times.

The scheduler stamps each request's arrival when it enters (the host's request object is never
written to) and forgets it when the request is answered. Each model's batch keeps the sum of its
arrival times, so a batch's total waiting time (``count * now - sum``) costs O(1); every change
to a batch goes through this class, so the sum cannot drift from the requests it sums.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator, Sequence

from llamaswap.core.request import Request


class _Batch:
    __slots__ = ("arrival_sum", "requests")

    def __init__(self) -> None:
        self.requests: deque[Request] = deque()
        self.arrival_sum = 0.0


class WaitingLine:
    def __init__(self) -> None:
        self._batches: dict[str, _Batch] = {}
        """Models with queued requests (never an empty batch)."""
        self._arrival: dict[Request, float] = {}
        """Every request held and not yet answered: queued, or joined to a load in progress."""

    # ------------------------------------------------------------------ reading

    def __iter__(self) -> Iterator[str]:
        """The models with queued requests."""
        return iter(self._batches)

    def __contains__(self, model: object) -> bool:
        return model in self._batches

    def __len__(self) -> int:
        return sum(len(b.requests) for b in self._batches.values())

    def queued(self, model: str) -> Sequence[Request]:
        batch = self._batches.get(model)
        return batch.requests if batch is not None else ()

    def count(self, model: str) -> int:
        return len(self.queued(model))

    def oldest(self, model: str) -> float:
        """Arrival of the model's oldest queued request (the model must have one)."""
        return self._arrival[self._batches[model].requests[0]]

    def arrival_sum(self, model: str) -> float:
        batch = self._batches.get(model)
        return batch.arrival_sum if batch is not None else 0.0

    def arrival(self, request: Request) -> float:
        return self._arrival[request]

    def holds(self, request: Request) -> bool:
        """Still queued (not joined to a load, granted or answered)."""
        batch = self._batches.get(request.model)
        return batch is not None and request in batch.requests

    # ------------------------------------------------------------------ changing

    def add(self, request: Request, now: float) -> None:
        self._arrival[request] = now
        batch = self._batches.setdefault(request.model, _Batch())
        batch.requests.append(request)
        batch.arrival_sum = batch.arrival_sum + now

    def take(self, model: str, limit: int | None = None) -> list[Request]:
        """The model's queued requests, oldest first: all of them, or at most ``limit``.

        Taken requests leave the queue but stay known (their arrival) until ``answered``.
        """
        batch = self._batches.get(model)
        if batch is None:
            return []
        if limit is None or limit >= len(batch.requests):
            del self._batches[model]
            return list(batch.requests)
        taken = [batch.requests.popleft() for _ in range(limit)]
        batch.arrival_sum -= sum(self._arrival[r] for r in taken)
        return taken

    def put_back(self, model: str, requests: Sequence[Request]) -> None:
        """Return taken ``requests`` (oldest first) to the front of the model's queue."""
        if not requests:
            return
        batch = self._batches.setdefault(model, _Batch())
        batch.requests.extendleft(reversed(requests))
        batch.arrival_sum = batch.arrival_sum + sum(self._arrival[r] for r in requests)

    def cancel(self, request: Request) -> None:
        """A queued request's caller left: out of the queue, and forgotten."""
        batch = self._batches[request.model]
        batch.requests.remove(request)
        batch.arrival_sum = batch.arrival_sum - self._arrival.pop(request)
        if not batch.requests:
            del self._batches[request.model]

    def drop(self, model: str) -> list[Request]:
        """Remove the model's whole queue (an unload); the caller answers and forgets them."""
        batch = self._batches.pop(model, None)
        return list(batch.requests) if batch is not None else []

    def answered(self, requests: Iterable[Request]) -> None:
        """These requests were granted, failed or cancelled: forget their arrival."""
        for request in requests:
            del self._arrival[request]

    def clear(self) -> None:
        self._batches.clear()
        self._arrival.clear()
