"""Time as an argument, not a global.

The core reads the time only through :class:`Clock` and asks for timers through it. A timer does not
run a callback: when it is due the *host* feeds the event it carries back into
:meth:`Router.handle`, so timer firings travel the same single event path as everything else.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from typing import Protocol


class TimerHandle(Protocol):
    def cancel(self) -> None:
        """Stop the timer; cancelling an already fired or cancelled timer is a no-op."""


class Clock(Protocol):
    def now(self) -> float:
        """Current time in seconds (any epoch; only differences matter)."""

    def call_at(self, when: float, event: object) -> TimerHandle:
        """Deliver ``event`` to the router at time ``when`` (immediately if ``when`` is past)."""


class _ManualTimer:
    __slots__ = ("cancelled", "event", "when")

    def __init__(self, when: float, event: object) -> None:
        self.when = when
        self.event = event
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class ManualClock:
    """A clock that moves only when told to: for tests and property-based exploration.

    ``sink`` receives each due timer's event (normally ``router.handle``).
    """

    def __init__(self, start: float = 0.0, sink: Callable[[object], None] | None = None) -> None:
        self._now = start
        self._heap: list[tuple[float, int, _ManualTimer]] = []
        self._seq = itertools.count()
        self.sink = sink

    def now(self) -> float:
        return self._now

    def call_at(self, when: float, event: object) -> TimerHandle:
        timer = _ManualTimer(when, event)
        heapq.heappush(self._heap, (when, next(self._seq), timer))
        return timer

    def next_deadline(self) -> float | None:
        """When the earliest live timer is due, or None."""
        while self._heap and self._heap[0][2].cancelled:
            heapq.heappop(self._heap)
        return self._heap[0][0] if self._heap else None

    def pending(self) -> int:
        return sum(1 for _, _, t in self._heap if not t.cancelled)

    def pending_events(self) -> list[object]:
        """The live timers' events, earliest first (for tests that check what is armed)."""
        return [t.event for _, _, t in sorted(self._heap) if not t.cancelled]

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds``, firing every timer that falls due on the way."""
        self.advance_to(self._now + seconds)

    MAX_FIRINGS = 100_000
    """Per ``advance``: a timer that keeps re-arming itself in the past is a bug, not a hang."""

    def advance_to(self, when: float) -> None:
        for _ in range(self.MAX_FIRINGS):
            deadline = self.next_deadline()
            if deadline is None or deadline > when:
                break
            self.fire_next()
        else:
            raise RuntimeError(
                f"timer storm: {self.MAX_FIRINGS} timers fired before t={when:g}; "
                "is a timer re-arming itself at or before now?"
            )
        self._now = max(self._now, when)

    def fire_next(self) -> bool:
        """Jump to the earliest live timer and fire it; False when none is pending."""
        deadline = self.next_deadline()
        if deadline is None:
            return False
        _, _, timer = heapq.heappop(self._heap)
        self._now = max(self._now, timer.when)
        timer.cancelled = True
        if self.sink is None:
            raise RuntimeError("ManualClock has no sink to deliver timer events to")
        self.sink(timer.event)
        return True
