"""The bookkeeping every scheduler does the same way: reservations, grants, failures, collisions.

Schedulers differ in *whom* they grant and *when*; how a grant, a failure or a finished request is
booked (admission reservation, in-flight count, grant time) is shared here, so the exactly-once
rules of ``core.admission`` hold for every policy by construction.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Protocol

from llamaswap.core.admission import Admission
from llamaswap.core.errors import RequestError
from llamaswap.core.request import Request
from llamaswap.core.scheduler import Effects
from llamaswap.core.spec import ModelSpec


class Ledger:
    """One scheduler's reservations and in-flight requests."""

    def __init__(self, models: Mapping[str, ModelSpec], effects: Effects) -> None:
        self.admission = Admission(models)
        self.in_flight: Counter[str] = Counter()
        """Granted and not yet finished, per model (no zero entries)."""
        self._effects = effects
        self._granted: dict[Request, float] = {}

    def admit(self, request: Request) -> bool:
        """Reserve a slot for ``request``, or answer it with the refusal and say False."""
        refusal = self.admission.try_admit(request.model)
        if refusal is not None:
            self._effects.grant_error(request, refusal)
            return False
        return True

    def grant(self, request: Request) -> bool:
        """Hand ``request`` to its model; a caller that is gone gives its reservation back."""
        if self._effects.grant_serve(request):
            self.in_flight[request.model] += 1
            self._granted[request] = self._effects.now()
            return True
        self.admission.release(request.model)
        return False

    def fail(self, request: Request, error: RequestError) -> None:
        self.admission.release(request.model)
        self._effects.grant_error(request, error)

    def withdraw(self, request: Request) -> None:
        """The caller cancelled before anything was granted: only the reservation goes."""
        self.admission.release(request.model)

    def finished(self, request: Request) -> float | None:
        """Book a ``ServeDone``: the request's grant time, or None if it was not granted here."""
        granted_at = self._granted.pop(request, None)
        if granted_at is None:
            return None
        model = request.model
        self.in_flight[model] -= 1
        if self.in_flight[model] <= 0:
            del self.in_flight[model]
        self.admission.release(model)
        return granted_at

    def serving(self, model: str) -> bool:
        return self.in_flight[model] > 0


class _Swap(Protocol):
    @property
    def evict(self) -> tuple[str, ...]: ...


def collides(target: str, evict: tuple[str, ...], active: Mapping[str, _Swap]) -> bool:
    """Would a swap to ``target`` evicting ``evict`` overlap a swap in ``active``?

    llama-swap's rule: it may not evict another swap's target, have its own target evicted by one,
    or share a victim with one.
    """
    evict_set = set(evict)
    for other, swap in active.items():
        if other == target:
            continue
        if other in evict_set or target in swap.evict or evict_set.intersection(swap.evict):
            return True
    return False
