"""Turning one run spec into simulator inputs, on the worker: scenario bases and factory bases.

A scenario base re-reads its file through the public scenario API (``parse_scenario``) with the
run's scheduler entry and timing override spliced in, so a sweep run is exactly the ``llamaswap
sim`` run of that entry. A factory base is any Python object with ``inputs(point) -> SimInputs``
(e.g. ``eval/sweep_base.py``): the way in for workloads a scenario file cannot spell. Both are
built once per worker process and cached, because loading a real trace costs far more than a run.
"""

from __future__ import annotations

import copy
import hashlib
import importlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import yaml

from llamaswap.core.spec import RoutingSpec
from llamaswap.timing import TimingProfile
from sim.scenario import Scenario, Variant, parse_scenario
from sim.trace import Trace
from sim.transforms import apply_transforms, time_scale

_VARIANT = "sweep-variant"
"""The label a settings variant gets inside the scenario (the sweep's own label may hold '+')."""


@dataclass(frozen=True)
class Point:
    """Everything a base needs from one run spec."""

    scheduler: str
    """The label (a factory base may give special meaning to some, e.g. a bound)."""
    use: str
    settings: Mapping[str, Any]
    timing: str
    timing_override: Mapping[str, Any] | None
    load_kind: str
    load: float
    transforms: Sequence[Any]
    seed: int
    memory: Any = None
    """Reserved for memory budgets (issue 14); always None today."""

    @classmethod
    def of(cls, spec: Mapping[str, Any]) -> Point:
        s = spec["scheduler"]
        return cls(
            scheduler=s["label"],
            use=s["use"],
            settings=s["settings"],
            timing=spec["timing"]["label"],
            timing_override=spec["timing"]["timing"],
            load_kind=spec["load"]["kind"],
            load=spec["load"]["value"],
            transforms=spec["slice"]["transforms"],
            seed=spec["seed"],
            memory=spec.get("memory"),
        )


@dataclass(frozen=True)
class SimInputs:
    """The arguments of ``sim.run.simulate`` for one run."""

    spec: RoutingSpec
    scheduler: str
    trace: Trace
    profiles: Mapping[str, TimingProfile]
    seed: int


class SweepBase(Protocol):
    def inputs(self, point: Point) -> SimInputs: ...


def offered_load(trace: Trace, profiles: Mapping[str, TimingProfile]) -> float:
    """Arrival rate x mean service time / parallel slots: the share of one GPU the trace asks for."""
    if len(trace) < 2:
        raise ValueError("offered load needs a trace of at least two requests")
    default = TimingProfile()
    prof = [profiles.get(m, default) for m in trace.models]
    service = trace.service_time.copy()
    missing = np.isnan(service)
    for i in np.flatnonzero(missing).tolist():
        p, o = int(trace.prompt_tokens[i]), int(trace.output_tokens[i])
        service[i] = prof[int(trace.model[i])].service_time(
            None if p < 0 else p, None if o < 0 else o
        )
    slots = np.array([prof[int(k)].parallel for k in trace.model.tolist()], dtype=float)
    span = float(trace.arrival[-1] - trace.arrival[0])
    if span <= 0:
        raise ValueError("offered load needs requests spread over time (the trace spans 0 s)")
    return float((service / slots).sum()) / span


def scale_to(trace: Trace, kind: str, value: float, profiles: Mapping[str, TimingProfile]) -> Trace:
    """The load axis: ``rate_scale`` multiplies the arrival rate, ``offered`` targets a load."""
    if kind == "rate_scale":
        return trace if value == 1.0 else time_scale(trace, 1.0 / value)
    return time_scale(trace, offered_load(trace, profiles) / value)


class ScenarioBase:
    """A scenario file as a sweep base (its trace loaded once, or shipped by the client)."""

    def __init__(self, file: str, sha256: str, ci: bool, trace: Trace | None = None) -> None:
        self.path = Path(file)
        raw = self.path.read_bytes()
        if hashlib.sha256(raw).hexdigest() != sha256:
            raise ValueError(
                f"{file}: changed since the sweep was expanded (or differs on this worker)"
            )
        self.data = yaml.safe_load(raw)
        self.ci = ci
        self._trace = trace

    def variant(self, point: Point) -> tuple[Scenario, Variant]:
        """The scenario with the run's entry as its only scheduler, and that entry."""
        data = copy.deepcopy(self.data)
        if point.use == point.scheduler and not point.settings:
            data["schedulers"] = [point.use]
            label = point.use
        else:
            data["schedulers"] = [
                {"label": _VARIANT, "use": point.use, "settings": dict(point.settings)}
            ]
            label = _VARIANT
        if point.timing_override is not None:
            data["timing"] = _merge_timing(data.get("timing") or {}, point.timing_override)
        elif point.timing != "base":
            raise ValueError(
                f"timing {point.timing!r}: a scenario base knows only 'base' or an override"
            )
        scenario = parse_scenario(data, self.path)
        return scenario, scenario.variant(label)

    def trace(self) -> Trace:
        if self._trace is None:
            scenario = parse_scenario(self.data, self.path)
            self._trace = scenario.load_trace(ci=self.ci)
        return self._trace

    def inputs(self, point: Point) -> SimInputs:
        scenario, variant = self.variant(point)
        trace = apply_transforms(self.trace().replace(), point.transforms, scenario.seed, "slice")
        trace = scale_to(trace, point.load_kind, point.load, scenario.profiles)
        return SimInputs(variant.spec, variant.scheduler, trace, scenario.profiles, point.seed)


def _merge_timing(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Per model (and ``default``), the override's keys over the scenario's."""
    out = {k: dict(v or {}) for k, v in base.items()}
    for model, keys in override.items():
        out[model] = {**out.get(model, {}), **dict(keys or {})}
    return out


def _factory(ref: str) -> Any:
    module, _, name = ref.partition(":")
    return getattr(importlib.import_module(module), name)


def factory_schedulers(ref: str) -> tuple[str, ...]:
    """Scheduler labels a factory base runs besides the real schedulers (e.g. bounds)."""
    return tuple(getattr(_factory(ref), "extra_schedulers", ()))


@lru_cache(maxsize=16)
def _factory_base(ref: str, args: str) -> SweepBase:
    import json

    base: SweepBase = _factory(ref)(**json.loads(args))
    return base


_SCENARIOS: dict[tuple[str, str, bool], ScenarioBase] = {}


def base_for(ref: Mapping[str, Any], where: Mapping[str, Any], shipped: Trace | None) -> SweepBase:
    """The (per-process cached) base a run spec names."""
    if ref["kind"] == "factory":
        import json

        return _factory_base(ref["factory"], json.dumps(ref["args"], sort_keys=True))
    key = (str(where["file"]), str(ref["sha256"]), bool(ref["ci"]))
    found = _SCENARIOS.get(key)
    if found is None or (shipped is not None and found._trace is None):
        found = _SCENARIOS[key] = ScenarioBase(*key, shipped)
    return found
