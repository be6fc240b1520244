"""The core's view of a request: identity, model and arrival time. Hosts keep the payload."""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass


@dataclass(eq=False, slots=True)
class Request:
    """One admitted-or-not request. Identity is the object; ``id`` is for humans and logs."""

    id: Hashable
    model: str
    """Real model id (aliases already resolved by the host)."""
    arrival: float = 0.0
    """Clock time at arrival; set by the router when the request enters the core."""

    def __repr__(self) -> str:
        return f"Request({self.id!r}, {self.model!r})"
