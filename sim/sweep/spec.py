"""Sweep files: bases and axes in, a list of fully specified, hash-keyed runs out.

    name: demo
    bases:                                   # one or several
      - scenarios/default.yaml               # a scenario file (relative: sweep dir, then repo root)
      - {scenario: scenarios/x.yaml, ci: true, label: x}
      - {factory: eval.sweep_base:workload, args: {name: alibaba}}   # a Python base (eval/)
    axes:                                    # every combination of these is one run
      scheduler: [serial, fifo, {label: ba-slots, use: batch-aging, settings: {slots: 4}}]
      settings: {batch-aging: {maxWait: [30, 60]}}     # a grid, for the variants that use it
      slice: [{label: all}, {label: head, transforms: [{limit: 500}]}]
      timing: [base, {label: slow, timing: {default: {load_time: 30}}}]
      load: [0.5, 1, 2]                      # arrival rate x this; or {offered: [0.3, 0.7]}
      seed: [1, 2, 3]
    grids:                                   # optional: several grids, each overriding ``axes``
      - {name: all}                          # (a grid's ``name`` is a comment; runs carry axes)
      - {scheduler: [fifo], load: [4]}
    slo: {latency: [30, 60]}                 # SLO attainment columns (share of requests within)
    require_complete: false                  # a run that leaves a request unanswered fails

Each run's *spec* is a canonical JSON document of everything that decides its result (the base,
by content hash for a scenario file, and every axis value); its key is a hash of that, so the same
run in two grids runs once and ``--resume`` recognises it. Paths on this machine are kept apart in
``where`` (not hashed): a run keyed on one machine is the same run on another.

Extension point, memory budgets (issue 14): a ``memory`` axis is reserved. Until co-residency exists
it is refused with a clear message; when it does, its values go into ``spec["memory"]`` (today
always ``None``, so existing keys stay valid), :class:`sim.sweep.bases.Point` carries them, and the
base applies them to the routing spec it builds.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from llamaswap.core.policies import scheduler_names
from sim.scenario import ScenarioError, load_scenario, resolve_path
from sim.transforms import TRANSFORMS

AXES = ("slice", "timing", "load", "scheduler", "settings", "seed")
"""The axes in expansion order (the last varies fastest); ``memory`` is reserved (issue 14)."""
_KEYS = {"name", "description", "bases", "axes", "grids", "slo", "require_complete"}
LOAD_KINDS = ("rate_scale", "offered")
DEFAULT_SLO = {"latency": [10.0, 30.0, 60.0, 120.0]}
_LABEL = re.compile(r"[A-Za-z_][\w+.-]*")


class SweepError(ValueError):
    """The sweep file is malformed; the message names the file and key."""


@dataclass(frozen=True)
class Base:
    """One base: a scenario file or a Python factory; ``ref`` is what the run spec hashes."""

    label: str
    ref: dict[str, Any]
    where: dict[str, Any]
    """Machine-local details (absolute paths), handed to the worker, not hashed."""
    seed: int
    extra_schedulers: tuple[str, ...] = ()


@dataclass(frozen=True)
class Run:
    index: int
    key: str
    spec: dict[str, Any]
    where: dict[str, Any]

    @property
    def axes(self) -> dict[str, Any]:
        """The axis values as table columns (one scalar each)."""
        s = self.spec
        return {
            "base": s["base"]["label"],
            "slice": s["slice"]["label"],
            "timing": s["timing"]["label"],
            "load_kind": s["load"]["kind"],
            "load": s["load"]["value"],
            "scheduler": s["scheduler"]["label"],
            "use": s["scheduler"]["use"],
            "settings": canonical(s["scheduler"]["settings"]),
            "seed": s["seed"],
        }


@dataclass
class Sweep:
    name: str
    path: Path
    runs: list[Run]
    description: str = ""
    bases: list[Base] = field(default_factory=list)


def canonical(value: Any) -> str:
    """The one JSON spelling of ``value`` that keys and ``settings`` columns use."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def run_key(spec: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical(spec).encode()).hexdigest()[:16]


def load_sweep(path: str | Path) -> Sweep:
    path = Path(path)
    if not path.is_file():
        raise SweepError(f"{path}: no such sweep file")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise SweepError(f"{path}: not valid YAML: {' '.join(str(exc).split())}") from None
    return parse_sweep(data, path)


def parse_sweep(data: Any, path: Path) -> Sweep:
    where = str(path)
    if not isinstance(data, Mapping):
        raise SweepError(f"{where}: expected a mapping at the top level")
    unknown = sorted(set(data) - _KEYS)
    if unknown:
        raise SweepError(f"{where}: unknown keys {unknown} (valid: {sorted(_KEYS)})")
    name = data.get("name") or path.name.split(".")[0]
    if not isinstance(name, str) or not _LABEL.fullmatch(name):
        raise SweepError(f"{where}: name must be letters, digits, '_', '-', got {name!r}")
    raw_bases = data.get("bases")
    if not isinstance(raw_bases, list) or not raw_bases:
        raise SweepError(f"{where}: bases: a non-empty list of scenario files or factories")
    bases = [_base(b, path, f"{where}: bases[{i}]") for i, b in enumerate(raw_bases)]
    labels = [b.label for b in bases]
    if len(set(labels)) != len(labels):
        raise SweepError(f"{where}: bases: two bases share a label ({labels}); give 'label:'")
    axes = data.get("axes") or {}
    if not isinstance(axes, Mapping):
        raise SweepError(f"{where}: axes must be a mapping of axis -> values")
    grids = data.get("grids") or [{}]
    if not isinstance(grids, list) or not all(isinstance(g, Mapping) for g in grids):
        raise SweepError(f"{where}: grids must be a list of mappings (axis overrides)")
    extras = {
        "slo": _slo(data.get("slo", DEFAULT_SLO), f"{where}: slo"),
        "require_complete": _flag(
            data.get("require_complete", False), f"{where}: require_complete"
        ),
        "memory": None,
    }
    runs: list[Run] = []
    seen: set[str] = set()
    for g, grid in enumerate(grids):
        merged = {**axes, **{k: v for k, v in grid.items() if k != "name"}}
        for base in bases:
            for spec in _expand(merged, base, extras, f"{where}: grids[{g}]"):
                key = run_key(spec)
                if key not in seen:
                    seen.add(key)
                    runs.append(Run(len(runs), key, spec, base.where))
    return Sweep(name, path, runs, str(data.get("description") or ""), bases)


def _base(entry: Any, sweep: Path, where: str) -> Base:
    if isinstance(entry, str):
        entry = {"scenario": entry}
    if not isinstance(entry, Mapping):
        raise SweepError(f"{where}: a scenario path or {{scenario: ...}} / {{factory: ...}}")
    kinds = [k for k in ("scenario", "factory") if k in entry]
    if len(kinds) != 1:
        raise SweepError(f"{where}: give exactly one of 'scenario' (a file) or 'factory'")
    if kinds[0] == "scenario":
        unknown = sorted(set(entry) - {"scenario", "ci", "label"})
        if unknown:
            raise SweepError(f"{where}: unknown keys {unknown} (valid: scenario, ci, label)")
        file = resolve_path(sweep, str(entry["scenario"]))
        try:
            scenario = load_scenario(file)
        except ScenarioError as exc:
            raise SweepError(f"{where}: {exc}") from None
        ci = _flag(entry.get("ci", False), f"{where}.ci")
        ref = {
            "kind": "scenario",
            "name": scenario.name,
            "sha256": hashlib.sha256(file.read_bytes()).hexdigest(),
            "ci": ci,
        }
        label = str(entry.get("label") or scenario.name)
        return Base(label, {**ref, "label": label}, {"file": str(file.resolve())}, scenario.seed)
    unknown = sorted(set(entry) - {"factory", "args", "label", "seed"})
    if unknown:
        raise SweepError(f"{where}: unknown keys {unknown} (valid: factory, args, label, seed)")
    factory = entry["factory"]
    if not isinstance(factory, str) or not re.fullmatch(r"[\w.]+:\w+", factory):
        raise SweepError(f"{where}.factory: 'package.module:function', got {factory!r}")
    args = entry.get("args") or {}
    if not isinstance(args, Mapping):
        raise SweepError(f"{where}.args: keyword arguments of the factory, as a mapping")
    from sim.sweep.bases import factory_schedulers

    try:
        extra = factory_schedulers(factory)
    except (ImportError, AttributeError) as exc:
        raise SweepError(f"{where}.factory: cannot import {factory!r}: {exc}") from None
    label = str(entry.get("label") or args.get("name") or factory.split(":")[1])
    seed = entry.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise SweepError(f"{where}.seed: an integer, got {seed!r}")
    ref = {"kind": "factory", "factory": factory, "args": dict(args), "label": label}
    return Base(label, ref, {}, seed, tuple(extra))


def _expand(
    axes: Mapping[str, Any], base: Base, extras: Mapping[str, Any], where: str
) -> list[dict[str, Any]]:
    if "memory" in axes:
        raise SweepError(
            f"{where}.memory: memory budgets need co-residency (issue 14), not built yet"
        )
    unknown = sorted(set(axes) - set(AXES))
    if unknown:
        raise SweepError(f"{where}: unknown axes {unknown} (valid: {', '.join(AXES)})")
    slices = _slices(axes.get("slice"), f"{where}.slice")
    timings = _timings(axes.get("timing"), f"{where}.timing")
    loads = _loads(axes.get("load"), f"{where}.load")
    variants = _schedulers(axes.get("scheduler"), base, f"{where}.scheduler")
    grid = _settings(axes.get("settings"), f"{where}.settings")
    seeds = _seeds(axes.get("seed", base.seed), f"{where}.seed")
    specs = []
    for sl, timing, load, variant in itertools.product(slices, timings, loads, variants):
        for settings, seed in itertools.product(grid.get(variant["use"], [{}]), seeds):
            scheduler = {**variant, "settings": {**variant["settings"], **settings}}
            specs.append(
                {
                    "base": base.ref,
                    "slice": sl,
                    "timing": timing,
                    "load": load,
                    "scheduler": scheduler,
                    "seed": seed,
                    **extras,
                }
            )
    return specs


def _listed(raw: Any, default: list[Any]) -> list[Any]:
    if raw is None:
        return default
    return list(raw) if isinstance(raw, list) else [raw]


def _label(raw: Any, where: str) -> str:
    if not isinstance(raw, str) or not _LABEL.fullmatch(raw):
        raise SweepError(f"{where}.label: letters, digits, '_', '-', '+', '.', got {raw!r}")
    return raw


def _slices(raw: Any, where: str) -> list[dict[str, Any]]:
    out = []
    for i, entry in enumerate(_listed(raw, [{"label": "all"}])):
        here = f"{where}[{i}]"
        if not isinstance(entry, Mapping) or set(entry) - {"label", "transforms"}:
            raise SweepError(f"{here}: expected {{label: NAME, transforms: [...]}}")
        steps = entry.get("transforms") or []
        if not isinstance(steps, list):
            raise SweepError(f"{here}.transforms: a list of one-key mappings")
        for j, step in enumerate(steps):
            if (
                not isinstance(step, Mapping)
                or len(step) != 1
                or next(iter(step)) not in TRANSFORMS
            ):
                raise SweepError(
                    f"{here}.transforms[{j}]: one of {', '.join(TRANSFORMS)} as a one-key mapping, "
                    f"got {step!r}"
                )
        out.append({"label": _label(entry.get("label"), here), "transforms": steps})
    return _unique(out, where)


def _timings(raw: Any, where: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i, entry in enumerate(_listed(raw, ["base"])):
        here = f"{where}[{i}]"
        if isinstance(entry, str):
            out.append({"label": _label(entry, here), "timing": None})
            continue
        if not isinstance(entry, Mapping) or set(entry) - {"label", "timing"}:
            raise SweepError(f"{here}: a named setting or {{label: NAME, timing: {{MODEL: ...}}}}")
        timing = entry.get("timing")
        if not isinstance(timing, Mapping):
            raise SweepError(
                f"{here}.timing: per-model overrides ({{default: {{...}}, MODEL: ...}})"
            )
        out.append({"label": _label(entry.get("label"), here), "timing": dict(timing)})
    return _unique(out, where)


def _loads(raw: Any, where: str) -> list[dict[str, Any]]:
    kind = "rate_scale"
    if isinstance(raw, Mapping):
        if len(raw) != 1 or next(iter(raw)) not in LOAD_KINDS:
            raise SweepError(
                f"{where}: a list (rate scale) or one of {{{', '.join(LOAD_KINDS)}: [...]}}"
            )
        ((kind, raw),) = raw.items()
    out = []
    for value in _listed(raw, [1.0]):
        if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
            raise SweepError(f"{where}: {kind} values must be positive numbers, got {value!r}")
        out.append({"kind": kind, "value": float(value)})
    return out


def _schedulers(raw: Any, base: Base, where: str) -> list[dict[str, Any]]:
    valid = [*scheduler_names(), *base.extra_schedulers]
    out = []
    for i, entry in enumerate(_listed(raw, ["fifo"])):
        here = f"{where}[{i}]"
        if isinstance(entry, str):
            entry = {"label": entry, "use": entry}
        if not isinstance(entry, Mapping) or set(entry) - {"label", "use", "settings"}:
            raise SweepError(f"{here}: a scheduler name or {{label, use, settings}}, got {entry!r}")
        use = entry.get("use")
        if use not in valid:
            raise SweepError(f"{here}.use: unknown scheduler {use!r} (valid: {', '.join(valid)})")
        settings = entry.get("settings") or {}
        if not isinstance(settings, Mapping):
            raise SweepError(f"{here}.settings: a mapping of setting -> value")
        label = _label(entry.get("label", use), here)
        out.append({"label": label, "use": use, "settings": dict(settings)})
    return _unique(out, where)


def _settings(raw: Any, where: str) -> dict[str, list[dict[str, Any]]]:
    """``{scheduler: {key: [values]}}`` -> every combination, per scheduler."""
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise SweepError(f"{where}: {{scheduler: {{setting: [values]}}}}")
    out = {}
    for scheduler, grid in raw.items():
        if not isinstance(grid, Mapping) or not grid:
            raise SweepError(f"{where}.{scheduler}: a mapping of setting -> list of values")
        keys = sorted(grid)
        values = [_listed(grid[k], []) for k in keys]
        if any(not v for v in values):
            raise SweepError(f"{where}.{scheduler}: every setting needs at least one value")
        out[str(scheduler)] = [
            dict(zip(keys, combo, strict=True)) for combo in itertools.product(*values)
        ]
    return out


def _seeds(raw: Any, where: str) -> list[int]:
    seeds = _listed(raw, [])
    if not seeds or any(isinstance(s, bool) or not isinstance(s, int) for s in seeds):
        raise SweepError(f"{where}: integers, got {raw!r}")
    return list(dict.fromkeys(seeds))


def _slo(raw: Any, where: str) -> dict[str, list[float]]:
    if not isinstance(raw, Mapping) or set(raw) - {"latency", "wait"}:
        raise SweepError(f"{where}: {{latency: [seconds], wait: [seconds]}}")
    out = {}
    for metric in ("latency", "wait"):
        values = _listed(raw.get(metric), [])
        if any(isinstance(v, bool) or not isinstance(v, int | float) or v <= 0 for v in values):
            raise SweepError(f"{where}.{metric}: positive numbers of seconds, got {values!r}")
        if values:
            out[metric] = sorted(float(v) for v in values)
    return out


def _flag(raw: Any, where: str) -> bool:
    if not isinstance(raw, bool):
        raise SweepError(f"{where}: true or false, got {raw!r}")
    return raw


def _unique(entries: Sequence[dict[str, Any]], where: str) -> list[dict[str, Any]]:
    labels = [e["label"] for e in entries]
    dup = sorted({x for x in labels if labels.count(x) > 1})
    if dup:
        raise SweepError(f"{where}: labels {dup} appear twice")
    return list(entries)
