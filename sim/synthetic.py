"""Synthetic traces: Poisson or Gamma arrivals per model, Zipf popularity, bursts.

Spec (a mapping, e.g. the ``trace.synthetic`` block of a scenario)::

    duration: 600            # seconds
    rate: 1.5                # total requests/s across models
    models: [A, B, C]        # or {A: {weight: 3}, B: {rate: 0.2}, ...}
    zipf: 1.0                # popularity weight of the k-th model = 1/k^s (when no weights given)
    arrivals: poisson        # or {gamma: {cv: 2.0}}
    bursts: [{start: 100, duration: 30, factor: 5, model: A}]   # model optional = all
    prompt_tokens: 512       # seconds-free distributions (constant/lognormal/uniform/empirical)
    output_tokens: {kind: lognormal, median: 200, sigma: 0.6}
    cancel: {prob: 0.05, after: 30}
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from llamaswap.timing import Distribution, TimingError
from sim.trace import Trace, TraceError

_KEYS = {
    "duration",
    "rate",
    "models",
    "zipf",
    "arrivals",
    "bursts",
    "prompt_tokens",
    "output_tokens",
    "cancel",
}


def synthetic_trace(spec: Mapping[str, Any], seed: int, where: str = "synthetic") -> Trace:
    unknown = sorted(set(spec) - _KEYS)
    if unknown:
        raise TraceError(f"{where}: unknown keys {unknown} (valid: {sorted(_KEYS)})")
    rng = np.random.default_rng(seed)
    duration = _positive(spec.get("duration", 600), f"{where}.duration")
    rates = _model_rates(spec, where)
    shape = _arrival_shape(spec.get("arrivals", "poisson"), f"{where}.arrivals")
    times: list[np.ndarray] = []
    names: list[np.ndarray] = []
    for model, rate in rates.items():
        t = _renewal(rng, rate, duration, shape)
        times.append(t)
        names.append(np.full(len(t), model, dtype=object))
    for i, burst in enumerate(spec.get("bursts") or []):
        bw = f"{where}.bursts[{i}]"
        if not isinstance(burst, Mapping):
            raise TraceError(f"{bw}: expected a mapping with start, duration, factor")
        b_start = _nonneg(burst.get("start", 0), f"{bw}.start")
        b_len = _positive(burst.get("duration", 60), f"{bw}.duration")
        factor = _positive(burst.get("factor", 3), f"{bw}.factor")
        targets = [burst["model"]] if "model" in burst else list(rates)
        for model in targets:
            if model not in rates:
                raise TraceError(f"{bw}.model: {model!r} is not one of {list(rates)}")
            extra = rates[model] * max(factor - 1.0, 0.0)
            if extra <= 0:
                continue
            t = b_start + _renewal(rng, extra, b_len, None)
            t = t[t < duration]
            times.append(t)
            names.append(np.full(len(t), model, dtype=object))
    arrival = np.concatenate(times) if times else np.zeros(0)
    model_names = np.concatenate(names) if names else np.zeros(0, dtype=object)
    order = np.argsort(arrival, kind="stable")
    arrival, model_names = arrival[order], model_names[order]
    n = len(arrival)
    py_rng = _py_rng(seed)
    prompt = _tokens(spec.get("prompt_tokens"), n, py_rng, f"{where}.prompt_tokens")
    output = _tokens(spec.get("output_tokens"), n, py_rng, f"{where}.output_tokens")
    cancel = None
    if spec.get("cancel") is not None:
        cancel = _cancel_column(spec["cancel"], n, rng, f"{where}.cancel")
    trace = Trace.build(
        arrival,
        model_names,
        prompt_tokens=prompt,
        output_tokens=output,
        cancel_after=cancel,
        source=f"synthetic(seed={seed})",
    )
    return trace.with_models(sorted(rates))


def _py_rng(seed: int) -> Any:
    import random

    return random.Random(f"{seed}:tokens")


def _model_rates(spec: Mapping[str, Any], where: str) -> dict[str, float]:
    raw = spec.get("models")
    total = spec.get("rate")
    if isinstance(raw, list) and raw:
        zipf = float(spec.get("zipf", 0.0))
        weights = {str(m): 1.0 / (k + 1) ** zipf for k, m in enumerate(raw)}
        explicit: dict[str, float] = {}
    elif isinstance(raw, Mapping) and raw:
        weights, explicit = {}, {}
        for model, opts in raw.items():
            opts = opts or {}
            if not isinstance(opts, Mapping):
                raise TraceError(f"{where}.models.{model}: expected a mapping (weight or rate)")
            if "rate" in opts:
                explicit[str(model)] = _nonneg(opts["rate"], f"{where}.models.{model}.rate")
            else:
                weights[str(model)] = _positive(
                    opts.get("weight", 1.0), f"{where}.models.{model}.weight"
                )
    else:
        raise TraceError(f"{where}.models: give a non-empty list of model ids or a mapping")
    rates = dict(explicit)
    if weights:
        if total is None:
            raise TraceError(f"{where}.rate: required to split the rate over weighted models")
        remaining = _nonneg(total, f"{where}.rate") - sum(explicit.values())
        scale = max(remaining, 0.0) / sum(weights.values())
        rates.update({m: w * scale for m, w in weights.items()})
    return dict(sorted(rates.items()))


def _arrival_shape(raw: Any, where: str) -> float | None:
    """None = Poisson; otherwise the Gamma shape k (CV = 1/sqrt(k))."""
    if raw in (None, "poisson"):
        return None
    if isinstance(raw, Mapping) and "gamma" in raw:
        gamma = raw["gamma"] or {}
        cv = _positive(gamma.get("cv", 1.0), f"{where}.gamma.cv")
        return 1.0 / cv**2
    raise TraceError(f"{where}: expected 'poisson' or {{gamma: {{cv: X}}}}, got {raw!r}")


def _renewal(
    rng: np.random.Generator, rate: float, duration: float, shape: float | None
) -> np.ndarray:
    if rate <= 0:
        return np.zeros(0)
    expected = int(rate * duration * 1.2) + 32
    chunks: list[np.ndarray] = []
    t = 0.0
    while t < duration:
        if shape is None:
            gaps = rng.exponential(1.0 / rate, expected)
        else:
            gaps = rng.gamma(shape, 1.0 / (rate * shape), expected)
        chunk = t + np.cumsum(gaps)
        chunks.append(chunk)
        t = float(chunk[-1])
    times = np.concatenate(chunks)
    return times[times < duration]


def _tokens(raw: Any, n: int, rng: Any, where: str) -> np.ndarray | None:
    if raw is None:
        return None
    try:
        dist = Distribution.parse(raw, where)
    except TimingError as exc:
        raise TraceError(str(exc)) from None
    if dist.kind == "constant":
        return np.full(n, round(dist.value), dtype=np.int64)
    return np.fromiter((round(dist.sample(rng)) for _ in range(n)), dtype=np.int64, count=n)


def _cancel_column(raw: Any, n: int, rng: np.random.Generator, where: str) -> np.ndarray:
    if not isinstance(raw, Mapping):
        raise TraceError(f"{where}: expected {{prob: P, after: SECONDS}}")
    prob = _nonneg(raw.get("prob", 1.0), f"{where}.prob")
    if prob > 1:
        raise TraceError(f"{where}.prob: must be within [0, 1]")
    after = _positive(raw.get("after", 30), f"{where}.after")
    column = np.full(n, np.nan)
    column[rng.random(n) < prob] = after
    return column


def _positive(raw: Any, where: str) -> float:
    value = _nonneg(raw, where)
    if value <= 0:
        raise TraceError(f"{where}: must be > 0")
    return value


def _nonneg(raw: Any, where: str) -> float:
    if isinstance(raw, bool) or not isinstance(raw, int | float) or raw != raw or raw < 0:
        raise TraceError(f"{where}: expected a non-negative number, got {raw!r}")
    return float(raw)
