"""The batch-aging scheduler: events in, one numbered decision table per waiting model.

After every event ``_pump`` ranks the waiting models (claims first), picks the *head* claim and
the models it drains, then walks the ranked models through :data:`DECISIONS`: the first row
whose condition holds gives the verdict (pass, join, serve or load). The table is the engine: a
model no row decides is an error, and a new rule is one new row.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from llamaswap.core.admission import load_failed, shutting_down, unloaded
from llamaswap.core.batch_aging.claims import ClaimRule, PlannedClaims, ReactiveClaims
from llamaswap.core.batch_aging.costs import CostModel
from llamaswap.core.batch_aging.line import WaitingLine
from llamaswap.core.batch_aging.settings import NAME, BatchAgingSettings
from llamaswap.core.batch_aging.wake import WakeTimer
from llamaswap.core.errors import LoadFailure, RequestError
from llamaswap.core.ledger import Ledger, collides
from llamaswap.core.process import ProcessState
from llamaswap.core.request import Request
from llamaswap.core.scheduler import Effects
from llamaswap.core.spec import RoutingSpec
from llamaswap.core.swapper import Swapper


@dataclass
class _Swap:
    evict: tuple[str, ...]
    started: float
    waiters: list[Request] = field(default_factory=list)
    aborted: bool = False


class Verdict(enum.Enum):
    PASS = "pass"
    """Nothing for this model now; it keeps waiting."""
    JOIN = "join"
    """Its queued requests join the load of it in progress."""
    SERVE = "serve"
    """Grant its queued requests (up to the upstream's window)."""
    LOAD = "load"
    """Start a swap to it, evicting what must go."""


class Case:
    """One waiting model at one decision point (a plain slotted class: it is made per model per
    pump, the simulator's hottest path)."""

    __slots__ = ("_evict", "blocked", "head", "model", "now", "present", "s", "swap")

    def __init__(
        self,
        s: BatchAgingScheduler,
        model: str,
        head: str | None,
        blocked: set[str],
        present: set[str],
        now: float,
    ) -> None:
        self.s = s
        self.model = model
        self.head = head
        """The claim this pump serves first (None: no claim)."""
        self.blocked = blocked
        """Models the head claim drains: they take no new requests."""
        self.present = present
        """Running or loading models, grown by the loads this pump starts."""
        self.now = now
        self.swap: _Swap | None = s._active.get(model)
        self._evict: tuple[str, ...] | None = None

    @property
    def evict(self) -> tuple[str, ...]:
        """Computed on first use (rows 1-4 decide without it), then kept for the later rows."""
        if self._evict is None:
            self._evict = self.s.eviction(self.model, self.present)
        return self._evict

    @property
    def other_than_head(self) -> bool:
        return self.head is not None and self.model != self.head


class Decision(NamedTuple):
    number: int
    name: str
    when: Callable[[Case], bool]
    verdict: Verdict


class BatchAgingScheduler:
    name = NAME

    def __init__(self, spec: RoutingSpec, effects: Effects, swapper: Swapper) -> None:
        self.settings = BatchAgingSettings.of(spec)
        self._effects = effects
        self._swapper = swapper
        self._ledger = Ledger(spec.models, effects)
        self.line = WaitingLine()
        self.costs = CostModel(self.settings, list(spec.models))
        self.reported_slots: dict[str, int] = {}
        """Slot counts the upstreams reported when they became ready (``ProcessReady.slots``)."""
        self.rule: ClaimRule = (
            PlannedClaims(self) if self.settings.planned else ReactiveClaims(self)
        )
        self._active: dict[str, _Swap] = {}
        self._resident_since: dict[str, float] = {}
        self._load_started: dict[str, float] = {}
        """When the load that made each model resident was started (residency's claim to honour)."""
        self._longest_wait = 0.0
        """The longest a request has waited for its grant so far (the plan's floor under limit)."""
        self._wake = WakeTimer(effects)
        self._stopped = False
        self._verdicts: Mapping[Verdict, Callable[[Case], bool]] = {
            Verdict.PASS: lambda case: False,
            Verdict.JOIN: self._join,
            Verdict.SERVE: self._serve,
            Verdict.LOAD: self._load,
        }

    # ------------------------------------------------------------------ events

    def on_request(self, request: Request) -> None:
        if not self._ledger.admit(request):
            return
        self.line.add(request, self._effects.now())
        if not self._pump():
            queue = self.line.queued(request.model)
            if queue and queue[-1] is request:
                self._publish_queue()

    def on_cancel(self, request: Request) -> None:
        if self.line.holds(request):
            self.line.cancel(request)
            self._ledger.withdraw(request)
            self._pump()
            self._publish_queue()
            return
        swap = self._active.get(request.model)
        if swap is not None and request in swap.waiters:
            swap.waiters.remove(request)
            self.line.answered([request])
            self._ledger.withdraw(request)
            self._pump()

    def on_swap_done(self, model: str, failure: LoadFailure | None) -> None:
        swap = self._active.pop(model, None)
        if swap is not None:
            now = self._effects.now()
            waiters = swap.waiters
            if failure is None:
                self.costs.observe_load(model, now - swap.started)
                self._resident_since[model] = now
                self._load_started[model] = swap.started
                waiters = self._within_window(model, waiters)
            for waiter in waiters:
                if failure is None:
                    self._grant(waiter)
                else:
                    self._fail(waiter, load_failed(model, failure))
            if len(waiters) < len(swap.waiters) and not self._pump():
                self._publish_queue()  # the window sent some waiters back to the line
                return
        self._pump()

    def on_serve_done(self, request: Request) -> None:
        granted_at = self._ledger.finished(request)
        if granted_at is None:
            return
        self.costs.observe_service(request.model, self._effects.now() - granted_at)
        self._pump()

    def on_unload(self, models: Sequence[str], token: Hashable) -> None:
        for model in sorted(set(models)):
            swap = self._active.pop(model, None)
            if swap is not None:
                for waiter in swap.waiters:
                    self._fail(waiter, unloaded(model))
            for request in self.line.drop(model):
                self._fail(request, unloaded(model))
            self._resident_since.pop(model, None)
        self._effects.stop_processes(sorted(set(models)), token)
        self._pump()
        self._publish_queue()

    def on_shutdown(self) -> None:
        self._stopped = True
        self._wake.cancel()
        for model in sorted(self._active):
            for waiter in self._active[model].waiters:
                self._fail(waiter, shutting_down())
        self._active.clear()
        for model in sorted(self.line):
            for request in self.line.queued(model):
                self._ledger.fail(request, shutting_down())
        self.line.clear()
        self._effects.queue_changed([])

    def on_upstream_slots(self, model: str, slots: int) -> None:
        """Without ``slots`` configured, the reported count becomes the model's window.

        Only the window: planned switches stay off unless ``slots`` is configured, since a plan
        needs every model's count before the first load and a report arrives with each load.
        """
        if slots >= 1:
            self.reported_slots[model] = slots

    def on_timer(self, key: Hashable) -> None:
        if self._wake.fired(key) and self._pump():
            self._publish_queue()

    def snapshot(self) -> Mapping[str, object]:
        now = self._effects.now()
        return {
            "queued": len(self.line),
            "swapping": sorted(self._active),
            "in_flight": dict(self._ledger.in_flight),
            "reserved": dict(self._ledger.admission.reserved),
            "urgent": self.rule.urgent(now),
            "claims": self._ranked(now, self.present())[1],
            "load_estimate": dict(self.costs.loads()),
            "max_wait": self.max_wait(),
            "window": dict(sorted({**self.reported_slots, **self.settings.slots}.items())),
            **self.rule.extras(),
        }

    # ------------------------------------------------------------------ estimates (public)

    def load_cost(self, model: str) -> float:
        return self.costs.load_cost(model)

    def max_wait(self) -> float:
        return self.costs.max_wait()

    def residency(self, model: str) -> float:
        return self.costs.residency(model)

    def service_time(self, model: str) -> float:
        return self.costs.service_time(model)

    def plan_limit(self) -> float:
        """The planned wait: ``maxWait``, or the longest wait so far when that is longer."""
        return max(self.max_wait(), self._longest_wait)

    # ------------------------------------------------------------------ the decision loop

    def _pump(self) -> bool:
        """Serve, join or start a load for every waiting model that may go now.

        Returns True when the waiting line changed (and was published).
        """
        if self._stopped:
            return False
        now = self._effects.now()
        present = self.present()
        ranked, claims = self._ranked(now, present)
        head, blocked = self._head_claim(claims, present, now)
        changed = False
        for model in ranked:
            case = Case(self, model, head, blocked, present, now)
            changed = self._verdicts[decide(case).verdict](case) or changed
        self._abandon_unwanted_loads()
        self._reschedule(now, present)
        if changed:
            self._publish_queue()
        return changed

    def _ranked(self, now: float, present: set[str]) -> tuple[list[str], list[str]]:
        """(every waiting model in service order, the models that claim the GPU now).

        Order: urgent models first (in the rule's order), then by priority, the rule's weight and
        age. Claims: every urgent model and, after them, the rule's soft claims.
        """
        urgent = self.rule.urgent(now)
        weights = {m: self.rule.weight(m, now, present) for m in self.line if m not in urgent}
        rest = sorted(
            weights,
            key=lambda m: (
                -self.settings.priority.get(m, 0),
                -weights[m],
                self.line.oldest(m),
                m,
            ),
        )
        return urgent + rest, urgent + self.rule.soft_claims(rest, weights, present)

    def _head_claim(
        self, claims: Sequence[str], present: set[str], now: float
    ) -> tuple[str | None, set[str]]:
        """The first claim not already loading, and the models its load drains: those it would
        evict, unless their residency protects them and the claim may not override it."""
        for model in claims:
            if model not in self._active:
                blocked = {
                    m
                    for m in self.eviction(model, present)
                    if self.rule.overrides(model, m, now) or not self._protected(m, now)
                }
                return model, blocked
        return None, set()

    # ------------------------------------------------------------------ verdicts

    def _join(self, case: Case) -> bool:
        assert case.swap is not None
        case.swap.waiters.extend(self.line.take(case.model))
        return True

    def _serve(self, case: Case) -> bool:
        granted = self.line.take(case.model, self.rule.room(case.model))
        for request in granted:
            self._grant(request)
        return bool(granted)

    def _load(self, case: Case) -> bool:
        model, evict = case.model, case.evict
        self._active[model] = _Swap(evict, case.now, self.line.take(model))
        case.present.add(model)
        self._swapper.on_swap_start(model, evict)
        self._effects.start_swap(model, evict)
        return True

    # ------------------------------------------------------------------ conditions

    def busy_for(self, case: Case, model: str) -> bool:
        """May ``model`` not be evicted for ``case`` now: serving, protected (unless the head
        claim overrides its residency), or (unless drained for the head claim) holding queued
        requests of its own."""
        overrides = case.model == case.head and self.rule.overrides(case.model, model, case.now)
        return (
            self._ledger.serving(model)
            or (not overrides and self._protected(model, case.now))
            or (model not in case.blocked and model in self.line)
        )

    def delays(self, model: str, head: str, evict: tuple[str, ...], present: set[str]) -> bool:
        """Would loading ``model`` now push back the ``head`` claim?"""
        others = (present | {model}) - {head}
        head_evicts = set(self._swapper.eviction_for(head, sorted(others)))
        return model in head_evicts or bool(head_evicts.intersection(evict))

    def _protected(self, model: str, now: float) -> bool:
        """Minimum residency: loaded recently and still has work, so it may not be drained."""
        since = self._resident_since.get(model)
        if since is None or now - since >= self.costs.residency(model):
            return False
        if not self.is_ready(model):
            return False
        return self._ledger.serving(model) or model in self.line

    # ------------------------------------------------------------------ the Board (for claim rules)

    def running(self) -> list[str]:
        return self._effects.running_models()

    def is_ready(self, model: str) -> bool:
        return self._effects.model_state(model) is ProcessState.READY

    def loading(self, model: str) -> bool:
        return model in self._active

    def in_flight(self, model: str) -> int:
        return self._ledger.in_flight[model]

    def present(self) -> set[str]:
        return set(self._effects.running_models()) | set(self._active)

    def eviction(self, model: str, present: set[str]) -> tuple[str, ...]:
        """Models to stop before ``model`` may load, given what runs or loads (``present``)."""
        return tuple(self._swapper.eviction_for(model, sorted(present - {model})))

    def load_for(self, model: str, present: set[str]) -> float:
        """0 when ``model`` is ready to serve without evicting anything, else its load cost."""
        if self.is_ready(model) and not self.eviction(model, present):
            return 0.0
        return self.costs.load_cost(model)

    def load_started(self, model: str) -> float:
        return self._load_started.get(model, -math.inf)

    def longest_wait(self) -> float:
        return self._longest_wait

    # ------------------------------------------------------------------ bookkeeping

    def _abandon_unwanted_loads(self) -> None:
        """Load cancellation: nobody waits for a load and another model has queued work."""
        for model, swap in sorted(self._active.items()):
            if swap.waiters or swap.aborted:
                continue
            if any(m != model for m in self.line):
                swap.aborted = True
                self._effects.cancel_swap(model)

    def _reschedule(self, now: float, present: set[str]) -> None:
        """One timer at the next moment a rule changes its verdict: a claim falls due (the rule
        says when), or a residency ends."""
        when = self.rule.wake_at(now, present)
        for model, since in self._resident_since.items():
            end = since + self.costs.residency(model)
            if end > now and self._protected(model, now):
                when = min(when, end)
        self._wake.set(when)

    def _within_window(self, model: str, waiters: list[Request]) -> list[Request]:
        """A finished load's waiters that fit the window; the rest go back to the queue's front."""
        room = self.rule.room(model)
        if room is None or len(waiters) <= room:
            return waiters
        self.line.put_back(model, waiters[room:])
        return waiters[:room]

    def _publish_queue(self) -> None:
        line: list[Request] = []
        for model in self._ranked(self._effects.now(), self.present())[0]:
            line.extend(self.line.queued(model))
        self._effects.queue_changed(line)

    def _grant(self, request: Request) -> None:
        waited = self._effects.now() - self.line.arrival(request)
        self._longest_wait = max(self._longest_wait, waited)
        self.line.answered([request])
        self._ledger.grant(request)

    def _fail(self, request: Request, error: RequestError) -> None:
        """A request no longer in the queue (joined to a load, or dropped) fails."""
        self._ledger.fail(request, error)
        self.line.answered([request])


DECISIONS: tuple[Decision, ...] = (
    Decision(1, "nothing of it waits", lambda c: c.model not in c.s.line, Verdict.PASS),
    Decision(
        2,
        "drained for the head claim (and not the head)",
        lambda c: c.model != c.head and c.model in c.blocked,
        Verdict.PASS,
    ),
    Decision(
        3,
        "its load was aborted: a fresh one starts once that settled",
        lambda c: c.swap is not None and c.swap.aborted,
        Verdict.PASS,
    ),
    Decision(4, "it is loading", lambda c: c.swap is not None, Verdict.JOIN),
    Decision(
        5,
        "its swap would collide with one in progress (`ledger.collides`)",
        lambda c: collides(c.model, c.evict, c.s._active),
        Verdict.PASS,
    ),
    Decision(
        6,
        "ready, nothing to evict",
        lambda c: c.s.is_ready(c.model) and not c.evict,
        Verdict.SERVE,
    ),
    Decision(
        7,
        "its load would delay the head claim",
        lambda c: c.other_than_head and c.s.delays(c.model, c.head or "", c.evict, c.present),
        Verdict.PASS,
    ),
    Decision(
        8,
        "a model it would evict is serving, protected or still has work (unless drained, "
        "or the head's claim overrides its residency)",
        lambda c: any(c.s.busy_for(c, m) for m in c.evict),
        Verdict.PASS,
    ),
    Decision(9, "otherwise", lambda c: True, Verdict.LOAD),
)


def decide(case: Case) -> Decision:
    for decision in DECISIONS:
        if decision.when(case):
            return decision
    raise RuntimeError(f"batch-aging: no decision for {case.model!r}; the table is incomplete")


def decisions_markdown() -> str:
    """``DECISIONS`` as docs/design.md shows it (a test keeps the two equal)."""
    lines = ["| # | condition (for one waiting model) | verdict |", "|---|---|---|"]
    lines += [f"| {d.number} | {d.name} | {d.verdict.value} |" for d in DECISIONS]
    return "\n".join(lines)
