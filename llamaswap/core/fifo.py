"""llama-swap's FIFO scheduler, with its exact decision tree (reference §4.3).

Same-model requests are batched: a request for a ready model is served at once unless a swap in
progress plans to evict that model; requests that would collide with a swap in progress, or evict a
model that is still serving, wait in a priority-ordered queue that is re-examined whenever a swap
finishes, a model goes idle or an unload happens.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field

from llamaswap.core.admission import Admission, load_failed, not_found, shutting_down, unloaded
from llamaswap.core.errors import RequestError
from llamaswap.core.process import ProcessState
from llamaswap.core.request import Request
from llamaswap.core.scheduler import Effects
from llamaswap.core.spec import RoutingSpec
from llamaswap.core.swapper import Swapper


@dataclass
class _ActiveSwap:
    evict: tuple[str, ...]
    waiters: list[Request] = field(default_factory=list)


class FifoScheduler:
    name = "fifo"

    def __init__(self, spec: RoutingSpec, effects: Effects, swapper: Swapper) -> None:
        self._effects = effects
        self._swapper = swapper
        self._admission = Admission(spec.models)
        priorities = spec.settings_for("fifo").get("priority", {}) or {}
        self._priority: dict[str, int] = {str(k): int(v) for k, v in priorities.items()}
        self._active: dict[str, _ActiveSwap] = {}
        self._in_flight: Counter[str] = Counter()
        self._queue: list[Request] = []
        self._granted: set[Request] = set()

    # ------------------------------------------------------------------ events

    def on_request(self, request: Request) -> None:
        refusal = self._admission.try_admit(request.model)
        if refusal is not None:
            self._effects.grant_error(request, refusal)
            return
        if not self._dispatch(request):
            self._enqueue(request)
            self._effects.queue_changed(self._queue)

    def on_cancel(self, request: Request) -> None:
        if request in self._queue:
            self._queue.remove(request)
            self._admission.release(request.model)
            self._effects.queue_changed(self._queue)
            return
        for model, swap in self._active.items():
            if request in swap.waiters:
                swap.waiters.remove(request)
                self._admission.release(request.model)
                if not swap.waiters:
                    self._abandon_if_others_wait(model)
                return

    def on_swap_done(self, model: str, error: str | None) -> None:
        swap = self._active.pop(model, None)
        if swap is not None:
            for waiter in swap.waiters:
                if error is None:
                    self._grant(waiter)
                else:
                    self._fail(waiter, load_failed(model, error))
        # Unlike llama-swap (quirk 12) we drain even for a swap unload removed: it cannot hurt and
        # guarantees nothing stays queued behind a swap that no longer exists.
        self._drain()

    def on_serve_done(self, request: Request) -> None:
        if request not in self._granted:
            return
        self._granted.discard(request)
        model = request.model
        self._in_flight[model] -= 1
        self._admission.release(model)
        if self._in_flight[model] <= 0:
            del self._in_flight[model]
            self._drain()

    def on_unload(self, models: Sequence[str], token: Hashable) -> None:
        targets = set(models)
        for model in sorted(targets & set(self._active)):
            swap = self._active.pop(model)
            for waiter in swap.waiters:
                self._fail(waiter, unloaded(model))
        kept = []
        for request in self._queue:
            if request.model in targets:
                self._fail(request, unloaded(request.model))
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
                self._fail(waiter, shutting_down())
        self._active.clear()
        for request in self._queue:
            self._fail(request, shutting_down())
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
            "in_flight": dict(self._in_flight),
            "reserved": dict(self._admission.reserved),
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
            self._fail(request, not_found(model))
            return True
        running = sorted((set(self._effects.running_models()) | set(self._active)) - {model})
        evict = tuple(self._swapper.eviction_for(model, running))
        colliding = self._collides(model, evict)
        if state is ProcessState.READY and not evict and not colliding:
            self._grant(request)
            return True
        if colliding or any(self._in_flight[m] > 0 for m in evict):
            return False
        self._active[model] = _ActiveSwap(evict, [request])
        self._swapper.on_swap_start(model, evict)
        self._effects.start_swap(model, evict)
        return True

    def _collides(self, target: str, evict: tuple[str, ...]) -> bool:
        evict_set = set(evict)
        for other, swap in self._active.items():
            if other == target:
                continue
            if other in evict_set or target in swap.evict or evict_set.intersection(swap.evict):
                return True
        return False

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
        """Load cancellation: nobody waits for this load and other work is queued, so abort it."""
        if self._queue:
            self._effects.cancel_swap(model)

    # ------------------------------------------------------------------ answers

    def _grant(self, request: Request) -> None:
        if self._effects.grant_serve(request):
            self._in_flight[request.model] += 1
            self._granted.add(request)
        else:
            self._admission.release(request.model)

    def _fail(self, request: Request, error: RequestError) -> None:
        self._admission.release(request.model)
        self._effects.grant_error(request, error)
