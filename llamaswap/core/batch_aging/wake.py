"""The scheduler's one wake-up timer: re-armed only when its moment changes.

Every pump asks for a wake-up at the next moment a rule may change its verdict; most pumps ask for
the moment already armed, and re-arming it each time would flood the clock with dead timers. A
superseded timer may still fire (cancelling is best effort across hosts): its key says it is stale.
"""

from __future__ import annotations

import math
from collections.abc import Hashable

from llamaswap.core.clock import TimerHandle
from llamaswap.core.scheduler import Effects


class WakeTimer:
    def __init__(self, effects: Effects) -> None:
        self._effects = effects
        self._handle: TimerHandle | None = None
        self._when = math.inf
        self._seq = 0

    def set(self, when: float) -> None:
        """Wake at ``when`` (inf: not at all), replacing the armed wake-up if it differs."""
        if when == self._when:
            return
        self.cancel()
        if when < math.inf:
            self._seq += 1
            self._when = when
            self._handle = self._effects.call_at(when, ("wake", self._seq))

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._handle = None
        self._when = math.inf

    def fired(self, key: Hashable) -> bool:
        """Is ``key`` the armed wake-up (then it is spent), not a superseded one?"""
        if key != ("wake", self._seq):
            return False
        self._handle = None
        self._when = math.inf
        return True
