"""Trace transformations, applied in order from a list of one-key mappings::

- window: {start: 3600, duration: 600}   # keep [start, start+duration), shift to 0
- time_scale: 0.1                        # multiply arrivals (0.1 = 10x compression)
- rate_scale: 10                         # same as time_scale: 1/10
- sample: 0.5                            # keep each request with probability 0.5 (seeded)
- top_n: 5                               # or {n: 5, others: merge|drop}: fold to the top-N models
- limit: 2000                            # first N requests
- rename: {code: A, conv: B}
- cancel: {prob: 0.1, after: 60}         # clients give up after N s if still waiting
- shift_to_zero: true
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from sim.trace import Trace, TraceError

TRANSFORMS = (
    "window",
    "time_scale",
    "rate_scale",
    "sample",
    "top_n",
    "limit",
    "rename",
    "cancel",
    "shift_to_zero",
)


def apply_transforms(
    trace: Trace, transforms: Sequence[Any] | None, seed: int, where: str = "transforms"
) -> Trace:
    for i, step in enumerate(transforms or []):
        here = f"{where}[{i}]"
        if not isinstance(step, Mapping) or len(step) != 1:
            raise TraceError(f"{here}: expected a one-key mapping such as {{limit: 1000}}")
        ((name, arg),) = step.items()
        if name not in TRANSFORMS:
            raise TraceError(f"{here}: unknown transform {name!r} (valid: {', '.join(TRANSFORMS)})")
        trace = _apply(trace, str(name), arg, seed + i, f"{here}.{name}")
        trace.notes.append(f"{name}: {arg}")
    return trace


def _apply(trace: Trace, name: str, arg: Any, seed: int, where: str) -> Trace:
    if name == "window":
        if not isinstance(arg, Mapping):
            raise TraceError(f"{where}: expected {{start: S, duration: D}}")
        start = _num(arg.get("start", 0.0), f"{where}.start")
        duration = _num(arg.get("duration"), f"{where}.duration", positive=True)
        return window(trace, start, duration)
    if name == "time_scale":
        return time_scale(trace, _num(arg, where, positive=True))
    if name == "rate_scale":
        return time_scale(trace, 1.0 / _num(arg, where, positive=True))
    if name == "sample":
        p = _num(arg, where)
        if p > 1:
            raise TraceError(f"{where}: a probability within [0, 1] is required, got {arg}")
        keep = np.random.default_rng(seed).random(len(trace)) < p
        return trace.take(keep)
    if name == "top_n":
        opts = arg if isinstance(arg, Mapping) else {"n": arg}
        n = opts.get("n")
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise TraceError(f"{where}: n must be a positive integer, got {n!r}")
        others = opts.get("others", "drop")
        if others not in ("drop", "merge"):
            raise TraceError(f"{where}.others: 'drop' or 'merge', got {others!r}")
        return top_n(trace, n, merge=others == "merge")
    if name == "limit":
        if isinstance(arg, bool) or not isinstance(arg, int) or arg < 0:
            raise TraceError(f"{where}: expected a non-negative integer, got {arg!r}")
        return trace.take(np.arange(min(arg, len(trace))))
    if name == "rename":
        if not isinstance(arg, Mapping):
            raise TraceError(f"{where}: expected a mapping old -> new")
        return rename(trace, {str(k): str(v) for k, v in arg.items()})
    if name == "cancel":
        if not isinstance(arg, Mapping):
            raise TraceError(f"{where}: expected {{prob: P, after: SECONDS}}")
        p = _num(arg.get("prob", 1.0), f"{where}.prob")
        after = _num(arg.get("after"), f"{where}.after", positive=True)
        column = trace.cancel_after.copy()
        column[np.random.default_rng(seed).random(len(trace)) < p] = after
        return trace.replace(cancel_after=column)
    return shift_to_zero(trace)


def _num(raw: Any, where: str, positive: bool = False) -> float:
    if isinstance(raw, bool) or not isinstance(raw, int | float) or raw != raw or raw < 0:
        raise TraceError(f"{where}: expected a non-negative number, got {raw!r}")
    if positive and raw <= 0:
        raise TraceError(f"{where}: must be > 0")
    return float(raw)


def window(trace: Trace, start: float, duration: float) -> Trace:
    keep = (trace.arrival >= start) & (trace.arrival < start + duration)
    out = trace.take(keep)
    return out.replace(arrival=out.arrival - start)


def time_scale(trace: Trace, factor: float) -> Trace:
    return trace.replace(arrival=trace.arrival * factor)


def shift_to_zero(trace: Trace) -> Trace:
    if not len(trace):
        return trace
    return trace.replace(arrival=trace.arrival - trace.arrival[0])


def top_n(trace: Trace, n: int, merge: bool = False) -> Trace:
    """Keep the N most requested models; the rest are dropped or merged into ``other``."""
    counts = np.bincount(trace.model, minlength=len(trace.models))
    ranked = sorted(range(len(trace.models)), key=lambda i: (-int(counts[i]), trace.models[i]))
    top = set(ranked[:n])
    if merge and len(ranked) > n:
        names = [trace.models[i] if i in top else "other" for i in range(len(trace.models))]
        return rename(trace, dict(zip(trace.models, names, strict=True)))
    keep = np.isin(trace.model, np.array(sorted(top), dtype=trace.model.dtype))
    return trace.take(keep).drop_unused_models()


def rename(trace: Trace, mapping: Mapping[str, str]) -> Trace:
    new_names = [mapping.get(m, m) for m in trace.models]
    models = sorted(set(new_names))
    index = {m: i for i, m in enumerate(models)}
    remap = np.array([index[m] for m in new_names], dtype=np.int32)
    return trace.replace(model=remap[trace.model] if len(trace) else trace.model, models=models)


def superpose(traces: Sequence[Trace]) -> Trace:
    """Several traces as one (each keeps its model names; arrivals merged in time order)."""
    if not traces:
        raise TraceError("superpose: needs at least one trace")
    models = sorted({m for t in traces for m in t.models})
    parts = [t.with_models(models) for t in traces]
    with_ids = any(t.ids is not None for t in parts)
    ids: list[str] | None = None
    if with_ids:
        ids = []
        for k, t in enumerate(parts):
            ids += t.ids if t.ids is not None else [f"{k}:{i}" for i in range(len(t))]
    merged = Trace(
        arrival=np.concatenate([t.arrival for t in parts]),
        model=np.concatenate([t.model for t in parts]).astype(np.int32),
        models=models,
        prompt_tokens=np.concatenate([t.prompt_tokens for t in parts]),
        output_tokens=np.concatenate([t.output_tokens for t in parts]),
        service_time=np.concatenate([t.service_time for t in parts]),
        cancel_after=np.concatenate([t.cancel_after for t in parts]),
        ids=ids,
        source=" + ".join(t.source for t in parts),
    )
    return merged.sorted()
