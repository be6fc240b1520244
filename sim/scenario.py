"""Scenario files (``scenarios/*.yaml``): routing config, timing, trace, schedulers, seed, expect.

    name: default
    description: ...
    seed: 7
    schedulers: [serial, fifo]         # or variants: {label: planned, use: batch-aging, settings: {...}}
    config: {models: {...}, groups: {...}, routing: {scheduler: {use: fifo}}}   # daemon schema
    timing: {default: {...}, MODEL: {...}}                                      # TimingProfile
    trace:
      synthetic: {...}                  # see sim.synthetic
      # or: file: ../shared/traces/raw/..., format: azure, options: {...}
      # or: superpose: [{file: ..., format: ..., transforms: [...]}, ...]
      transforms: [...]                 # see sim.transforms
    ci: {transforms: [...], synthetic: {...}}   # applied by --ci and the regression tests
    expect: ["serial.order_violations == 0", ...]

A ``schedulers`` entry is a scheduler name, or a *variant*: a ``label`` (used in reports and in
``expect`` paths), the scheduler it ``use``s, and ``settings`` for that scheduler, merged over the
config's ``routing.scheduler.settings`` for it. Variants let one scenario compare configurations of
the same policy (say ``batch-aging`` with and without ``slots``); each is validated like a config.

Relative trace paths are resolved against the repository root (the scenario directory's parent),
then the scenario directory, then the working directory; ``../shared/...`` is then looked up with
:mod:`sim.shared` (which also finds the shared directory from a git worktree).
"""

from __future__ import annotations

import contextlib
import copy
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from llamaswap.config.sources import UniqueKeyLoader, yaml_problem
from llamaswap.core.policies import scheduler_names
from llamaswap.core.spec import RoutingSpec
from llamaswap.timing import TimingError, TimingProfile
from sim.importers import import_trace
from sim.routing import RoutingConfigError, routing_spec
from sim.shared import SharedDirMissingError, shared_path, shared_relative
from sim.synthetic import synthetic_trace
from sim.trace import Trace, TraceError, read_trace
from sim.transforms import apply_transforms, superpose

_KEYS = {"name", "description", "seed", "schedulers", "config", "timing", "trace", "ci", "expect"}
_TRACE_KEYS = {"synthetic", "file", "format", "options", "superpose", "transforms"}


class ScenarioError(ValueError):
    """The scenario file is malformed; the message names the file and key."""


class TraceMissingError(ScenarioError):
    """A trace file the scenario references is absent (e.g. no ``../shared`` on this machine)."""


_LABEL = re.compile(r"[A-Za-z_][\w-]*")
"""A variant's label: what an ``expect`` path can name."""


@dataclass(frozen=True)
class Variant:
    """One ``schedulers`` entry: its label, the scheduler it runs, and the routing spec to use."""

    label: str
    scheduler: str
    spec: RoutingSpec


@dataclass
class Scenario:
    name: str
    path: Path
    spec: RoutingSpec
    profiles: dict[str, TimingProfile]
    trace: Mapping[str, Any]
    variants: Mapping[str, Variant]
    """The ``schedulers`` entries by label, in order: the scheduler and spec each runs."""
    seed: int
    expect: list[str] = field(default_factory=list)
    ci: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""
    warnings: tuple[str, ...] = ()
    """Config warnings (from ``llamaswap.config``), shown by the CLI."""

    @property
    def schedulers(self) -> list[str]:
        """The labels of the ``schedulers`` entries (a plain scheduler name is its own label)."""
        return list(self.variants)

    def variant(self, label: str) -> Variant:
        """The entry called ``label``; any other scheduler name runs with the scenario's config."""
        found = self.variants.get(label)
        return found if found is not None else Variant(label, label, self.spec)

    def check_labels(self, labels: Sequence[str], where: str) -> None:
        """``labels`` must each be an entry of ``schedulers`` or a scheduler name."""
        bad = [x for x in labels if x not in self.variants and x not in scheduler_names()]
        if bad:
            valid = [*self.variants, *(n for n in scheduler_names() if n not in self.variants)]
            raise ScenarioError(f"{where}: unknown schedulers {bad} (valid: {', '.join(valid)})")

    def plain_schedulers(self, labels: Sequence[str], where: str) -> None:
        """Hosts that take only scheduler names (the live fidelity run) refuse variants."""
        self.check_labels(labels, where)
        odd = [x for x in labels if self.variant(x).spec is not self.spec]
        if odd:
            raise ScenarioError(
                f"{where}: {odd} are variants (label/use/settings); this command runs plain "
                "scheduler names only"
            )

    def trace_warnings(self, trace: Trace) -> list[str]:
        """Models the trace asks for that the config does not serve (rejected as not_found)."""
        unknown = [m for m in trace.models if m not in self.spec.models]
        if not unknown:
            return []
        return [
            f"trace models {unknown} are not in the config (models: {sorted(self.spec.models)}); "
            "their requests will be rejected as not_found"
        ]

    def trace_files(self) -> list[Path]:
        """Every file the trace spec names (resolved), for existence checks."""
        return [self.resolve(p) for p in _files(self.trace)]

    def resolve(self, name: str) -> Path:
        return resolve_path(self.path, name)

    def load_trace(self, ci: bool = False) -> Trace:
        spec = dict(self.trace)
        transforms = list(spec.get("transforms") or [])
        if ci:
            if self.ci.get("synthetic") and "synthetic" in spec:
                spec["synthetic"] = {**spec["synthetic"], **self.ci["synthetic"]}
            transforms += list(self.ci.get("transforms") or [])
        where = f"{self.path}: trace"
        try:
            trace = self._source(spec, where)
            return apply_transforms(trace, transforms, self.seed, f"{where}.transforms")
        except TraceMissingError:
            raise
        except TraceError as exc:
            raise ScenarioError(str(exc)) from None

    def _source(self, spec: Mapping[str, Any], where: str) -> Trace:
        unknown = sorted(set(spec) - _TRACE_KEYS)
        if unknown:
            raise ScenarioError(f"{where}: unknown keys {unknown} (valid: {sorted(_TRACE_KEYS)})")
        if "synthetic" in spec:
            synth = spec["synthetic"]
            if not isinstance(synth, Mapping):
                raise ScenarioError(f"{where}.synthetic: expected a mapping")
            return synthetic_trace(synth, self.seed, f"{where}.synthetic")
        if "superpose" in spec:
            parts = spec["superpose"]
            if not isinstance(parts, list) or not parts:
                raise ScenarioError(f"{where}.superpose: expected a non-empty list of traces")
            traces = []
            for i, part in enumerate(parts):
                here = f"{where}.superpose[{i}]"
                if not isinstance(part, Mapping):
                    raise ScenarioError(f"{here}: expected a mapping")
                sub = self._source({k: v for k, v in part.items() if k != "transforms"}, here)
                traces.append(
                    apply_transforms(
                        sub, part.get("transforms"), self.seed + i, f"{here}.transforms"
                    )
                )
            return superpose(traces)
        if "file" not in spec:
            raise ScenarioError(f"{where}: give 'synthetic', 'file' (+ 'format') or 'superpose'")
        names = spec["file"] if isinstance(spec["file"], list) else [spec["file"]]
        paths = [self.resolve(str(p)) for p in names]
        missing = [str(p) for p in paths if not p.exists()]
        if missing:
            raise TraceMissingError(f"{where}.file: trace file not found: {', '.join(missing)}")
        options = dict(spec.get("options") or {})
        fmt = str(spec.get("format", "canonical"))
        if fmt == "servegen" and "seed" not in options:
            options["seed"] = self.seed
        return import_trace(fmt, paths, **options)


def resolve_path(scenario: Path, name: str) -> Path:
    """Repository root (the scenario directory's parent), then the scenario directory, then cwd,
    then (for ``../shared/...``) the shared directory :mod:`sim.shared` finds."""
    path = Path(name)
    if path.is_absolute():
        return path
    base = scenario.resolve().parent
    for candidate in (base.parent / path, base / path, Path.cwd() / path):
        if candidate.exists():
            return candidate
    inside = shared_relative(name)
    if inside is not None:
        with contextlib.suppress(SharedDirMissingError):
            return shared_path(inside, checkout=base.parent)
    return base.parent / path


def _files(spec: Mapping[str, Any]) -> list[str]:
    if "superpose" in spec:
        return [f for part in spec["superpose"] or [] for f in _files(part)]
    if "file" in spec:
        return [
            str(f) for f in (spec["file"] if isinstance(spec["file"], list) else [spec["file"]])
        ]
    return []


def load_scenario(path: str | Path) -> Scenario:
    path = Path(path)
    if not path.exists():
        raise ScenarioError(f"{path}: no such scenario file")
    try:
        data = yaml.load(path.read_text(), Loader=UniqueKeyLoader)
    except yaml.YAMLError as exc:
        raise ScenarioError(f"{path}: not valid YAML: {yaml_problem(exc)}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError(f"{path}: cannot read: {exc}") from None
    return parse_scenario(data, path)


def parse_scenario(data: Any, path: Path) -> Scenario:
    where = str(path)
    if not isinstance(data, Mapping):
        raise ScenarioError(f"{where}: expected a mapping at the top level")
    unknown = sorted(set(data) - _KEYS)
    if unknown:
        raise ScenarioError(f"{where}: unknown keys {unknown} (valid: {sorted(_KEYS)})")
    name = data.get("name") or path.stem
    if not isinstance(name, str) or not name.replace("-", "").replace("_", "").isalnum():
        raise ScenarioError(f"{where}: name must be letters, digits, '-' or '_', got {name!r}")
    seed = data.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ScenarioError(f"{where}: seed must be an integer, got {seed!r}")
    if "config" not in data:
        raise ScenarioError(f"{where}: 'config' (the routing config, daemon schema) is required")
    try:
        spec, warnings = routing_spec(data["config"], f"{where}: config")
    except (RoutingConfigError, ValueError) as exc:
        raise ScenarioError(str(exc)) from None
    variants = _variants(data.get("schedulers") or [spec.scheduler], data["config"], spec, where)
    profiles = parse_timing(
        data.get("timing") or {}, list(spec.models), f"{where}: timing", scenario_path=path
    )
    trace = data.get("trace")
    if not isinstance(trace, Mapping):
        raise ScenarioError(f"{where}: 'trace' is required (synthetic, file or superpose)")
    expect = data.get("expect") or []
    if not isinstance(expect, list) or not all(isinstance(e, str) for e in expect):
        raise ScenarioError(f"{where}: expect must be a list of strings")
    ci = data.get("ci") or {}
    if not isinstance(ci, Mapping) or set(ci) - {"transforms", "synthetic"}:
        raise ScenarioError(f"{where}: ci takes only 'transforms' and 'synthetic'")
    return Scenario(
        name=name,
        path=path,
        spec=spec,
        profiles=profiles,
        trace=trace,
        variants=variants,
        seed=seed,
        expect=list(expect),
        ci=ci,
        description=str(data.get("description") or ""),
        warnings=warnings,
    )


def _variants(
    entries: Any, config: Mapping[str, Any], spec: RoutingSpec, where: str
) -> dict[str, Variant]:
    if not isinstance(entries, list):
        raise ScenarioError(f"{where}: schedulers must be a list")
    out: dict[str, Variant] = {}
    for i, entry in enumerate(entries):
        at = f"{where}: schedulers[{i}]"
        if isinstance(entry, str):
            check_schedulers([entry], at)
            variant = Variant(entry, entry, spec)
        elif isinstance(entry, Mapping):
            variant = _variant(entry, config, at)
        else:
            raise ScenarioError(
                f"{at}: a scheduler name or {{label, use, settings}}, got {entry!r}"
            )
        if variant.label in out:
            raise ScenarioError(f"{at}: label {variant.label!r} appears twice")
        out[variant.label] = variant
    return out


def _variant(entry: Mapping[str, Any], config: Mapping[str, Any], at: str) -> Variant:
    unknown = sorted(set(entry) - {"label", "use", "settings"})
    if unknown:
        raise ScenarioError(f"{at}: unknown keys {unknown} (valid: label, use, settings)")
    label, use = entry.get("label"), entry.get("use")
    if not isinstance(label, str) or not _LABEL.fullmatch(label):
        raise ScenarioError(
            f"{at}.label: letters, digits, '_' and '-', starting with a letter (an expect path "
            f"names it), got {label!r}"
        )
    if not isinstance(use, str):
        raise ScenarioError(f"{at}.use: the scheduler this entry runs, got {use!r}")
    check_schedulers([use], f"{at}.use")
    if label in scheduler_names() and label != use:
        raise ScenarioError(f"{at}.label: {label!r} is another scheduler's name")
    settings = entry.get("settings") or {}
    if not isinstance(settings, Mapping):
        raise ScenarioError(f"{at}.settings: must be a mapping, got {settings!r}")
    data = copy.deepcopy(dict(config))
    scheduler = data.setdefault("routing", {}).setdefault("scheduler", {})
    merged = dict(scheduler.get("settings") or {})
    merged[use] = {**dict(merged.get(use) or {}), **dict(settings)}
    scheduler["use"], scheduler["settings"] = use, merged
    try:
        spec, _ = routing_spec(data, f"{at}.settings")
    except (RoutingConfigError, ValueError) as exc:
        raise ScenarioError(str(exc)) from None
    return Variant(label, use, spec)


def check_schedulers(names: Sequence[str], where: str) -> None:
    valid = scheduler_names()
    bad = [s for s in names if s not in valid]
    if bad:
        raise ScenarioError(f"{where}: unknown schedulers {bad} (valid: {', '.join(valid)})")


def parse_timing(
    raw: Any, models: list[str], where: str, scenario_path: Path | None = None
) -> dict[str, TimingProfile]:
    """Per-model :class:`TimingProfile` (``default`` merged under each model's own keys).

    A ``load_time: {kind: empirical, file: F, column: C, scale: S}`` reads its samples from column
    C of CSV file F (times S, e.g. 0.001 for milliseconds), so measured load latencies can be
    replayed without copying them into the scenario.
    """
    if not isinstance(raw, Mapping):
        raise ScenarioError(f"{where}: expected a mapping of model -> timing profile")
    unknown = sorted(set(raw) - set(models) - {"default"})
    if unknown:
        raise ScenarioError(f"{where}: timing for unknown models {unknown} (models: {models})")
    default = raw.get("default") or {}
    if not isinstance(default, Mapping):
        raise ScenarioError(f"{where}.default: expected a mapping")
    profiles = {}
    cache: dict[tuple[str, str, float], list[float]] = {}
    try:
        for model in models:
            own = raw.get(model) or {}
            if not isinstance(own, Mapping):
                raise ScenarioError(f"{where}.{model}: expected a mapping")
            merged = {**default, **own}
            load = merged.get("load_time")
            if isinstance(load, Mapping) and "file" in load:
                merged["load_time"] = {
                    "kind": "empirical",
                    "samples": _samples(load, scenario_path, f"{where}.{model}.load_time", cache),
                }
            profiles[model] = TimingProfile.parse(merged, f"{where}.{model}")
    except TimingError as exc:
        raise ScenarioError(str(exc)) from None
    return profiles


def _samples(
    spec: Mapping[str, Any],
    scenario_path: Path | None,
    where: str,
    cache: dict[tuple[str, str, float], list[float]],
) -> list[float]:
    import csv

    if spec.get("kind", "empirical") != "empirical":
        raise ScenarioError(f"{where}: 'file' is only valid with kind: empirical")
    unknown = sorted(set(spec) - {"kind", "file", "column", "scale"})
    if unknown:
        raise ScenarioError(f"{where}: unknown keys {unknown} (valid: kind, file, column, scale)")
    column = str(spec.get("column", "value"))
    scale = spec.get("scale", 1.0)
    if isinstance(scale, bool) or not isinstance(scale, int | float) or scale <= 0:
        raise ScenarioError(f"{where}.scale: expected a positive number, got {scale!r}")
    name = str(spec["file"])
    path = resolve_path(scenario_path, name) if scenario_path is not None else Path(name)
    key = (str(path), column, float(scale))
    if key in cache:
        return cache[key]
    if not path.exists():
        raise TraceMissingError(f"{where}.file: timing samples file not found: {path}")
    values: list[float] = []
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        if column not in (reader.fieldnames or []):
            raise ScenarioError(
                f"{where}.column: {column!r} is not a column of {path} ({reader.fieldnames})"
            )
        for lineno, row in enumerate(reader, 2):
            text = row[column]
            if text in ("", None):
                continue
            try:
                value = float(text) * scale
            except ValueError:
                raise ScenarioError(f"{path}:{lineno}: {column} {text!r} is not a number") from None
            if value >= 0:
                values.append(value)
    if not values:
        raise ScenarioError(f"{where}: no samples in column {column!r} of {path}")
    cache[key] = values
    return values


def trace_from_file(path: str | Path) -> Trace:
    """``--trace FILE``: a canonical trace replacing the scenario's own."""
    try:
        return read_trace(path)
    except TraceError as exc:
        raise ScenarioError(str(exc)) from None
