"""The core's view of a request: identity and model. Hosts keep the payload.

Frozen: the request belongs to the host that made it, and the core never writes to it. What the
core learns about a request (its arrival time, say) the scheduler keeps in its own records.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass


@dataclass(eq=False, frozen=True, slots=True)
class Request:
    """One admitted-or-not request. Identity is the object; ``id`` is for humans and logs."""

    id: Hashable
    model: str
    """Real model id (aliases already resolved by the host)."""
    arrival: float = 0.0
    """The host's own stamp, if it keeps one (for its metrics). The core neither reads nor writes
    it: a scheduler that needs arrival times stamps them from the clock itself."""

    def __repr__(self) -> str:
        return f"Request({self.id!r}, {self.model!r})"
