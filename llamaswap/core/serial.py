"""``serial``: one request at a time, in exact arrival order, one model in memory at a time.

This is the policy for a box that can hold exactly one model and for users who need strict
ordering. Switching to another model first evicts *every* other running model, whatever the
groups say: the single-model guarantee belongs to the scheduler, not to the config. Same-model
requests are never batched or reordered.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar

from llamaswap.core.admission import load_failed, shutting_down, unloaded
from llamaswap.core.errors import LoadFailure
from llamaswap.core.ledger import Ledger
from llamaswap.core.process import ProcessState
from llamaswap.core.request import Request
from llamaswap.core.scheduler import Effects
from llamaswap.core.settings import PolicySettings
from llamaswap.core.spec import RoutingSpec
from llamaswap.core.swapper import EvictAllSwapper, Swapper


@dataclass(frozen=True, eq=False)
class SerialSettings(PolicySettings):
    """``serial`` reads no settings; whatever is written is kept as written."""

    NAME: ClassVar[str] = "serial"


class SerialScheduler:
    name = "serial"

    def __init__(self, spec: RoutingSpec, effects: Effects, swapper: Swapper | None = None) -> None:
        self._effects = effects
        # Group co-residency is deliberately ignored: see the module docstring.
        self._swapper: Swapper = EvictAllSwapper()
        self._ledger = Ledger(spec.models, effects)
        self._queue: deque[Request] = deque()
        self._serving: Request | None = None
        self._swapping: str | None = None
        self._abandoned: str | None = None
        """The swap we cancelled ourselves: its error is not a load failure of the model."""

    # ------------------------------------------------------------------ events

    def on_request(self, request: Request) -> None:
        if not self._ledger.admit(request):
            return
        self._queue.append(request)
        self._pump()
        self._abandon_useless_load()
        if self._queue and self._queue[-1] is request:
            self._effects.queue_changed(self._queue)

    def on_cancel(self, request: Request) -> None:
        try:
            self._queue.remove(request)
        except ValueError:
            return  # already granted or answered: nothing to undo
        self._ledger.withdraw(request)
        self._abandon_useless_load()
        self._effects.queue_changed(self._queue)

    def on_swap_done(self, model: str, failure: LoadFailure | None) -> None:
        if self._swapping != model:
            return
        self._swapping = None
        abandoned, self._abandoned = self._abandoned == model, None
        if failure is not None and not abandoned:
            # Fail the head and every queued request for this model: no N repeated doomed loads.
            failed = load_failed(model, failure)
            kept: deque[Request] = deque()
            for request in self._queue:
                if request.model == model:
                    self._ledger.fail(request, failed)
                else:
                    kept.append(request)
            self._queue = kept
            self._effects.queue_changed(self._queue)
        self._pump()

    def on_serve_done(self, request: Request) -> None:
        if request is not self._serving:
            return
        self._serving = None
        self._ledger.finished(request)
        self._pump()

    def on_unload(self, models: Sequence[str], token: Hashable) -> None:
        targets = set(models)
        kept: deque[Request] = deque()
        for request in self._queue:
            if request.model in targets:
                self._ledger.fail(request, unloaded(request.model))
            else:
                kept.append(request)
        self._queue = kept
        if self._swapping in targets:
            self._swapping = None  # the router aborts it; its SwapDone is ignored above
            self._abandoned = None
        self._effects.stop_processes(sorted(targets), token)
        self._effects.queue_changed(self._queue)
        self._pump()

    def on_shutdown(self) -> None:
        for request in self._queue:
            self._ledger.fail(request, shutting_down())
        self._queue.clear()
        self._swapping = None
        self._abandoned = None
        self._effects.queue_changed(self._queue)

    def on_timer(self, key: Hashable) -> None:
        """``serial`` sets no timers."""

    def on_upstream_slots(self, model: str, slots: int) -> None:
        """``serial`` has one request in flight, whatever the upstream could take."""

    def snapshot(self) -> Mapping[str, object]:
        return {
            "queued": len(self._queue),
            "swapping": [self._swapping] if self._swapping else [],
            "in_flight": dict(self._ledger.in_flight),
            "reserved": dict(self._ledger.admission.reserved),
        }

    # ------------------------------------------------------------------ decisions

    def _pump(self) -> None:
        """Advance the head of the line as far as it goes without waiting."""
        changed = False
        while self._queue and self._serving is None and self._swapping is None:
            head = self._queue[0]
            others = [m for m in self._effects.running_models() if m != head.model]
            if self._effects.model_state(head.model) is ProcessState.READY and not others:
                self._queue.popleft()
                changed = True
                if self._ledger.grant(head):
                    self._serving = head
                continue
            evict = self._swapper.eviction_for(head.model, others)
            self._swapping = head.model
            self._swapper.on_swap_start(head.model, evict)
            self._effects.start_swap(head.model, evict)
        if changed:
            self._effects.queue_changed(self._queue)

    def _abandon_useless_load(self) -> None:
        """Load cancellation: the head of the line needs another model than the one loading, so
        the load could only be evicted again before anyone used it. Later requests for that model
        load it in their turn. With nobody waiting at all, the load is left to finish."""
        swapping = self._swapping
        if (
            swapping is not None
            and self._abandoned is None
            and self._queue
            and self._queue[0].model != swapping
        ):
            self._abandoned = swapping
            self._effects.cancel_swap(swapping)
