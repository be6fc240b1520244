"""The three evaluation workloads of issue 6, built from the real traces with the simulator's importers.

Each workload is a base trace (a contiguous slice of a real trace), a timing profile per model and
two load-time settings. ``offered load`` is defined against one GPU that holds one model at a time:
``rho = arrival rate * mean service time / parallel slots``; a target rho is reached by compressing or
stretching the slice's arrival times (its burstiness and model mix are kept).
"""

from __future__ import annotations

import csv
import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from llamaswap.core.spec import ModelSpec, RoutingSpec
from llamaswap.timing import Distribution, TimingProfile
from sim.importers import import_alibaba, import_azure, import_mooncake, import_servegen
from sim.shared import CHECKOUT, shared_dir
from sim.trace import Trace
from sim.transforms import superpose, time_scale, top_n, window

RAW = (shared_dir() or CHECKOUT.parent / "shared") / "traces" / "raw"
"""``traces/raw`` in the shared directory (``sim.shared``; read in place, never copied)."""

ADMISSION_LIMIT = 100_000
"""No 429s in the evaluation: a rejected request would hide latency instead of measuring it."""


@dataclass(frozen=True)
class LoadSetting:
    """One model-load time setting: a label and the load-time distribution per model."""

    name: str
    label: str
    load_time: Distribution


@dataclass(frozen=True)
class Workload:
    name: str
    title: str
    trace: Trace
    """The base slice, arrival times as recorded (before load scaling)."""
    profile: TimingProfile
    """Service-time model and parallel slots (the load time is set per :class:`LoadSetting`)."""
    settings: tuple[LoadSetting, ...]
    note: str

    @property
    def models(self) -> list[str]:
        return list(self.trace.models)

    def mean_service(self) -> float:
        """Mean service time of the slice's requests under the profile (or as traced)."""
        return float(self.service_times().mean())

    def natural_load(self) -> float:
        span = float(self.trace.arrival[-1] - self.trace.arrival[0])
        rate = len(self.trace) / span
        return rate * self.mean_service() / self.profile.parallel

    def at_load(self, rho: float) -> Trace:
        """The slice compressed or stretched in time to offer ``rho`` of one GPU's capacity."""
        return time_scale(self.trace, self.natural_load() / rho)

    def profiles(self, setting: LoadSetting) -> dict[str, TimingProfile]:
        profile = dataclasses.replace(self.profile, load_time=setting.load_time)
        return {m: profile for m in self.models}

    def service_times(self) -> np.ndarray:
        """Per-request service seconds (traced, or from the token counts under the profile)."""
        service = self.trace.service_time
        if not np.isnan(service).any():
            return service
        return np.array(
            [
                self.profile.service_time(None if a < 0 else int(a), None if b < 0 else int(b))
                for a, b in zip(
                    self.trace.prompt_tokens.tolist(),
                    self.trace.output_tokens.tolist(),
                    strict=True,
                )
            ]
        )

    def peak_load(self, rho: float, window: float) -> tuple[float, float]:
        """Burstiness at offered load ``rho``: the highest offered load in any aligned ``window``
        seconds (all models, then the busiest single model), in the same units as ``rho``."""
        trace = self.at_load(rho)
        service = self.service_times()
        span = float(trace.arrival[-1])
        bins = np.arange(0.0, span + window, window)
        scale = window * self.profile.parallel
        total, _ = np.histogram(trace.arrival, bins, weights=service)
        single = max(
            float(
                np.histogram(
                    trace.arrival[trace.model == k], bins, weights=service[trace.model == k]
                )[0].max()
            )
            for k in range(len(trace.models))
        )
        return float(total.max()) / scale, single / scale

    def resident_profiles(self) -> dict[str, TimingProfile]:
        """For the lower bound: no load cost at all."""
        profile = dataclasses.replace(self.profile, load_time=Distribution("constant", 0.0))
        return {m: profile for m in self.models}


def routing(
    models: list[str], scheduler: str, settings: Mapping[str, object] | None = None
) -> RoutingSpec:
    """All models in one swap group (the default group): one GPU, one model resident at a time."""
    return RoutingSpec(
        models={m: ModelSpec(m, concurrency_limit=ADMISSION_LIMIT) for m in models},
        scheduler=scheduler,
        scheduler_settings=dict(settings or {}),
    )


def resident_routing(models: list[str]) -> RoutingSpec:
    """The lower bound: every model always resident with its own slots (own non-exclusive group)."""
    from llamaswap.core.spec import GroupSpec

    return RoutingSpec(
        models={m: ModelSpec(m, concurrency_limit=ADMISSION_LIMIT) for m in models},
        groups=tuple(GroupSpec(f"only-{m}", (m,), swap=True, exclusive=False) for m in models),
        scheduler="fifo",
    )


def free_swap_trace(trace: Trace) -> Trace:
    """The second bound: every request on one model, so one GPU with the same slots serves them in
    arrival order and no load is ever needed (swaps cost nothing)."""
    return (
        trace.with_models([*trace.models, FREE_SWAP_MODEL])
        .replace(model=np.full(len(trace), len(trace.models), dtype=np.int32))
        .drop_unused_models()
    )


FREE_SWAP_MODEL = "any"


def _lognormal(median: float) -> Distribution:
    return Distribution("lognormal", median, sigma=0.3)


def _latencies_ms(path: Path) -> tuple[float, ...]:
    with path.open(newline="") as handle:
        return tuple(float(row["value"]) / 1000.0 for row in csv.DictReader(handle))


LLM_SETTINGS = (
    LoadSetting("fast", "load ~3 s (llama.cpp, small model)", _lognormal(3.0)),
    LoadSetting("slow", "load ~30 s (large model)", _lognormal(30.0)),
)

LLM_PROFILE = TimingProfile(
    parallel=4,
    ttft_overhead=0.05,
    prefill_tps=4000.0,
    decode_tps=40.0,
    default_prompt_tokens=512,
    default_output_tokens=128,
)


def azure_mooncake(raw: Path = RAW) -> Workload:
    azure = import_azure(
        [
            raw / "azure-llm-2023/AzureLLMInferenceTrace_code.csv",
            raw / "azure-llm-2023/AzureLLMInferenceTrace_conv.csv",
        ]
    )
    kimi = import_mooncake([raw / "mooncake-fast25/conversation_trace.jsonl"])
    base = superpose([window(azure, 0.0, 600.0), window(kimi, 0.0, 600.0)])
    return Workload(
        "azure-mooncake",
        "(a) Azure code + Azure conv + Mooncake, three models",
        base,
        LLM_PROFILE,
        LLM_SETTINGS,
        "first 10 minutes of each trace superposed; tokens as traced; 4 slots, 4000 tok/s prefill, 40 tok/s decode",
    )


def hot_and_rare(raw: Path = RAW, rare_share: float = 0.05, seed: int = 3) -> Workload:
    """Not one of the issue's three: a starvation probe. Azure conv (hot) with a thinned Azure code
    stream (rare): the shape where fifo's serve-until-idle starves the rare model."""
    azure = window(
        import_azure(
            [
                raw / "azure-llm-2023/AzureLLMInferenceTrace_code.csv",
                raw / "azure-llm-2023/AzureLLMInferenceTrace_conv.csv",
            ]
        ),
        0.0,
        1200.0,
    )
    rng = np.random.default_rng(seed)
    keep = (azure.model == azure.models.index("conv")) | (rng.random(len(azure)) < rare_share)
    return Workload(
        "hot-rare",
        "(d) extra: Azure conv (hot) + 5% of Azure code (rare)",
        azure.take(keep),
        LLM_PROFILE,
        LLM_SETTINGS,
        f"first 20 minutes; every conv request, each code request kept with probability {rare_share:g} (seed {seed}); a starvation probe, not one of the issue's workloads",
    )


def alibaba(raw: Path = RAW, n_models: int = 5, day: int = 19, hours: float = 12.0) -> Workload:
    """The busiest day's active half (day 19, 00:00-12:00 trace time). The trace is diurnal: the
    other 12 hours of each day carry a few percent of the requests, so a multi-day slice scaled to
    an average load would be idle at night and overloaded 2-4x by day, and "70%" would mean
    nothing (the earlier 3-day slice had a single model alone at 1.7x capacity for half an hour)."""
    root = raw / "alibaba-gentd26"
    trace = top_n(import_alibaba([root / "lora_request_trace.csv"]), n_models)
    trace = window(trace, day * 86400.0, hours * 3600.0)
    settings = (
        LoadSetting(
            "fast",
            "measured LoRA loads (p50 4.4 s)",
            Distribution("empirical", samples=_latencies_ms(root / "lora_update_latency_anon.csv")),
        ),
        LoadSetting(
            "slow",
            "measured base-model loads (p50 22.7 s)",
            Distribution(
                "empirical", samples=_latencies_ms(root / "basemodel_update_latency_anon.csv")
            ),
        ),
    )
    return Workload(
        "alibaba",
        f"(b) Alibaba GenTD26, top {n_models} base models",
        trace,
        TimingProfile(parallel=1),
        settings,
        f"day {day} 00:00-{hours:02.0f}:00 of the trace (its busiest day, active hours), top {n_models} models; service = traced exec_time_seconds; one image at a time",
    )


def servegen(raw: Path = RAW, n_models: int = 4) -> Workload:
    trace = import_servegen(
        [raw / "servegen/language/m-large"],
        models=n_models,
        start=86400.0 + 12 * 3600.0,
        duration=900.0,
        rate_scale=0.02,
        seed=11,
        prefix="mlarge",
    )
    return Workload(
        "servegen",
        f"(c) ServeGen m-large clients striped onto {n_models} models",
        trace,
        LLM_PROFILE,
        LLM_SETTINGS,
        "day 2 12:00-12:15, arrivals synthesised per client window (rate x0.02), client i -> model i mod 4; 512/128 tokens",
    )
