"""Measure, once per fidelity run, what a real swap and a real request cost beyond the timing model.

A separate, tiny run of the real daemon (one model, sequential requests, an unload after each) gives
four machine constants the simulator is then told about (documented in ``docs/fidelity.md``):

- ``load_extra``: starting -> ready minus the configured load time, for a load long enough to
  hide the process's start-up (health-probe cadence, the core's event path);
- ``start_up``: starting -> ready of a process with no load (exec, interpreter, bind): a load
  shorter than this takes this long;
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
    start_up: float = 0.0
    """Seconds until a fake upstream with no load at all is ready: a shorter load takes this."""

    def apply(self, profile: TimingProfile) -> TimingProfile:
        """The profile the simulator should run so it matches this machine's real daemon."""
        import dataclasses

        load = profile.load_time
        if load.kind == "constant":
            load = Distribution("constant", max(load.value, self.start_up) + self.load_extra)
        return dataclasses.replace(
            profile,
            load_time=load,
            unload_time=profile.unload_time + self.unload,
            ttft_overhead=profile.ttft_overhead + self.serve_extra,
        )

    def as_dict(self) -> dict[str, Any]:
        return {k: round(v, 6) if isinstance(v, float) else v for k, v in asdict(self).items()}


HIDDEN_LOAD = 2.0
"""Seconds of the probe model's load: longer than a fake upstream's start-up even on a loaded box,
so its loads measure only what follows the load (health-poll cadence, the event path)."""


async def measure_overheads(out: Path, rounds: int = 5) -> Overheads:
    """Load, serve and unload two probe models ``rounds`` times on a real daemon; return medians.

    A fake upstream counts its load from process creation, so interpreter start-up is hidden in
    a load longer than it and adds to a shorter one. ``probe`` (a 2 s load) measures the cost
    after a load, ``cold`` (no load at all) the start-up; the simulator then loads for
    ``max(load_time, start_up) + load_extra``. Adding one probe's whole excess to every load, as
    before, made short runs 17-87% slow on a busy box (issue 21).
    """
    import dataclasses

    models = {"probe": {"concurrencyLimit": 4}, "cold": {"concurrencyLimit": 4}}
    config = {"healthCheckTimeout": 30, "models": models}
    hidden = dataclasses.replace(PROBE_PROFILE, load_time=Distribution("constant", HIDDEN_LOAD))
    cold = dataclasses.replace(PROBE_PROFILE, load_time=Distribution("constant", 0.0))
    profiles = {"probe": hidden, "cold": cold}
    async with (
        live_daemon(config, profiles, "serial", out) as (url, log_path),
        aiohttp.ClientSession() as session,
    ):
        for i in range(rounds):
            for model, j in (("probe", 0), ("probe", 1), ("cold", 0)):
                # probe: one request on a cold model, one on a warm one; then a start-up
                body = request_body(model, 100 + 50 * j, 20 + 10 * i, False)
                headers = {REQUEST_ID_HEADER: f"{model}-{i}-{j}"}
                async with session.post(
                    url + "/v1/chat/completions", data=body, headers=headers
                ) as response:
                    await response.read()
            async with session.post(url + "/api/models/unload") as response:
                await response.read()
    records = read_log(log_path)
    requests, _, loads, unloads = collect_requests(records)
    serve = [
        (r.done - r.grant) - profiles[r.model].service_time(r.prompt_tokens, r.output_tokens)
        for r in requests
        if r.ok and r.done is not None and r.grant is not None
    ]
    after = [s - HIDDEN_LOAD for s in loads.get("probe", [])]
    load_extra = max(0.0, statistics.median(after)) if after else 0.0
    starts = loads.get("cold", [])
    stops = unloads.get("probe", []) + unloads.get("cold", [])
    return Overheads(
        load_extra=load_extra,
        unload=statistics.median(stops) if stops else 0.0,
        serve_extra=max(0.0, statistics.median(serve)) if serve else 0.0,
        samples=len(serve),
        start_up=max(0.0, statistics.median(starts) - load_extra) if starts else 0.0,
    )
