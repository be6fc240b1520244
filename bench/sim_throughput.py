"""Simulator throughput benchmark: simulated requests per wall-second and peak memory.

Runs ``fifo``, ``serial``, ``batch-aging`` and ``batch-aging+slots`` (planned switches, ``slots`` =
the profile's 8) on a synthetic 3-model trace (Zipf popularity, Poisson arrivals), each
in a fresh subprocess so peak RSS (``ru_maxrss``) is per run:

- ``--requests`` (default 200k) requests at 2 req/s: fifo keeps up, serial cannot (it serves one
  request at a time and swaps on almost every other one), so serial rejects most (cheaply);
- the same at 1M requests (skip with ``--no-million``): the memory check (goal <= 1 GiB);
- a swap-heavy run at 0.6 req/s that serial can sustain (skip with ``--no-swap-heavy``): about one
  model swap per two requests, where the core's per-swap work dominates.

Prints a line per run (``--json PATH`` also writes them as JSON); record them in reports/README.md. Not a test: numbers
depend on the machine and on what else runs on it, so requests per CPU-second are reported beside
the wall-clock rate.

    .venv/bin/python bench/sim_throughput.py [--requests 200000] [--no-million] [--no-swap-heavy]
        [--schedulers fifo,serial,batch-aging,batch-aging+slots]
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

RATE = 2.0  # requests/s across the three models: fifo keeps up, serial (one at a time) cannot
SWAP_HEAVY_RATE = 0.6  # low enough for serial to keep up; about one swap per two requests
PARALLEL = 8
PLANNED = "batch-aging+slots"
"""``batch-aging`` with ``slots`` set to the profile's parallel slots (planned switches)."""
SCHEDULERS = ("fifo", "serial", "batch-aging", PLANNED)


def child(scheduler: str, requests: int, rate: float = RATE) -> dict[str, object]:
    from llamaswap.core.spec import ModelSpec, RoutingSpec
    from llamaswap.timing import TimingProfile
    from sim.run import simulate
    from sim.synthetic import synthetic_trace

    models = ["A", "B", "C"]
    trace = synthetic_trace(
        {
            "duration": requests / rate,
            "rate": rate,
            "models": models,
            "zipf": 1.0,
            "output_tokens": 16,
        },
        seed=1,
    )
    name, settings = scheduler, {}
    if scheduler == PLANNED:
        name, settings = "batch-aging", {"batch-aging": {"slots": PARALLEL}}
    spec = RoutingSpec(
        models={m: ModelSpec(m, concurrency_limit=100) for m in models},
        scheduler_settings=settings,
    )
    profile = TimingProfile.parse(
        {
            "load_time": {"kind": "lognormal", "median": 2.0, "sigma": 0.2},
            "parallel": PARALLEL,
            "decode_tps": 400,
            "ttft_overhead": 0.01,
            "unload_time": 0.2,
        }
    )
    t0 = time.perf_counter()
    cpu0 = time.process_time()
    record, wall = simulate(spec, name, trace, {m: profile for m in models}, seed=1)
    cpu = time.process_time() - cpu0
    statuses = bytes(record.status)
    return {
        "scheduler": scheduler,
        "rate": rate,
        "requests": len(trace),
        "wall_seconds": round(wall, 3),
        "requests_per_second": round(len(trace) / wall),
        "cpu_seconds": round(cpu, 3),
        "requests_per_cpu_second": round(len(trace) / cpu),
        "completed": statuses.count(1),
        "rejected": statuses.count(3),
        "swaps": len(record.swaps),
        "events": record.events,
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "total_seconds": round(time.perf_counter() - t0, 3),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=200_000)
    parser.add_argument("--no-million", action="store_true", help="skip the 1M-request memory run")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    parser.add_argument("--no-swap-heavy", action="store_true", help="skip the swap-heavy run")
    parser.add_argument(
        "--schedulers",
        default=",".join(SCHEDULERS),
        help=f"comma-separated, from {', '.join(SCHEDULERS)} (default: all)",
    )
    parser.add_argument(
        "--child", nargs=3, metavar=("SCHEDULER", "REQUESTS", "RATE"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], int(args.child[1]), float(args.child[2]))))
        return 0
    runs = [(args.requests, RATE)]
    runs += [] if args.no_million else [(1_000_000, RATE)]
    runs += [] if args.no_swap_heavy else [(args.requests, SWAP_HEAVY_RATE)]
    schedulers = [s.strip() for s in args.schedulers.split(",") if s.strip()]
    unknown = sorted(set(schedulers) - set(SCHEDULERS))
    if unknown:
        parser.error(f"--schedulers: unknown {', '.join(unknown)} (valid: {', '.join(SCHEDULERS)})")
    rows = []
    for size, rate in runs:
        for scheduler in schedulers:
            out = subprocess.run(
                [sys.executable, __file__, "--child", scheduler, str(size), str(rate)],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            row = json.loads(out.strip().splitlines()[-1])
            rows.append(row)
            print(
                f"{row['scheduler']:>17} {row['requests']:>8} requests at {row['rate']} req/s: "
                f"{row['requests_per_second']:>7} simulated req/s "
                f"({row['requests_per_cpu_second']} per CPU-second), wall {row['wall_seconds']:.1f} s, "
                f"peak RSS {row['peak_rss_mib']:.0f} MiB, swaps {row['swaps']}, "
                f"completed {row['completed']}, rejected {row['rejected']}",
                flush=True,
            )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "machine": f"{platform.machine()} {platform.python_implementation()} {platform.python_version()}",
                    "trace": "synthetic, 3 models, Zipf 1.0, Poisson arrivals at `rate`",
                    "runs": rows,
                },
                indent=2,
            )
            + "\n"
        )
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
