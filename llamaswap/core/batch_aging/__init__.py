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

Without ``slots`` in the config, a slot count the upstream reports when it becomes ready
(``ProcessReady.slots``, llama-server's ``/props``) sets that model's window, and only the window.

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

Load cancellation: a load nobody waits for any more is aborted when another model has queued
work, and allowed to finish otherwise. Every timer goes through ``Effects.call_at``.

The package, one idea per module: ``settings`` (parsed once, by the registry's hook), ``line``
(the waiting line and its arrival sums), ``costs`` (EWMA estimates, residency, the derived
``maxWait``), ``claims`` (the reactive and the planned claim rules, one interface), ``wake`` (the
de-duplicated wake-up timer) and ``scheduler`` (the events and the numbered decision table).
"""

from llamaswap.core.batch_aging.scheduler import DECISIONS, BatchAgingScheduler, Decision, Verdict
from llamaswap.core.batch_aging.settings import DEFAULTS, NAME, BatchAgingSettings

__all__ = [
    "DECISIONS",
    "DEFAULTS",
    "NAME",
    "BatchAgingScheduler",
    "BatchAgingSettings",
    "Decision",
    "Verdict",
]
