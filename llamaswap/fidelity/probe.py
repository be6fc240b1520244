"""Measure, once per fidelity run, what a real swap and a real request cost beyond the timing model.

A separate, tiny run of the real daemon (one model, sequential requests, an unload after each) gives
three machine constants the simulator is then told about (documented in ``docs/fidelity.md``):

- ``load_extra``: starting -> ready minus the configured load time (process exec, health-probe
  cadence, the core's event path);
- ``unload``: stopping -> stopped (SIGTERM to exit, reaped);
- ``serve_extra``: grant -> done minus the timing model's service time (the proxy hop, HTTP
  framing, JSON encoding, timer granularity).

They are measured on a different run from the one compared, so the comparison is not fitted to
its own answer.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import aiohttp

from llamaswap.fidelity.live import REQUEST_ID_HEADER, live_daemon, request_body
from llamaswap.record import read_log
from llamaswap.record.calibrate import collect_requests
from llamaswap.timing import Distribution, TimingProfile

PROBE_PROFILE = TimingProfile(
    load_time=Distribution("constant", 1.0),
    parallel=1,
    ttft_overhead=0.02,
    prefill_tps=4000.0,
    decode_tps=200.0,
)


@dataclass(frozen=True)
class Overheads:
    load_extra: float = 0.0
    unload: float = 0.0
    serve_extra: float = 0.0
    samples: int = 0

    def apply(self, profile: TimingProfile) -> TimingProfile:
        """The profile the simulator should run so it matches this machine's real daemon."""
        import dataclasses

        load = profile.load_time
        if load.kind == "constant":
            load = Distribution("constant", load.value + self.load_extra)
        return dataclasses.replace(
            profile,
            load_time=load,
            unload_time=profile.unload_time + self.unload,
            ttft_overhead=profile.ttft_overhead + self.serve_extra,
        )

    def as_dict(self) -> dict[str, Any]:
        return {k: round(v, 6) if isinstance(v, float) else v for k, v in asdict(self).items()}


async def measure_overheads(
    out: Path, rounds: int = 5, load_time: float | None = None
) -> Overheads:
    """Load, serve and unload a probe model ``rounds`` times on a real daemon; return medians.

    ``load_time``: the probe model's load (default 1 s); give the compared run's, so start-up that
    its loads hide is hidden here too (see ``harness.probe_load_time``).
    """
    import dataclasses

    config = {"healthCheckTimeout": 30, "models": {"probe": {"concurrencyLimit": 4}}}
    profile = PROBE_PROFILE
    if load_time is not None:
        profile = dataclasses.replace(profile, load_time=Distribution("constant", load_time))
    profiles = {"probe": profile}
    async with (
        live_daemon(config, profiles, "serial", out) as (url, log_path),
        aiohttp.ClientSession() as session,
    ):
        for i in range(rounds):
            for j in range(2):  # one request on a cold model, one on a warm one
                body = request_body("probe", 100 + 50 * j, 20 + 10 * i, False)
                headers = {REQUEST_ID_HEADER: f"probe-{i}-{j}"}
                async with session.post(
                    url + "/v1/chat/completions", data=body, headers=headers
                ) as response:
                    await response.read()
            async with session.post(url + "/api/models/unload/probe") as response:
                await response.read()
    records = read_log(log_path)
    requests, _, loads, unloads = collect_requests(records)
    serve = [
        (r.done - r.grant) - profile.service_time(r.prompt_tokens, r.output_tokens)
        for r in requests
        if r.ok and r.done is not None and r.grant is not None
    ]
    load_extra = [s - profile.load_time.value for s in loads.get("probe", [])]
    return Overheads(
        load_extra=max(0.0, statistics.median(load_extra)) if load_extra else 0.0,
        unload=statistics.median(unloads["probe"]) if unloads.get("probe") else 0.0,
        serve_extra=max(0.0, statistics.median(serve)) if serve else 0.0,
        samples=len(serve),
    )
