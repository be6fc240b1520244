"""Real-inference fidelity: the daemon with real llama.cpp upstreams vs the simulator, same trace.

For each scheduler (serial, fifo):

1. Workload: ``--requests`` requests picked evenly over the hour of the Azure LLM inference 2023 traces
   (read in place from ``traces/raw/azure-llm-2023`` in the shared directory, ``sim.shared``; the
   *code* service -> ``smollm2``,
   the *conversation* service -> ``smollm2-lite``), arrivals time-compressed into ``--duration``
   seconds, token counts scaled into the tiny model's context (prompt / 20, conversation output / 4,
   clamped). Prompts are real text of that many tokens with a unique head, so llama.cpp cannot reuse
   a cached prefix and every prefill is paid in full.
2. Real: ``llamaswap serve --record`` with ``examples/config-llamacpp.yaml`` (scheduler and ports
   adjusted, concurrency limit raised so nothing is rejected); an open-loop client sends each request
   at its arrival time with ``X-Request-Id`` = the trace id (non-streaming ``/v1/completions``, so the
   upstream's usage gives the real token counts).
3. Calibrate: ``llamaswap.record.calibrate`` on that log: per-model service-time fit (with the
   warm-up of the first request on each fresh process), service noise and load-time samples, plus
   the canonical trace (real arrivals and real token counts).
4. Simulate: the same trace, routing spec (from the log's meta) and calibrated profiles through the
   simulator, which writes the same event log (``sim.eventlog``; trace and profiles from the log as
   ``sim.replay`` makes them); once per seed of
   ``--seeds`` (the calibrated run is random), and once as a *measured* replay (every request's
   real service time, every load and stop its real duration: deterministic).
5. Compare: ``llamaswap.record.compare``: loads (swap count and model sequence), grant order, latency
   and wait percentiles with relative errors. The calibrated swap count is reported as a
   distribution over the seeds next to the real count, with the real log's fifo near-ties
   (``llamaswap.record.ties``): arrivals a few ms from a batch boundary, which decide it.

Writes ``<out>/<scheduler>/{real.jsonl,sim.jsonl,compare.json,calibration.json,client.json}`` and
``<out>/summary.json``, and prints a table. Needs the ``real`` extra. Not a timed test: run it by hand::

    .venv/bin/python bench/real_fidelity.py --requests 200 --duration 360 --seeds 0-19
    .venv/bin/python bench/real_fidelity.py --sim-only --duration 360 --seeds 0-19 --out DIR

``--server llama-server`` runs the same workload on llama.cpp's own binary
(``examples/config-llama-server.yaml``, ``make llama-server``) with one slot per server (``-np 1``), so
the upstream-serial calibration below holds for it as for llama_cpp.server.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import dataclasses
import itertools
import json
import math
import os
import re
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from llamaswap import llamaserver
from llamaswap.daemon.testing import env_with_venv_on_path, free_port_block
from llamaswap.fidelity.live import Outgoing, open_loop, recording_daemon
from llamaswap.fidelity.plots import plot_real_fidelity
from llamaswap.realmodel import gguf_path, llama_cpp_available
from llamaswap.record import read_log
from llamaswap.record.calibrate import calibrate
from llamaswap.record.compare import compare
from llamaswap.record.meta import spec_from_meta
from llamaswap.record.ties import near_ties
from sim.eventlog import ReplayedDurations, simulate_recorded
from sim.replay import calibrated_profiles, log_trace
from sim.shared import shared_path
from sim.trace import write_trace

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "config-llamacpp.yaml"
SERVERS = {
    "llama-cpp-python": EXAMPLE,
    "llama-server": REPO / "examples" / "config-llama-server.yaml",
}
AZURE = "traces/raw/azure-llm-2023"
"""Inside the shared directory (``sim.shared``)."""
SERVICES = {"code": "smollm2", "conv": "smollm2-lite"}
# (max prompt tokens, max output tokens) that fit each model's n_ctx with room for the unique head.
LIMITS = {"smollm2": (600, 32), "smollm2-lite": (300, 32)}
PROMPT_SCALE = 20  # Azure prompts are 1-7k tokens; a 135M model on one busy core needs shorter ones
CONV_OUTPUT_SCALE = 4
TIE_WINDOW = 0.1
"""Seconds: a real fifo arrival this close to its model's batch boundary is a near-tie (reported)."""
WORDS = tuple(
    [
        "the",
        "river",
        "runs",
        "past",
        "old",
        "stone",
        "walls",
        "while",
        "children",
        "count",
        "boats",
        "and",
        "gulls",
        "circle",
        "above",
        "a",
        "quiet",
        "harbour",
        "where",
        "fishermen",
        "mend",
        "their",
        "nets",
        "before",
        "the",
        "evening",
        "tide",
    ]
)


@dataclasses.dataclass(frozen=True)
class Item:
    index: int
    id: str
    """A UUID: llama-cpp-python's server answers 400 to any other ``X-Request-Id`` the proxy passes on."""
    arrival: float
    model: str
    prompt_tokens: int
    output_tokens: int


def build_workload(requests: int, duration: float) -> list[Item]:
    """Evenly spaced picks from the merged code+conv hour, compressed into ``duration`` seconds."""
    rows: list[tuple[datetime, str, int, int]] = []
    for service in SERVICES:
        path = shared_path(f"{AZURE}/AzureLLMInferenceTrace_{service}.csv")
        with path.open(newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                stamp = datetime.fromisoformat(row["TIMESTAMP"][:26])
                rows.append(
                    (stamp, service, int(row["ContextTokens"]), int(row["GeneratedTokens"]))
                )
    rows.sort()
    step = len(rows) / requests
    picked = [rows[int(i * step)] for i in range(requests)]
    origin = picked[0][0]
    span = (picked[-1][0] - origin).total_seconds() or 1.0
    items = []
    for index, (stamp, service, context, generated) in enumerate(picked):
        model = SERVICES[service]
        max_prompt, max_output = LIMITS[model]
        prompt = min(max_prompt, max(16, round(context / PROMPT_SCALE)))
        output = generated if service == "code" else round(generated / CONV_OUTPUT_SCALE)
        items.append(
            Item(
                index=index,
                id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"llamaswap/real-fidelity/{index}")),
                arrival=round((stamp - origin).total_seconds() / span * duration, 6),
                model=model,
                prompt_tokens=prompt,
                output_tokens=min(max_output, max(4, output)),
            )
        )
    return items


def prompt_text(item: Item) -> str:
    """About ``prompt_tokens`` tokens of prose (one token per word for SmolLM2) with a unique head."""
    head = f"Note {item.index}:"
    body = [WORDS[(item.index * 7 + i) % len(WORDS)] for i in range(item.prompt_tokens - 4)]
    return head + " " + " ".join(body)


# ------------------------------------------------------------------------------------- real run


def bench_config(
    start_port: int, scheduler: str, server: str = "llama-cpp-python"
) -> dict[str, Any]:
    data = yaml.safe_load(SERVERS[server].read_text(encoding="utf-8"))
    data["startPort"] = start_port
    data.setdefault("routing", {}).setdefault("scheduler", {})["use"] = scheduler
    for model in data["models"].values():
        model["concurrencyLimit"] = 1000  # measure queueing, not 429s
        # One slot on llama-server: the simulator's parallel 1 (see upstream_serial_view).
        if server == "llama-server":
            model["cmd"] = re.sub(r"-np \d+", "-np 1", model["cmd"])
    return data


async def drive(base: str, workload: Sequence[Item], timeout: float) -> list[dict[str, Any]]:
    """The fidelity harness's open loop (``llamaswap.fidelity.live.open_loop``) on real prompts."""
    outgoing = [
        Outgoing(
            item.arrival,
            "/v1/completions",
            json.dumps(
                {
                    "model": item.model,
                    "prompt": prompt_text(item),
                    "max_tokens": item.output_tokens,
                    "temperature": 0,
                }
            ).encode(),
            {"X-Request-Id": item.id, "Content-Type": "application/json"},
        )
        for item in workload
    ]
    answers, _ = await open_loop(
        base, outgoing, max_connections=0, timeout=timeout, keep_bodies=True
    )
    results = []
    for item, answer in zip(workload, answers, strict=True):
        assert answer is not None  # no deadline: every request is answered or errs
        record: dict[str, Any] = {
            "id": item.id,
            "model": item.model,
            "late": answer.late,
            "status": int(answer.status) if answer.status.isdigit() else answer.status,
            "latency": answer.latency,
        }
        if answer.status == "200":
            record["usage"] = json.loads(answer.body).get("usage")
        results.append(record)
    return results


async def sample_load(samples: list[float], every: float = 5.0) -> None:
    while True:
        samples.append(os.getloadavg()[0])
        await asyncio.sleep(every)


async def drive_and_sample(
    base: str, workload: Sequence[Item], timeout: float
) -> tuple[list[dict[str, Any]], list[float]]:
    samples: list[float] = []
    sampler = asyncio.create_task(sample_load(samples))
    try:
        return await drive(base, workload, timeout), samples
    finally:
        sampler.cancel()


async def run_real(
    workload: Sequence[Item], scheduler: str, out: Path, timeout: float, server: str
) -> Path:
    """The fidelity harness's recording daemon (``llamaswap.fidelity.live``) on llama.cpp."""
    config = bench_config(free_port_block(2), scheduler, server)
    async with recording_daemon(config, out, env_with_venv_on_path()) as (base, log_path):
        results, load = await drive_and_sample(base, workload, timeout)
    (out / "load.json").write_text(json.dumps([round(x, 2) for x in load]))
    (out / "client.json").write_text(json.dumps(sorted(results, key=lambda r: r["id"]), indent=1))
    return log_path


# ------------------------------------------------------------------------------------ sim + compare


def upstream_serial_view(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The log as seen from inside a one-slot upstream, for calibration only.

    llama_cpp.server runs one generation at a time (a global lock). Under ``fifo`` the daemon grants
    several requests of the loaded model at once, so grant -> done includes waiting for that lock,
    and a fit on it would inflate service times. The simulator models the lock itself (``parallel:
    1``), so the service time to fit starts when the previous request on that model finished:
    ``start = max(grant, previous done of the same model)``. Without overlap this changes nothing.
    """
    grants: dict[str, dict[str, Any]] = {}
    model_of: dict[str, str] = {}
    last_done: dict[str, float] = {}
    out = [dict(r) for r in records]
    for record in out:
        if record["ev"] == "grant":
            grants[str(record["id"])] = record
            model_of[str(record["id"])] = str(record["model"])
        elif record["ev"] == "done" and str(record.get("id")) in grants:
            rid = str(record["id"])
            model = model_of[rid]
            grant = grants[rid]
            grant["t"] = max(float(grant["t"]), last_done.get(model, float("-inf")))
            last_done[model] = float(record["t"])
    return out


def simulate_log(
    real_log: Path,
    scheduler: str,
    out: Path,
    seed: int,
    *,
    measured: bool = False,
    sim_log: Path | None = None,
) -> tuple[Path, dict[str, Any]]:
    """Calibrate on ``real_log``, simulate the same trace, write ``sim.jsonl`` (or
    ``sim-measured.jsonl``, or ``sim_log``).

    ``measured``: each request keeps the service time it really had (from the upstream-serial view)
    instead of the fitted formula, and each model's loads and stops take the durations they really
    took, in order. That leaves only the scheduling and the daemon's own timing to compare.
    """
    view = upstream_serial_view(read_log(real_log))
    calibration = calibrate(view)
    rows = calibration.trace_rows()
    if measured:
        service = {
            r.id: r.done - r.grant
            for r in calibration.requests
            if r.ok and r.done is not None and r.grant is not None
        }
        for row in rows:
            row["service_time"] = round(service[row["id"]], 6) if row["id"] in service else None
    suffix = "-measured" if measured else ""
    trace = log_trace(calibration, rows)
    write_trace(trace, out / f"trace{suffix}.csv")
    profiles = calibrated_profiles(calibration, {})
    if measured:
        profiles = {
            model: dataclasses.replace(
                profile,
                load_time=ReplayedDurations(tuple(calibration.fits[model].load_samples)),  # type: ignore[arg-type]
            )
            if calibration.fits[model].load_samples
            else profile
            for model, profile in profiles.items()
        }
    spec = spec_from_meta(calibration.meta, str(real_log))
    sim_log = sim_log or out / f"sim{suffix}.jsonl"
    stops = (
        {m: fit.unload_samples for m, fit in calibration.fits.items() if fit.unload_samples}
        if measured
        else None
    )
    simulate_recorded(spec, scheduler, trace, profiles, seed, sim_log, stop_durations=stops)
    fits = {
        model: {
            "samples": fit.samples,
            "ttft_overhead": fit.ttft_overhead,
            "prefill_tps": fit.prefill_tps,
            "decode_tps": fit.decode_tps,
            "first_request_overhead": fit.first_request_overhead,
            "first_samples": fit.first_samples,
            "mape": fit.mape,
            "load_time_median": float(sorted(fit.load_samples)[len(fit.load_samples) // 2])
            if fit.load_samples
            else None,
            "loads": len(fit.load_samples),
        }
        for model, fit in calibration.fits.items()
    }
    return sim_log, fits


def summarize(verdict: dict[str, Any]) -> dict[str, Any]:
    return {
        "completed": verdict["completed"],
        "loads": verdict["loads"]["count"],
        "same_load_sequence": verdict["loads"]["identical"],
        "same_grant_order": verdict["grant_order"]["identical"],
        "latency": {
            key: {k: round(v, 4) for k, v in value.items()}
            for key, value in verdict["latency"].items()
        },
        "wait": {
            key: {k: round(v, 4) for k, v in value.items()}
            for key, value in verdict["wait"].items()
        },
    }


def parse_seeds(text: str) -> list[int]:
    """``"0-19"``, ``"3"`` or ``"0,4,7-9"`` -> the seeds, in order, without repeats."""
    seeds: list[int] = []
    for part in text.split(","):
        first, dash, last = part.strip().partition("-")
        try:
            low = int(first)
            high = int(last) if dash else low
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"--seeds {text!r}: expected N, A-B or a comma list of them"
            ) from None
        if high < low or low < 0:
            raise argparse.ArgumentTypeError(
                f"--seeds {text!r}: {part!r} is not an ascending range"
            )
        seeds += [n for n in range(low, high + 1) if n not in seeds]
    return seeds


def seed_spread(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The calibrated runs over several seeds: the swap count as a distribution, errors as ranges.

    One calibrated run is one draw: per-request service noise decides near-ties at fifo batch
    boundaries (see ``llamaswap.record.ties``), so its swap count alone says little.
    """
    real = rows[0]["loads"]["real"]
    loads = [row["loads"]["sim"] for row in rows]

    def spread(values: list[float]) -> dict[str, float]:
        return {
            "median": round(statistics.median(values), 4),
            "min": round(min(values), 4),
            "max": round(max(values), 4),
        }

    return {
        "seeds": [row["seed"] for row in rows],
        "loads": {
            "real": real,
            **spread([float(n) for n in loads]),
            "match_rate": round(sum(n == real for n in loads) / len(loads), 4),
            "counts": {str(n): loads.count(n) for n in sorted(set(loads))},
        },
        "same_grant_order_rate": round(
            sum(bool(row["same_grant_order"]) for row in rows) / len(rows), 4
        ),
        "latency_rel_error": {
            key: spread([row["latency"][key]["rel_error"] for row in rows])
            for key in ("p50", "p90", "p99")
        },
        "per_seed": [
            {
                "seed": row["seed"],
                "loads": row["loads"]["sim"],
                "same_grant_order": row["same_grant_order"],
                "p50_rel_error": row["latency"]["p50"]["rel_error"],
                "p99_rel_error": row["latency"]["p99"]["rel_error"],
            }
            for row in rows
        ],
    }


def print_table(summary: dict[str, Any]) -> None:
    print(
        f"{'scheduler':<9} {'service':<10} {'loads real/sim':>14} {'same order':>10} "
        f"{'p50 real':>9} {'p50 sim':>8} {'err':>7} {'p99 real':>9} {'p99 sim':>8} {'err':>7}"
    )
    for scheduler, full in summary["schedulers"].items():
        for label, row in (("calibrated", full), ("measured", full["measured_service"])):
            lat = row["latency"]
            loads = row["loads"]
            print(
                f"{scheduler:<9} {label:<10} {loads['real']:>7}/{loads['sim']:<6} "
                f"{row['same_grant_order']!s:>10} "
                f"{lat['p50']['real']:>9.3f} {lat['p50']['sim']:>8.3f} "
                f"{lat['p50']['rel_error']:>+7.1%} {lat['p99']['real']:>9.3f} "
                f"{lat['p99']['sim']:>8.3f} {lat['p99']['rel_error']:>+7.1%}"
            )
    print()
    print(
        "calibrated over seeds: loads real | sim median [min-max] | same count | same order | "
        "p50 error median [min..max] | p99 error median [min..max]"
    )
    for scheduler, full in summary["schedulers"].items():
        spread = full["calibrated_seeds"]
        loads = spread["loads"]
        p50, p99 = spread["latency_rel_error"]["p50"], spread["latency_rel_error"]["p99"]
        n = len(spread["seeds"])
        print(
            f"{scheduler:<9} {loads['real']:>3} | {loads['median']:g} [{loads['min']:g}-{loads['max']:g}] "
            f"| {round(loads['match_rate'] * n)}/{n} | {round(spread['same_grant_order_rate'] * n)}/{n} "
            f"| {p50['median']:+.1%} [{p50['min']:+.1%}..{p50['max']:+.1%}] "
            f"| {p99['median']:+.1%} [{p99['min']:+.1%}..{p99['max']:+.1%}]"
        )
        ties = full.get("near_ties_real")
        if ties:
            close = ", ".join(f"{t['margin_s'] * 1000:+.0f} ms ({t['outcome']})" for t in ties)
            print(f"{'':<9} near-ties in the real log (fifo batch boundaries): {close}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument(
        "--duration",
        type=float,
        default=240.0,
        help="seconds the trace is compressed into (with --sim-only: only the summary's label; "
        "pass what the logs were recorded with)",
    )
    parser.add_argument("--scheduler", action="append", dest="schedulers", metavar="NAME")
    parser.add_argument("--out", type=Path, default=REPO / "reports" / "real-fidelity")
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the calibrated run whose logs are kept"
    )
    parser.add_argument(
        "--seeds",
        type=parse_seeds,
        default=None,
        help="also simulate the calibrated profile with these seeds (e.g. 0-19) and report the "
        "swap count as a distribution (default: --seed only)",
    )
    parser.add_argument(
        "--figure",
        type=Path,
        default=None,
        help="where to write the figure (default: <out>/real-fidelity.png)",
    )
    parser.add_argument("--timeout", type=float, default=900.0, help="per-request client timeout")
    parser.add_argument(
        "--sim-only", action="store_true", help="reuse the recorded real.jsonl logs under --out"
    )
    parser.add_argument(
        "--server",
        choices=sorted(SERVERS),
        default="llama-cpp-python",
        help="the upstream: llama-cpp-python's server or llama.cpp's llama-server binary",
    )
    args = parser.parse_args(argv)
    if args.server == "llama-server" and not args.sim_only and not llamaserver.available():
        print(f"needs the llama-server binary; {llamaserver.BUILD_HINT}", file=sys.stderr)
        return 2
    if args.server == "llama-cpp-python" and not llama_cpp_available():
        print("needs the real extra: pip install -e '.[real]'", file=sys.stderr)
        return 2
    gguf_path()  # fail early, with the install hint, when the model is missing
    schedulers = args.schedulers or ["serial", "fifo"]
    seeds = [args.seed] + [n for n in (args.seeds or []) if n != args.seed]
    workload = build_workload(args.requests, args.duration)
    summary: dict[str, Any] = {
        "workload": {
            "source": str(shared_path(AZURE)),
            "requests": len(workload),
            "duration": args.duration,
            "per_model": {m: sum(1 for i in workload if i.model == m) for m in LIMITS},
            "switches": sum(1 for a, b in itertools.pairwise(workload) if a.model != b.model),
            "prompt_tokens_mean": round(sum(i.prompt_tokens for i in workload) / len(workload), 1),
            "output_tokens_mean": round(sum(i.output_tokens for i in workload) / len(workload), 1),
        },
        "cpus": os.cpu_count(),
        "server": args.server,
        "schedulers": {},
    }
    for scheduler in schedulers:
        out = args.out / scheduler
        out.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        if not args.sim_only:
            print(
                f"[{scheduler}] real run: {len(workload)} requests over {args.duration:.0f} s ..."
            )
            asyncio.run(run_real(workload, scheduler, out, args.timeout, args.server))
        real_wall = time.monotonic() - started
        real_records = read_log(out / "real.jsonl")
        sim_log, fits = simulate_log(out / "real.jsonl", scheduler, out, args.seed)
        verdict = compare(real_records, read_log(sim_log))
        (out / "compare.json").write_text(json.dumps(verdict, indent=1, default=str))
        (out / "calibration.json").write_text(json.dumps(fits, indent=1))
        row = summarize(verdict)
        row["calibration"] = fits
        row["real_wall_seconds"] = None if args.sim_only else round(real_wall, 1)
        arrivals = [float(r["t"]) for r in real_records if r["ev"] == "arrival"]
        row["arrival_span_s"] = round(max(arrivals) - min(arrivals), 3) if arrivals else None
        row["load_average"] = _load_average(out / "load.json")
        measured_log, _ = simulate_log(out / "real.jsonl", scheduler, out, args.seed, measured=True)
        measured = compare(real_records, read_log(measured_log))
        (out / "compare-measured.json").write_text(json.dumps(measured, indent=1, default=str))
        row["measured_service"] = summarize(measured)
        per_seed = [{"seed": args.seed, **row}]
        with tempfile.TemporaryDirectory(prefix="real-fidelity-seeds-") as scratch:
            for seed in seeds[1:]:
                path = Path(scratch) / f"sim-{seed}.jsonl"
                simulate_log(out / "real.jsonl", scheduler, out, seed, sim_log=path)
                per_seed.append({"seed": seed, **summarize(compare(real_records, read_log(path)))})
        row["calibrated_seeds"] = seed_spread(per_seed)
        if scheduler != "serial":  # serial decides by arrival order: no batch to join or miss
            row["near_ties_real"] = [t.as_dict() for t in near_ties(real_records, TIE_WINDOW)]
        summary["schedulers"][scheduler] = row
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1, default=_nan_safe))
    figure = plot_real_fidelity(
        args.out,
        summary,
        args.figure or args.out / "real-fidelity.png",
        f"llamaswap + llama.cpp (SmolLM2-135M) vs simulator: {len(workload)} requests, "
        f"{args.duration:.0f} s",
    )
    print(json.dumps(summary["workload"]))
    print_table(summary)
    print(f"figure: {figure}")
    return 0


def _load_average(path: Path) -> Any:
    """The 1-minute load average sampled during the real run (the box is shared: it matters)."""
    try:
        samples = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not samples:
        return None
    return {"mean": round(sum(samples) / len(samples), 2), "max": round(max(samples), 2)}


def _nan_safe(value: Any) -> Any:
    return None if isinstance(value, float) and math.isnan(value) else str(value)


if __name__ == "__main__":
    sys.exit(main())
