"""``batch-aging``: fifo's same-model batching, with a starvation bound and cost-aware model choice.

``fifo`` serves every request for the resident model at once, so a model with steady traffic never
goes idle and the other models' requests wait without bound; ``serial`` never starves anybody but
pays a load for every model change. This policy keeps fifo's batching and adds four rules
(llama-swap #612, #611, #727, #834):

* **Starvation bound** (``maxWait``): once a queued request has waited ``maxWait`` seconds its model
  becomes *urgent*: the models its load would evict stop taking new requests (they drain), and
  nothing else may start a load that would delay it. Urgent models go in order of their oldest
  request, before any priority. The claim also cuts short the residency (below) of a model whose
  load began before the late request arrived: fifo's starvation, a resident model held by its
  own traffic, ends after ``maxWait`` + one batch + one stop + one load. A model whose load was
  chosen while the late request already waited keeps its residency: that load was paid for with
  the request in view, and cutting it makes two models take turns evicting each other (measured:
  up to 1.3x fifo's max wait with 30 s loads). Unset, ``maxWait`` is 60 s or the longest
  residency a load earns, whichever is longer: a bound of two slow loads would make a round-robin.
* **Minimum residency**: a model loaded less than ``max(minResident, residencyPerLoad * load
  cost)`` seconds ago is not drained or evicted while it still has work, except for a request that
  arrived after its load began and has waited ``maxWait`` (above). An expensive load thus buys a
  proportionally longer stay, so loads remain a bounded share of the GPU's time and an overloaded
  system cannot thrash.
* **Cost-aware choice** of the next model among those waiting, by the batch's *response ratio*
  ``(sum of waits + q * service) / (load cost + q * service)``: highest-response-ratio-next applied
  to whole batches. More demand and longer waits raise a model's claim; a dear load lowers it. The
  load cost is the observed ``start_swap`` to ``on_swap_done`` time (EWMA; or ``loadCost``), the
  service time the observed grant-to-done time. A waiting batch whose ratio reaches ``switchRatio``
  claims the GPU like an urgent one (soft trigger, before ``maxWait``).
* **Priority** as in fifo: a higher ``priority`` goes first among models that are not urgent.

With ``maxWait`` very large, ``switchRatio`` 0 and no residency, it batches exactly like fifo;
only the order in which waiting models get loaded differs (response ratio instead of arrival).

**Planned switches** (``slots``: the upstream's parallel slots, one number or one per model). The
scheduler then hands a model's upstream at most ``slots`` requests at a time and keeps the rest,
so a switch can still overtake them, and it plans each switch instead of reacting to ``maxWait``:
the resident model takes one more request only while every model its load would evict for, taken
in deadline order and each paying its load cost and one service, can still start its oldest
request within ``limit`` of its arrival, or while switching would make the resident's own oldest
request wait even longer (it then waits for the other model's visit and a reload). ``limit`` is ``maxWait``, or the longest wait any request
has had so far when that is longer: once a burst has made ``maxWait`` unreachable, planning
against it would load a model per request, and the box would fall further behind. When the plan
fails, the model with the oldest request goes next. Waiting models go in order of their oldest
request (the order the plan assumes), and ``switchRatio`` is not used. Residency still holds.
Without ``slots`` in the config, a slot count the upstream reports when it becomes ready
(``ProcessReady.slots``, llama-server's ``/props``) sets that model's window, and only the window.

Load cancellation: a load nobody waits for any more is aborted when another model has queued
work, and allowed to finish otherwise. Every timer goes through ``Effects.call_at``.
"""

from __future__ import annotations

import math
from collections import Counter, deque
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from llamaswap.core.admission import Admission, load_failed, shutting_down, unloaded
from llamaswap.core.clock import TimerHandle
from llamaswap.core.errors import RequestError
from llamaswap.core.process import ProcessState
from llamaswap.core.request import Request
from llamaswap.core.scheduler import Effects
from llamaswap.core.spec import RoutingSpec
from llamaswap.core.swapper import Swapper

NAME = "batch-aging"
DEFAULTS: Mapping[str, float] = {
    "maxWait": 60.0,
    "minResident": 10.0,
    "residencyPerLoad": 4.0,
    "defaultLoadCost": 10.0,
    "defaultServiceTime": 1.0,
    "switchRatio": 4.0,
}
_EWMA = 0.3
"""Weight of the newest observation in the load-time and service-time estimates."""
_TINY = 1e-3
"""Seconds: the floor of a batch's cost, so instant services do not divide by zero."""


@dataclass(frozen=True)
class BatchAgingSettings:
    """Validated ``routing.scheduler.settings.batch-aging``."""

    max_wait: float | None = None
    """The ``maxWait`` setting; None: the default, see ``BatchAgingScheduler.max_wait``."""
    min_resident: float = DEFAULTS["minResident"]
    residency_per_load: float = DEFAULTS["residencyPerLoad"]
    default_load_cost: float = DEFAULTS["defaultLoadCost"]
    default_service_time: float = DEFAULTS["defaultServiceTime"]
    switch_ratio: float = DEFAULTS["switchRatio"]
    priority: Mapping[str, int] = field(default_factory=dict)
    load_cost: Mapping[str, float] = field(default_factory=dict)
    slots: Mapping[str, int] = field(default_factory=dict)
    """Empty, or every model's upstream slot count (planned switches, see the module docstring)."""

    @property
    def planned(self) -> bool:
        return bool(self.slots)

    @classmethod
    def parse(cls, raw: Mapping[str, Any], models: Sequence[str]) -> BatchAgingSettings:
        """Check every key; errors name ``routing.scheduler.settings.batch-aging.<key>`` and say why."""
        where = f"routing.scheduler.settings.{NAME}"
        if not isinstance(raw, Mapping):
            raise ValueError(f"{where}: must be a mapping, got {type(raw).__name__}")
        known = {*DEFAULTS, "priority", "loadCost", "slots"}
        for key in raw:
            if key not in known:
                raise ValueError(
                    f"{where}.{key}: unknown setting; valid: {', '.join(sorted(known))}"
                )

        def seconds(key: str, *, positive: bool) -> float:
            value = raw.get(key, DEFAULTS[key])
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{where}.{key}: must be a number of seconds, got {value!r}")
            number = float(value)
            if not math.isfinite(number) or number < 0 or (positive and number == 0):
                need = "> 0" if positive else ">= 0"
                raise ValueError(f"{where}.{key}: must be a finite number {need}, got {value!r}")
            return number

        def ratio(key: str) -> float:
            value = raw.get(key, DEFAULTS[key])
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{where}.{key}: must be a number, got {value!r}")
            number = float(value)
            if not math.isfinite(number) or (number != 0 and number < 1):
                raise ValueError(
                    f"{where}.{key}: must be 0 (off) or a finite number >= 1, got {value!r}"
                )
            return number

        def per_model(key: str) -> Mapping[str, Any]:
            value = raw.get(key)
            if value is None:
                return {}
            if not isinstance(value, Mapping):
                raise ValueError(f"{where}.{key}: must map model ids to values, got {value!r}")
            for model in value:
                if str(model) not in models:
                    raise ValueError(f"{where}.{key}.{model}: no such model is configured")
            return value

        priority: dict[str, int] = {}
        for model, value in per_model("priority").items():
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{where}.priority.{model}: must be an integer, got {value!r}")
            priority[str(model)] = value
        load_cost: dict[str, float] = {}
        for model, value in per_model("loadCost").items():
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
                or value < 0
            ):
                raise ValueError(
                    f"{where}.loadCost.{model}: must be a finite number of seconds >= 0, got {value!r}"
                )
            load_cost[str(model)] = float(value)
        return cls(
            slots=_parse_slots(raw.get("slots"), models, where),
            max_wait=seconds("maxWait", positive=True) if "maxWait" in raw else None,
            min_resident=seconds("minResident", positive=False),
            residency_per_load=seconds("residencyPerLoad", positive=False),
            default_load_cost=seconds("defaultLoadCost", positive=False),
            default_service_time=seconds("defaultServiceTime", positive=True),
            switch_ratio=ratio("switchRatio"),
            priority=priority,
            load_cost=load_cost,
        )


def _parse_slots(value: Any, models: Sequence[str], where: str) -> dict[str, int]:
    """``slots``: absent, one count for every model, or a count for each model."""

    def count(raw: Any, key: str) -> int:
        if isinstance(raw, bool) or not isinstance(raw, int) or raw < 1:
            raise ValueError(f"{where}.{key}: must be a whole number of slots >= 1, got {raw!r}")
        return raw

    if value is None:
        return {}
    if not isinstance(value, Mapping):
        return {m: count(value, "slots") for m in models}
    slots: dict[str, int] = {}
    for model, raw in value.items():
        if str(model) not in models:
            raise ValueError(f"{where}.slots.{model}: no such model is configured")
        slots[str(model)] = count(raw, f"slots.{model}")
    missing = sorted(set(models) - set(slots))
    if missing:
        raise ValueError(
            f"{where}.slots: give every model its slot count (or one number for all); "
            f"missing: {', '.join(missing)}"
        )
    return slots


@dataclass
class _Swap:
    evict: tuple[str, ...]
    started: float
    waiters: list[Request] = field(default_factory=list)
    aborted: bool = False


class BatchAgingScheduler:
    name = NAME

    def __init__(self, spec: RoutingSpec, effects: Effects, swapper: Swapper) -> None:
        self.settings = BatchAgingSettings.parse(spec.settings_for(NAME), list(spec.models))
        self._models = sorted(spec.models)
        self._effects = effects
        self._swapper = swapper
        self._admission = Admission(spec.models)
        self._queues: dict[str, deque[Request]] = {}
        """Waiting requests per model (not yet joined to a swap), oldest first."""
        self._arrival_sum: dict[str, float] = {}
        self._active: dict[str, _Swap] = {}
        self._in_flight: Counter[str] = Counter()
        self._granted: dict[Request, float] = {}
        self._resident_since: dict[str, float] = {}
        self._load_estimate: dict[str, float] = {}
        self._service_estimate: dict[str, float] = {}
        self._timer: TimerHandle | None = None
        self._timer_when = math.inf
        self._timer_seq = 0
        self._stopped = False
        self._longest_wait = 0.0
        """The longest a request has waited for its grant so far (the plan's floor under limit)."""
        self._bound = self._derive_max_wait()
        """``max_wait()``, kept current by every observed load."""
        self._load_started: dict[str, float] = {}
        """When the load that made each model resident was started (residency's claim to honour)."""
        self._reported_slots: dict[str, int] = {}
        """Slot counts the upstreams reported when they became ready (used where none is set)."""

    # ------------------------------------------------------------------ events

    def on_request(self, request: Request) -> None:
        refusal = self._admission.try_admit(request.model)
        if refusal is not None:
            self._effects.grant_error(request, refusal)
            return
        queue = self._queues.setdefault(request.model, deque())
        queue.append(request)
        self._arrival_sum[request.model] = (
            self._arrival_sum.get(request.model, 0.0) + request.arrival
        )
        if not self._pump():
            queue = self._queues.get(request.model, deque())
            if queue and queue[-1] is request:
                self._publish_queue()

    def on_cancel(self, request: Request) -> None:
        queue = self._queues.get(request.model)
        if queue is not None and request in queue:
            queue.remove(request)
            self._forget(request)
            self._admission.release(request.model)
            self._pump()
            self._publish_queue()
            return
        swap = self._active.get(request.model)
        if swap is not None and request in swap.waiters:
            swap.waiters.remove(request)
            self._admission.release(request.model)
            self._pump()

    def on_swap_done(self, model: str, error: str | None) -> None:
        swap = self._active.pop(model, None)
        if swap is not None:
            now = self._effects.now()
            if error is None:
                self._observe(self._load_estimate, model, now - swap.started)
                self._bound = self._derive_max_wait()
                self._resident_since[model] = now
                self._load_started[model] = swap.started
            waiters = swap.waiters
            if error is None:
                waiters = self._within_window(model, waiters)
            for waiter in waiters:
                if error is None:
                    self._grant(waiter)
                else:
                    self._fail(waiter, load_failed(model, error))
            if len(waiters) < len(swap.waiters) and not self._pump():
                self._publish_queue()  # the window sent some waiters back to the line
                return
        self._pump()

    def on_serve_done(self, request: Request) -> None:
        granted_at = self._granted.pop(request, None)
        if granted_at is None:
            return
        model = request.model
        self._observe(self._service_estimate, model, self._effects.now() - granted_at)
        self._in_flight[model] -= 1
        if self._in_flight[model] <= 0:
            del self._in_flight[model]
        self._admission.release(model)
        self._pump()

    def on_unload(self, models: Sequence[str], token: Hashable) -> None:
        for model in sorted(set(models)):
            swap = self._active.pop(model, None)
            if swap is not None:
                for waiter in swap.waiters:
                    self._fail(waiter, unloaded(model))
            for request in self._queues.pop(model, ()):
                self._fail(request, unloaded(model))
            self._arrival_sum.pop(model, None)
            self._resident_since.pop(model, None)
        self._effects.stop_processes(sorted(set(models)), token)
        self._pump()
        self._publish_queue()

    def on_shutdown(self) -> None:
        self._stopped = True
        self._cancel_timer()
        for model in sorted(self._active):
            for waiter in self._active[model].waiters:
                self._fail(waiter, shutting_down())
        self._active.clear()
        for model in sorted(self._queues):
            for request in self._queues[model]:
                self._fail(request, shutting_down())
        self._queues.clear()
        self._arrival_sum.clear()
        self._effects.queue_changed([])

    def on_upstream_slots(self, model: str, slots: int) -> None:
        """A configured ``slots`` wins; otherwise the reported count becomes the model's window.

        Only the window: planned switches stay off unless ``slots`` is configured, since a plan
        needs every model's count before the first load and a report arrives with each load.
        """
        if slots >= 1:
            self._reported_slots[model] = slots

    def on_timer(self, key: Hashable) -> None:
        if key != ("wake", self._timer_seq):
            return  # superseded by a later reschedule
        self._timer = None
        self._timer_when = math.inf
        if self._pump():
            self._publish_queue()

    def snapshot(self) -> Mapping[str, object]:
        now = self._effects.now()
        return {
            "queued": sum(len(q) for q in self._queues.values()),
            "swapping": sorted(self._active),
            "in_flight": dict(self._in_flight),
            "reserved": dict(self._admission.reserved),
            "urgent": self._urgent(now),
            "claims": self._ranked(now, set(self._effects.running_models()) | set(self._active))[1],
            "load_estimate": {m: self.load_cost(m) for m in sorted(self._load_estimate)},
            "max_wait": self.max_wait(),
            "window": {m: n for m in self._models if (n := self._window(m)) is not None},
            **({"plan_limit": self.plan_limit()} if self.settings.planned else {}),
        }

    # ------------------------------------------------------------------ estimates and ranking

    def load_cost(self, model: str) -> float:
        """Seconds a load of ``model`` is expected to take: override, observation, or default."""
        if model in self.settings.load_cost:
            return self.settings.load_cost[model]
        if model in self._load_estimate:
            return self._load_estimate[model]
        if self._load_estimate:
            return sum(self._load_estimate.values()) / len(self._load_estimate)
        return self.settings.default_load_cost

    def max_wait(self) -> float:
        """The starvation bound: the ``maxWait`` setting, or by default 60 s or the longest
        residency a load earns, whichever is longer, so that the bound never cuts short the
        residency that pays for a slow load (a bound of two 30 s loads would be round-robin)."""
        return self._bound

    def _derive_max_wait(self) -> float:
        """``max_wait()``'s value; it changes only when a load time is observed."""
        if self.settings.max_wait is not None:
            return self.settings.max_wait
        return max([DEFAULTS["maxWait"], *(self.residency(m) for m in self._models)])

    def residency(self, model: str) -> float:
        """Seconds of protected residency a load earns: ``minResident``, or ``residencyPerLoad``
        times the load cost when that is longer, so loads stay a bounded share of the GPU's time."""
        return max(
            self.settings.min_resident, self.settings.residency_per_load * self.load_cost(model)
        )

    def service_time(self, model: str) -> float:
        if model in self._service_estimate:
            return self._service_estimate[model]
        if self._service_estimate:
            return sum(self._service_estimate.values()) / len(self._service_estimate)
        return self.settings.default_service_time

    def response_ratio(self, model: str, now: float, present: set[str]) -> float:
        """The batch's (waiting + service) / (load + service): highest-response-ratio-next."""
        queue = self._queues.get(model)
        if not queue:
            return 0.0
        waited = len(queue) * now - self._arrival_sum.get(model, 0.0)
        work = len(queue) * self.service_time(model)
        return (max(waited, 0.0) + work) / max(self._load_for(model, present) + work, _TINY)

    def _load_for(self, model: str, present: set[str]) -> float:
        """0 when ``model`` is ready to serve without evicting anything, else its load cost."""
        if self._effects.model_state(model) is ProcessState.READY and not self._eviction(
            model, present
        ):
            return 0.0
        return self.load_cost(model)

    def _due_at(self, model: str, present: set[str]) -> float:
        """When the batch's response ratio reaches ``switchRatio`` (it grows linearly in time)."""
        queue = self._queues[model]
        q = len(queue)
        work = q * self.service_time(model)
        cost = max(self._load_for(model, present) + work, _TINY)
        return (self.settings.switch_ratio * cost - work + self._arrival_sum.get(model, 0.0)) / q

    def _eviction(self, model: str, present: set[str]) -> tuple[str, ...]:
        """Models to stop before ``model`` may load, given what runs or loads (``present``)."""
        return tuple(self._swapper.eviction_for(model, sorted(present - {model})))

    def _urgent(self, now: float) -> list[str]:
        """Waiting models whose oldest request has waited ``maxWait``, oldest first; with planned
        switches, the models whose plan failed."""
        if self.settings.planned:
            return self._plan_failures(now)
        bound = self.max_wait()
        due = [
            (queue[0].arrival, model)
            for model, queue in self._queues.items()
            if queue and now - queue[0].arrival >= bound
        ]
        return [model for _, model in sorted(due)]

    def plan_limit(self) -> float:
        """The planned wait: ``maxWait``, or the longest wait so far when that is longer."""
        return max(self.max_wait(), self._longest_wait)

    def _plan_failures(self, now: float) -> list[str]:
        """For each ready model with queued work: if taking one more request would make some model
        its load would evict for miss ``arrival + plan_limit`` (visits in deadline order, each a
        load and one service), the waiting model with the oldest request, when that is not its own.
        """
        present = set(self._effects.running_models()) | set(self._active)
        limit = self.plan_limit()
        failures: list[tuple[float, str]] = []
        for resident in sorted(self._effects.running_models()):
            queue = self._queues.get(resident)
            if not queue or self._effects.model_state(resident) is not ProcessState.READY:
                continue
            heads = sorted(
                (q[0].arrival, m)
                for m, q in self._queues.items()
                if q and m != resident and resident in self._eviction(m, present)
            )
            if not heads or heads[0][0] >= queue[0].arrival:
                continue
            when = (
                now
                + (self._in_flight[resident] + 1)
                * self.service_time(resident)
                / self.settings.slots[resident]
            )
            for arrived, model in heads:
                when += self.load_cost(model)
                if when > arrived + limit:
                    if self._switch_helps(resident, heads[0][1], when - arrived, now):
                        failures.append(heads[0])
                    break
                when += self.service_time(model)
        return [model for _, model in sorted(set(failures))]

    def _switch_helps(self, resident: str, claimant: str, late_wait: float, now: float) -> bool:
        """Switch only if staying would make the late model wait longer (``late_wait``) than
        switching makes the resident's own oldest queued request wait: it then waits for the
        resident to drain, the claimant's load and queue, and a reload. Of the two, the plan takes
        the smaller worst wait, so an overloaded box does not trade one late request for another
        at the price of two loads."""
        slots = self.settings.slots
        back = (
            now
            + self._in_flight[resident] * self.service_time(resident) / slots[resident]
            + self.load_cost(claimant)
            + len(self._queues[claimant]) * self.service_time(claimant) / slots[claimant]
            + self.load_cost(resident)
        )
        return back - self._queues[resident][0].arrival < late_wait

    def _ranked(self, now: float, present: set[str]) -> tuple[list[str], list[str]]:
        """(every waiting model in service order, the models that claim the GPU now).

        Order: urgent models (oldest first), then by priority, response ratio and age. A claim is
        made by every urgent model and, after them, by every model that needs a load and whose
        response ratio reached ``switchRatio``: its waiting outweighs its load cost enough to
        drain the resident model early (the soft, cost-aware trigger; ``maxWait`` is the hard one).
        A ``maxWait`` claim may override residency (``_overrides``); a soft claim and a planned
        switch's claim (its limit is a target, not a bound) never do.
        """
        urgent = self._urgent(now)
        ratios = {
            m: self.response_ratio(m, now, present)
            for m, q in self._queues.items()
            if q and m not in urgent
        }
        planned = self.settings.planned
        rest = sorted(
            ratios,
            key=lambda m: (
                -self.settings.priority.get(m, 0),
                0.0 if planned else -ratios[m],
                self._queues[m][0].arrival,
                m,
            ),
        )
        switch = 0.0 if planned else self.settings.switch_ratio
        due = [m for m in rest if switch and ratios[m] >= switch and self._load_for(m, present) > 0]
        return urgent + rest, urgent + due

    def _protected(self, model: str, now: float) -> bool:
        """Minimum residency: loaded recently and still has work, so it may not be drained."""
        since = self._resident_since.get(model)
        if since is None or now - since >= self.residency(model):
            return False
        if self._effects.model_state(model) is not ProcessState.READY:
            return False
        return self._in_flight[model] > 0 or bool(self._queues.get(model))

    # ------------------------------------------------------------------ decisions

    def _pump(self) -> bool:
        """Serve, join or start a load for every waiting model that may go now.

        Returns True when the waiting line changed (and was published).
        """
        if self._stopped:
            return False
        now = self._effects.now()
        present = set(self._effects.running_models()) | set(self._active)
        ranked, claims = self._ranked(now, present)
        head: str | None = None
        blocked: set[str] = set()
        for model in claims:
            if model not in self._active:
                head = model
                blocked = {
                    m
                    for m in self._eviction(model, present)
                    if self._overrides(model, m, now) or not self._protected(m, now)
                }
                break
        changed = False
        for model in ranked:
            if not self._queues.get(model):
                continue
            if model != head and model in blocked:
                continue
            swap = self._active.get(model)
            if swap is not None:
                if not swap.aborted:  # else a fresh load starts once the aborted one settled
                    swap.waiters.extend(self._take(model))
                    changed = True
                continue
            evict = self._eviction(model, present)
            if self._collides(model, evict):
                continue
            if self._effects.model_state(model) is ProcessState.READY and not evict:
                granted = self._take(model, self._room(model))
                for request in granted:
                    self._grant(request)
                changed = changed or bool(granted)
                continue
            if head is not None and model != head and self._delays(model, head, evict, present):
                continue
            if any(
                self._busy(m, now, m in blocked, model == head and self._overrides(model, m, now))
                for m in evict
            ):
                continue
            self._active[model] = _Swap(evict, now, self._take(model))
            present.add(model)
            changed = True
            self._swapper.on_swap_start(model, evict)
            self._effects.start_swap(model, evict)
        self._abandon_unwanted_loads()
        self._reschedule(now, present)
        if changed:
            self._publish_queue()
        return changed

    def _overrides(self, claimant: str, resident: str, now: float) -> bool:
        """Does ``claimant``'s claim cut ``resident``'s residency short? Only a ``maxWait`` claim
        (not a soft one, nor a planned switch's, whose limit is a target), and only if its late
        request arrived after the resident's load began: a load chosen while that request already
        waited was paid for with it in view, and keeps its residency."""
        if self.settings.planned:
            return False
        oldest = self._queues[claimant][0].arrival
        late = now - oldest >= self.max_wait()
        return late and oldest >= self._load_started.get(resident, -math.inf)

    def _busy(self, model: str, now: float, drained: bool, overrides: bool) -> bool:
        """May not be evicted now: serving, protected (unless ``_overrides``), or (unless drained
        for the head claim) holding queued requests of its own behind its window."""
        return (
            self._in_flight[model] > 0
            or (not overrides and self._protected(model, now))
            or (not drained and bool(self._queues.get(model)))
        )

    def _delays(self, model: str, head: str, evict: tuple[str, ...], present: set[str]) -> bool:
        """Would loading ``model`` now push back the urgent ``head``?"""
        others = (present | {model}) - {head}
        head_evicts = set(self._swapper.eviction_for(head, sorted(others)))
        return model in head_evicts or bool(head_evicts.intersection(evict))

    def _collides(self, target: str, evict: tuple[str, ...]) -> bool:
        evict_set = set(evict)
        for other, swap in self._active.items():
            if other == target:
                continue
            if other in evict_set or target in swap.evict or evict_set.intersection(swap.evict):
                return True
        return False

    def _abandon_unwanted_loads(self) -> None:
        """Load cancellation: nobody waits for a load and another model has queued work."""
        for model, swap in sorted(self._active.items()):
            if swap.waiters or swap.aborted:
                continue
            if any(q for m, q in self._queues.items() if m != model):
                swap.aborted = True
                self._effects.cancel_swap(model)

    def _reschedule(self, now: float, present: set[str]) -> None:
        """One timer at the next moment a rule changes its verdict: a max wait ends, a response
        ratio reaches ``switchRatio``, or a residency ends."""
        when = math.inf
        bound = self.max_wait()
        for model, queue in self._queues.items():
            if queue and not self.settings.planned:
                due = queue[0].arrival + bound
                if due > now:
                    when = min(when, due)
                if self.settings.switch_ratio and model not in self._active:
                    soon = self._due_at(model, present)
                    if soon > now:
                        when = min(when, soon)
        for model, since in self._resident_since.items():
            end = since + self.residency(model)
            if end > now and self._protected(model, now):
                when = min(when, end)
        if when == self._timer_when:
            return
        self._cancel_timer()
        if when < math.inf:
            self._timer_seq += 1
            self._timer_when = when
            self._timer = self._effects.call_at(when, ("wake", self._timer_seq))

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = None
        self._timer_when = math.inf

    # ------------------------------------------------------------------ bookkeeping and answers

    def _room(self, model: str) -> int | None:
        """How many more requests the model's upstream may have now (None: no window)."""
        slots = self._window(model)
        return None if slots is None else max(slots - self._in_flight[model], 0)

    def _window(self, model: str) -> int | None:
        """The most requests the model's upstream gets at once: configured, reported, or None."""
        return self.settings.slots.get(model, self._reported_slots.get(model))

    def _take(self, model: str, limit: int | None = None) -> list[Request]:
        """The model's queued requests, oldest first: all of them, or at most ``limit``."""
        queue = self._queues.get(model)
        if queue is None:
            return []
        if limit is None or limit >= len(queue):
            del self._queues[model]
            self._arrival_sum.pop(model, None)
            return list(queue)
        taken = [queue.popleft() for _ in range(limit)]
        self._arrival_sum[model] -= sum(r.arrival for r in taken)
        return taken

    def _within_window(self, model: str, waiters: list[Request]) -> list[Request]:
        """A finished load's waiters that fit the window; the rest go back to the queue's front."""
        room = self._room(model)
        if room is None or len(waiters) <= room:
            return waiters
        rest = waiters[room:]
        self._queues.setdefault(model, deque()).extendleft(reversed(rest))
        self._arrival_sum[model] = self._arrival_sum.get(model, 0.0) + sum(r.arrival for r in rest)
        return waiters[:room]

    def _forget(self, request: Request) -> None:
        self._arrival_sum[request.model] = (
            self._arrival_sum.get(request.model, 0.0) - request.arrival
        )
        if not self._queues.get(request.model):
            self._queues.pop(request.model, None)
            self._arrival_sum.pop(request.model, None)

    def _publish_queue(self) -> None:
        now = self._effects.now()
        present = set(self._effects.running_models()) | set(self._active)
        line: list[Request] = []
        for model in self._ranked(now, present)[0]:
            line.extend(self._queues[model])
        self._effects.queue_changed(line)

    @staticmethod
    def _observe(estimates: dict[str, float], model: str, seconds: float) -> None:
        old = estimates.get(model)
        estimates[model] = seconds if old is None else (1 - _EWMA) * old + _EWMA * seconds

    def _grant(self, request: Request) -> None:
        now = self._effects.now()
        self._longest_wait = max(self._longest_wait, now - request.arrival)
        if self._effects.grant_serve(request):
            self._in_flight[request.model] += 1
            self._granted[request] = now
        else:
            self._admission.release(request.model)

    def _fail(self, request: Request, error: RequestError) -> None:
        self._admission.release(request.model)
        self._effects.grant_error(request, error)
