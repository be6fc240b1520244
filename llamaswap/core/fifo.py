"""llama-swap's FIFO scheduler, with its exact decision tree (reference §4.3).

Same-model requests are batched: a request for a ready model is served at once unless a swap in
progress plans to evict that model; requests that would collide with a swap in progress, or evict a
model that is still serving, wait in a priority-ordered queue that is re-examined whenever a swap
finishes, a model goes idle or an unload happens.

One extension, on by default and off with ``cancelLoads: false``: a load nobody waits for any more
(its last waiter cancelled) is aborted when another model has queued work (llama-swap #727), so the
GPU goes to that work instead of a model nobody asked for. llama-swap lets such a load finish, and
so does this scheduler with the setting off. (The other deliberate difference, quirk 12, is noted
in ``on_swap_done``.)
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from llamaswap.core.admission import load_failed, not_found, shutting_down, unloaded
from llamaswap.core.errors import LoadFailure
from llamaswap.core.ledger import Ledger, collides
from llamaswap.core.process import ProcessState
from llamaswap.core.request import Request
from llamaswap.core.scheduler import Effects
from llamaswap.core.settings import PolicySettings, boolean, integer
from llamaswap.core.spec import RoutingSpec
from llamaswap.core.swapper import Swapper


@dataclass(frozen=True, eq=False)
class FifoSettings(PolicySettings):
    """``routing.scheduler.settings.fifo``."""

    NAME: ClassVar[str] = "fifo"
    MODEL_KEYS: ClassVar[tuple[str, ...]] = ("priority",)
    UNKNOWN_MODELS_WARN: ClassVar[bool] = True
    """llama-swap's own example config names illustrative models in ``priority``."""
    KNOWN_KEYS: ClassVar[frozenset[str] | None] = frozenset({"priority", "cancelLoads"})

    priority: Mapping[str, int] = field(default_factory=dict)
    cancel_loads: bool = True
    """``cancelLoads``: abort a load nobody waits for when other work is queued (llama-swap: no)."""

    @classmethod
    def parse(cls, raw: Mapping[str, Any], models: Sequence[str]) -> FifoSettings:
        where = cls.where()
        priorities = raw.get("priority") or {}
        if not isinstance(priorities, Mapping):
            raise ValueError(f"{where}.priority: must be a mapping, got {priorities!r}")
        cancel = raw.get("cancelLoads")
        return cls(
            raw=dict(raw),
            priority={str(k): integer(v, f"{where}.priority.{k}") for k, v in priorities.items()},
            cancel_loads=True if cancel is None else boolean(cancel, f"{where}.cancelLoads"),
        )


@dataclass
class _ActiveSwap:
    evict: tuple[str, ...]
    waiters: list[Request] = field(default_factory=list)


class FifoScheduler:
    name = "fifo"

    def __init__(self, spec: RoutingSpec, effects: Effects, swapper: Swapper) -> None:
        self.settings = FifoSettings.of(spec)
        self._effects = effects
        self._swapper = swapper
        self._ledger = Ledger(spec.models, effects)
        self._priority = self.settings.priority
        self._active: dict[str, _ActiveSwap] = {}
        self._queue: list[Request] = []

    # ------------------------------------------------------------------ events

    def on_request(self, request: Request) -> None:
        if not self._ledger.admit(request):
            return
        if not self._dispatch(request):
            self._enqueue(request)
            self._effects.queue_changed(self._queue)

    def on_cancel(self, request: Request) -> None:
        if request in self._queue:
            self._queue.remove(request)
            self._ledger.withdraw(request)
            self._effects.queue_changed(self._queue)
            return
        for model, swap in self._active.items():
            if request in swap.waiters:
                swap.waiters.remove(request)
                self._ledger.withdraw(request)
                if not swap.waiters:
                    self._abandon_if_others_wait(model)
                return

    def on_swap_done(self, model: str, failure: LoadFailure | None) -> None:
        swap = self._active.pop(model, None)
        if swap is not None:
            for waiter in swap.waiters:
                if failure is None:
                    self._ledger.grant(waiter)
                else:
                    self._ledger.fail(waiter, load_failed(model, failure))
        # Unlike llama-swap (quirk 12) we drain even for a swap unload removed: it cannot hurt and
        # guarantees nothing stays queued behind a swap that no longer exists.
        self._drain()

    def on_serve_done(self, request: Request) -> None:
        if self._ledger.finished(request) is not None and not self._ledger.serving(request.model):
            self._drain()

    def on_unload(self, models: Sequence[str], token: Hashable) -> None:
        targets = set(models)
        for model in sorted(targets & set(self._active)):
            swap = self._active.pop(model)
            for waiter in swap.waiters:
                self._ledger.fail(waiter, unloaded(model))
        kept = []
        for request in self._queue:
            if request.model in targets:
                self._ledger.fail(request, unloaded(request.model))
            else:
                kept.append(request)
        removed = len(kept) != len(self._queue)
        self._queue = kept
        if removed:
            self._effects.queue_changed(self._queue)
        self._effects.stop_processes(sorted(targets), token)
        self._drain()

    def on_shutdown(self) -> None:
        for model in sorted(self._active):
            for waiter in self._active[model].waiters:
                self._ledger.fail(waiter, shutting_down())
        self._active.clear()
        for request in self._queue:
            self._ledger.fail(request, shutting_down())
        self._queue = []
        self._effects.queue_changed(self._queue)

    def on_timer(self, key: Hashable) -> None:
        """FIFO sets no timers."""

    def on_upstream_slots(self, model: str, slots: int) -> None:
        """FIFO hands the upstream every request for its model; its slot count changes nothing."""

    def snapshot(self) -> Mapping[str, object]:
        return {
            "queued": len(self._queue),
            "swapping": sorted(self._active),
            "in_flight": dict(self._ledger.in_flight),
            "reserved": dict(self._ledger.admission.reserved),
        }

    # ------------------------------------------------------------------ decisions

    def _dispatch(self, request: Request) -> bool:
        """Join, serve or start a swap for ``request``; False means it must wait in the queue."""
        model = request.model
        swap = self._active.get(model)
        if swap is not None:
            swap.waiters.append(request)
            return True
        state = self._effects.model_state(model)
        if state is None:
            self._ledger.fail(request, not_found(model))
            return True
        running = sorted((set(self._effects.running_models()) | set(self._active)) - {model})
        evict = tuple(self._swapper.eviction_for(model, running))
        colliding = collides(model, evict, self._active)
        if state is ProcessState.READY and not evict and not colliding:
            self._ledger.grant(request)
            return True
        if colliding or any(self._ledger.serving(m) for m in evict):
            return False
        self._active[model] = _ActiveSwap(evict, [request])
        self._swapper.on_swap_start(model, evict)
        self._effects.start_swap(model, evict)
        return True

    def _enqueue(self, request: Request) -> None:
        priority = self._priority.get(request.model, 0)
        if not self._queue or self._priority.get(self._queue[-1].model, 0) >= priority:
            # The common case (equal priorities): the tail is the place; no O(queue) scan.
            self._queue.append(request)
            return
        for index, queued in enumerate(self._queue):
            if self._priority.get(queued.model, 0) < priority:
                self._queue.insert(index, request)
                return
        self._queue.append(request)

    def _drain(self) -> None:
        if not self._queue:
            return
        before = len(self._queue)
        waiting = self._queue
        self._queue = []
        for request in waiting:
            if not self._dispatch(request):
                self._queue.append(request)
        if len(self._queue) != before:
            self._effects.queue_changed(self._queue)

    def _abandon_if_others_wait(self, model: str) -> None:
        """Load cancellation (``cancelLoads``): nobody waits for this load and other work is
        queued, so abort it."""
        if self._queue and self.settings.cancel_loads:
            self._effects.cancel_swap(model)
