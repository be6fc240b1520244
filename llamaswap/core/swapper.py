"""Eviction policy: which running models must go before ``target`` may load (reference §4.7).

A swapper is a pure function of its inputs; ``on_swap_start`` exists for logging and is called
exactly once per real swap.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol

from llamaswap.core.spec import GroupSpec

DEFAULT_GROUP = "(default)"


class Swapper(Protocol):
    def eviction_for(self, target: str, running: Sequence[str]) -> list[str]:
        """Models in ``running`` to stop before ``target`` loads (sorted, never ``target``)."""

    def on_swap_start(self, target: str, evict: Sequence[str]) -> None: ...


class GroupSwapper:
    """llama-swap's group router: ``swap``, ``exclusive`` and ``persistent`` groups.

    Models in no group form the implicit ``(default)`` group (swap, exclusive), so a config with no
    groups at all runs one model at a time.
    """

    def __init__(self, groups: Iterable[GroupSpec], models: Iterable[str]) -> None:
        self._groups: dict[str, GroupSpec] = {}
        self._group_of: dict[str, GroupSpec] = {}
        for group in groups:
            self._groups[group.name] = group
            for member in group.members:
                self._group_of[member] = group
        loose = tuple(sorted(m for m in models if m not in self._group_of))
        if loose:
            default = GroupSpec(DEFAULT_GROUP, loose, swap=True, exclusive=True)
            self._groups[DEFAULT_GROUP] = default
            for member in loose:
                self._group_of[member] = default
        self.swaps_started = 0

    def group_of(self, model: str) -> GroupSpec | None:
        return self._group_of.get(model)

    def eviction_for(self, target: str, running: Sequence[str]) -> list[str]:
        target_group = self._group_of.get(target)
        if target_group is None:
            return []
        evict = []
        for model in running:
            if model == target:
                continue
            group = self._group_of.get(model)
            if group is None:
                continue
            if group is target_group:
                if target_group.swap:
                    evict.append(model)
            elif target_group.exclusive and not group.persistent:
                evict.append(model)
        return sorted(evict)

    def on_swap_start(self, target: str, evict: Sequence[str]) -> None:
        self.swaps_started += 1


class EvictAllSwapper:
    """Everything else goes: the single-model guarantee of ``serial``, independent of groups."""

    def __init__(self) -> None:
        self.swaps_started = 0

    def eviction_for(self, target: str, running: Sequence[str]) -> list[str]:
        return sorted(m for m in running if m != target)

    def on_swap_start(self, target: str, evict: Sequence[str]) -> None:
        self.swaps_started += 1
