"""How long things take: one timing model shared by the simulator and the fake upstream.

A workload therefore has the same expected timing in the daemon (fake upstream processes) as in the
simulator, which is what makes sim-vs-real fidelity comparisons meaningful.

    service_time = ttft_overhead + prompt_tokens / prefill_tps + output_tokens / decode_tps
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


class TimingError(ValueError):
    """A timing profile is malformed; the message names the key."""


@dataclass(frozen=True)
class Distribution:
    """A non-negative random duration: ``constant``, ``lognormal``, ``uniform`` or ``empirical``."""

    kind: str = "constant"
    value: float = 0.0
    """constant: the value; lognormal: the median (seconds)."""
    sigma: float = 0.0
    """lognormal: sigma of the underlying normal."""
    low: float = 0.0
    high: float = 0.0
    samples: tuple[float, ...] = ()

    def sample(self, rng: random.Random) -> float:
        if self.kind == "constant":
            return self.value
        if self.kind == "lognormal":
            return self.value * math.exp(rng.gauss(0.0, self.sigma))
        if self.kind == "uniform":
            return rng.uniform(self.low, self.high)
        return rng.choice(self.samples)

    def mean(self) -> float:
        if self.kind == "constant":
            return self.value
        if self.kind == "lognormal":
            return self.value * math.exp(self.sigma**2 / 2)
        if self.kind == "uniform":
            return (self.low + self.high) / 2
        return sum(self.samples) / len(self.samples)

    @classmethod
    def parse(cls, raw: Any, where: str) -> Distribution:
        """Accept a number (constant), a list (empirical samples) or a mapping with ``kind``."""
        if isinstance(raw, bool):
            raise TimingError(f"{where}: expected seconds or a distribution, got a boolean")
        if isinstance(raw, int | float):
            if raw < 0:
                raise TimingError(f"{where}: must be >= 0, got {raw}")
            return cls("constant", float(raw))
        if isinstance(raw, Sequence) and not isinstance(raw, str):
            values = tuple(_number(v, f"{where}[{i}]") for i, v in enumerate(raw))
            if not values:
                raise TimingError(f"{where}: an empirical list needs at least one sample")
            return cls("empirical", samples=values)
        if isinstance(raw, Mapping):
            kind = raw.get("kind", "constant")
            if kind == "constant":
                return cls("constant", _number(raw.get("value", 0.0), f"{where}.value"))
            if kind == "lognormal":
                median = _number(raw.get("median", raw.get("value")), f"{where}.median")
                sigma = _number(raw.get("sigma", 0.5), f"{where}.sigma")
                return cls("lognormal", median, sigma=sigma)
            if kind == "uniform":
                low = _number(raw.get("low"), f"{where}.low")
                high = _number(raw.get("high"), f"{where}.high")
                if high < low:
                    raise TimingError(f"{where}: high ({high}) is below low ({low})")
                return cls("uniform", low=low, high=high)
            if kind == "empirical":
                return cls.parse(list(raw.get("samples") or []), f"{where}.samples")
            raise TimingError(
                f"{where}.kind: unknown distribution {kind!r} "
                "(valid: constant, lognormal, uniform, empirical)"
            )
        raise TimingError(f"{where}: expected seconds or a distribution, got {type(raw).__name__}")


def _number(raw: Any, where: str) -> float:
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise TimingError(f"{where}: expected a number, got {raw!r}")
    if raw < 0 or math.isnan(raw):
        raise TimingError(f"{where}: must be >= 0, got {raw}")
    return float(raw)


@dataclass(frozen=True)
class TimingProfile:
    """How one model server behaves in time."""

    load_time: Distribution = field(default_factory=lambda: Distribution("constant", 2.0))
    unload_time: float = 0.0
    parallel: int = 1
    ttft_overhead: float = 0.0
    prefill_tps: float = 2000.0
    decode_tps: float = 50.0
    default_prompt_tokens: int = 256
    default_output_tokens: int = 128
    load_failure_prob: float = 0.0
    crash_rate: float = 0.0
    """Crashes per second of serving (exponential), for fault injection in the simulator."""
    service_noise: Distribution = field(default_factory=lambda: Distribution("constant", 1.0))
    """A multiplicative factor drawn per request: real servers are not exactly linear in tokens.
    Calibration from a recorded log fills it with the observed actual/fitted ratios, so simulated
    tails (p99) look like the real ones instead of like the fitted mean."""
    first_request_overhead: float = 0.0
    """Extra seconds (before the first token) for the first request a freshly loaded process serves:
    llama.cpp allocates and warms its compute buffers on first use, so that request runs ~5-8%
    slower than the formula. Calibration measures it from a log; 0 = no warm-up."""

    def noise_factor(self, rng: random.Random) -> float:
        """One draw of ``service_noise`` (exactly 1.0, without touching ``rng``, when there is none)."""
        noise = self.service_noise
        if noise.kind == "constant":
            return noise.value
        return noise.sample(rng)

    def time_to_first_token(
        self, prompt_tokens: int | None, first_on_process: bool = False
    ) -> float:
        prompt = self.default_prompt_tokens if prompt_tokens is None else prompt_tokens
        warm_up = self.first_request_overhead if first_on_process else 0.0
        return self.ttft_overhead + warm_up + prompt / self.prefill_tps

    def token_interval(self) -> float:
        return 1.0 / self.decode_tps

    def service_time(
        self, prompt_tokens: int | None, output_tokens: int | None, first_on_process: bool = False
    ) -> float:
        """The formula; ``first_on_process``: the first request of a fresh process (warm-up)."""
        output = self.default_output_tokens if output_tokens is None else output_tokens
        return self.time_to_first_token(prompt_tokens, first_on_process) + output / self.decode_tps

    @classmethod
    def parse(cls, raw: Mapping[str, Any] | None, where: str = "timing") -> TimingProfile:
        raw = dict(raw or {})
        known = {
            "load_time",
            "service_noise",
            "first_request_overhead",
            "unload_time",
            "parallel",
            "ttft_overhead",
            "prefill_tps",
            "decode_tps",
            "default_prompt_tokens",
            "default_output_tokens",
            "load_failure_prob",
            "crash_rate",
        }
        unknown = sorted(set(raw) - known)
        if unknown:
            raise TimingError(f"{where}: unknown keys {unknown} (valid: {sorted(known)})")
        kwargs: dict[str, Any] = {}
        if "load_time" in raw:
            kwargs["load_time"] = Distribution.parse(raw["load_time"], f"{where}.load_time")
        if "service_noise" in raw:
            noise = Distribution.parse(raw["service_noise"], f"{where}.service_noise")
            if noise.mean() <= 0:
                raise TimingError(f"{where}.service_noise: the factor's mean must be > 0")
            kwargs["service_noise"] = noise
        for key in ("unload_time", "ttft_overhead", "crash_rate", "first_request_overhead"):
            if key in raw:
                kwargs[key] = _number(raw[key], f"{where}.{key}")
        for key in ("prefill_tps", "decode_tps"):
            if key in raw:
                value = _number(raw[key], f"{where}.{key}")
                if value <= 0:
                    raise TimingError(f"{where}.{key}: must be > 0")
                kwargs[key] = value
        for key in ("parallel", "default_prompt_tokens", "default_output_tokens"):
            if key in raw:
                value = raw[key]
                if (
                    isinstance(value, bool)
                    or not isinstance(value, int)
                    or value < (key == "parallel")
                ):
                    raise TimingError(
                        f"{where}.{key}: expected a non-negative integer, got {value!r}"
                    )
                kwargs[key] = value
        if "load_failure_prob" in raw:
            p = _number(raw["load_failure_prob"], f"{where}.load_failure_prob")
            if p > 1:
                raise TimingError(f"{where}.load_failure_prob: must be within [0, 1]")
            kwargs["load_failure_prob"] = p
        return cls(**kwargs)
