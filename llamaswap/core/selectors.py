"""Selectors: one public name routed to one of several targets per request (reference §4.10).

Why in the core: the choice reads model states and the selector's own in-flight counts, and the
daemon and the simulator must make it identically, so it is a pure decision here; hosts pass the
states in, rewrite the request to the returned target and call :meth:`Selectors.release` exactly
once when that request ends.

Strategies, as llama-swap's ``internal/server/selector.go``:

* ``pin``: always the first target.
* ``warm``: the first target whose process is ready; else the first starting; else the first.
* ``spillover``: each target is *active*, *cold* or *skipped* (table below). No active target: the
  first cold one. Else if the least-busy active target has fewer than ``spillover`` requests of
  this selector in flight: that one (round-robin among ties); else the first cold target if any;
  else the least-busy active one.

=============================================  ===========  ========
target state                                   in flight>0  class
=============================================  ===========  ========
local stopping / shutdown                      any          skipped
local ready / starting                         any          active
local stopped / not seen yet                   yes          active
local stopped / not seen yet                   no           cold
peer                                           yes          active
peer                                           no           cold
=============================================  ===========  ========
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass

from llamaswap.core.process import ProcessState


class Strategy(enum.Enum):
    PIN = "pin"
    WARM = "warm"
    SPILLOVER = "spillover"


@dataclass(frozen=True)
class Target:
    name: str
    """As configured (a model id, alias or peer name): what the request is rewritten to."""
    key: str
    """What it resolves to: the real local model id, or the peer FQN."""
    local: bool


@dataclass(frozen=True)
class SelectorSpec:
    id: str
    strategy: Strategy
    targets: tuple[Target, ...]
    spillover: int = 1


class TargetClass(enum.Enum):
    ACTIVE = "active"
    COLD = "cold"
    SKIPPED = "skipped"


_GONE = (ProcessState.STOPPING, ProcessState.SHUTDOWN)
_UP = (ProcessState.READY, ProcessState.STARTING)


def classify(target: Target, state: ProcessState | None, in_flight: int) -> TargetClass:
    """One row of the module's table."""
    if target.local and state in _GONE:
        return TargetClass.SKIPPED
    if (target.local and state in _UP) or in_flight > 0:
        return TargetClass.ACTIVE
    return TargetClass.COLD


class NoTargetError(Exception):
    """Every spillover target is stopping or shut down (llama-swap answers 503)."""


class Selectors:
    """The selectors of one config and their spillover bookkeeping (one per running config)."""

    def __init__(self, specs: Mapping[str, SelectorSpec]) -> None:
        self.specs = dict(specs)
        self._in_flight: dict[str, dict[str, int]] = {sid: {} for sid in self.specs}
        self._rr: dict[str, int] = dict.fromkeys(self.specs, 0)

    def in_flight(self, selector: str, key: str) -> int:
        return self._in_flight[selector].get(key, 0)

    def choose(self, selector: str, states: Mapping[str, ProcessState]) -> Target:
        """The target for one request to ``selector``; ``states``: local model id -> state.

        A spillover choice is reserved: the host must :meth:`release` it when the request ends.
        """
        spec = self.specs[selector]
        if spec.strategy is Strategy.PIN:
            return spec.targets[0]
        if spec.strategy is Strategy.WARM:
            for wanted in _UP:
                for target in spec.targets:
                    if states.get(target.key) is wanted:
                        return target
            return spec.targets[0]
        return self._spillover(spec, states)

    def _spillover(self, spec: SelectorSpec, states: Mapping[str, ProcessState]) -> Target:
        counts = self._in_flight[spec.id]
        active: list[Target] = []
        cold: list[Target] = []
        for target in spec.targets:
            kind = classify(target, states.get(target.key), counts.get(target.key, 0))
            if kind is TargetClass.ACTIVE:
                active.append(target)
            elif kind is TargetClass.COLD:
                cold.append(target)
        if not active:
            if not cold:
                raise NoTargetError(f"selector {spec.id!r} has no available spillover targets")
            return self._reserve(spec.id, cold[0])
        least = min(counts.get(t.key, 0) for t in active)
        if least >= spec.spillover and cold:
            return self._reserve(spec.id, cold[0])
        tied = [t for t in active if counts.get(t.key, 0) == least]
        chosen = tied[self._rr[spec.id] % len(tied)]
        self._rr[spec.id] += 1
        return self._reserve(spec.id, chosen)

    def _reserve(self, selector: str, target: Target) -> Target:
        counts = self._in_flight[selector]
        counts[target.key] = counts.get(target.key, 0) + 1
        return target

    def release(self, selector: str, target: Target) -> None:
        """A request routed by ``choose`` ended (only spillover keeps counts)."""
        counts = self._in_flight.get(selector)
        if counts is None or self.specs[selector].strategy is not Strategy.SPILLOVER:
            return
        left = counts.get(target.key, 0) - 1
        if left < 0:
            raise AssertionError(f"selector {selector!r}: release of {target.key!r} never reserved")
        counts[target.key] = left
