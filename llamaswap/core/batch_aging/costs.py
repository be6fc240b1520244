"""The cost model: what a load and a service take, the residency a load earns, the derived bound.

Estimates are EWMAs of what the scheduler itself observed (``start_swap`` to ``on_swap_done`` for
a load, grant to ``ServeDone`` for a service), so the simulator and the daemon learn alike.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from llamaswap.core.batch_aging.settings import DEFAULTS, BatchAgingSettings

EWMA = 0.3
"""Weight of the newest observation in the load-time and service-time estimates."""


class CostModel:
    def __init__(self, settings: BatchAgingSettings, models: Sequence[str]) -> None:
        self._settings = settings
        self._models = sorted(models)
        self.load_estimate: dict[str, float] = {}
        self.service_estimate: dict[str, float] = {}
        self._bound = self._derive_max_wait()

    def observe_load(self, model: str, seconds: float) -> None:
        _observe(self.load_estimate, model, seconds)
        self._bound = self._derive_max_wait()

    def observe_service(self, model: str, seconds: float) -> None:
        _observe(self.service_estimate, model, seconds)

    def load_cost(self, model: str) -> float:
        """Seconds a load of ``model`` is expected to take: override, observation, or default."""
        if model in self._settings.load_cost:
            return self._settings.load_cost[model]
        return _estimate(self.load_estimate, model, self._settings.default_load_cost)

    def service_time(self, model: str) -> float:
        return _estimate(self.service_estimate, model, self._settings.default_service_time)

    def residency(self, model: str) -> float:
        """Seconds of protected residency a load earns: ``minResident``, or ``residencyPerLoad``
        times the load cost when that is longer, so loads stay a bounded share of the GPU's time."""
        return max(
            self._settings.min_resident, self._settings.residency_per_load * self.load_cost(model)
        )

    def max_wait(self) -> float:
        """The starvation bound: the ``maxWait`` setting, or by default 60 s or the longest
        residency a load earns, whichever is longer, so that the bound never cuts short the
        residency that pays for a slow load (a bound of two 30 s loads would be round-robin)."""
        return self._bound

    def loads(self) -> Mapping[str, float]:
        """The load cost of every model whose load was observed (for snapshots)."""
        return {m: self.load_cost(m) for m in sorted(self.load_estimate)}

    def _derive_max_wait(self) -> float:
        """``max_wait()``'s value; it changes only when a load time is observed."""
        if self._settings.max_wait is not None:
            return self._settings.max_wait
        return max([DEFAULTS["maxWait"], *(self.residency(m) for m in self._models)])


def _observe(estimates: dict[str, float], model: str, seconds: float) -> None:
    old = estimates.get(model)
    estimates[model] = seconds if old is None else (1 - EWMA) * old + EWMA * seconds


def _estimate(estimates: Mapping[str, float], model: str, default: float) -> float:
    """The model's own estimate, else the mean over the models observed so far, else ``default``."""
    if model in estimates:
        return estimates[model]
    if estimates:
        return sum(estimates.values()) / len(estimates)
    return default
