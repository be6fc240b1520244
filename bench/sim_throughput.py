"""Simulator throughput benchmark: simulated requests per wall-second and peak memory.

Runs ``fifo`` and ``serial`` on a synthetic 3-model trace (Zipf popularity, Poisson arrivals) of
``--requests`` requests (default 200k), each in a fresh subprocess so peak RSS (``ru_maxrss``) is
per run, then the same for 1M requests (``--million``, on by default) to check memory. Prints a table
and writes the figures to ``bench/sim_throughput.json``. Not a test: numbers depend on the machine.

    .venv/bin/python bench/sim_throughput.py [--requests 200000] [--no-million]
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

RESULTS = Path(__file__).with_suffix(".json")
RATE = 2.0  # requests/s across the three models


def child(scheduler: str, requests: int) -> dict[str, object]:
    from llamaswap.core.spec import ModelSpec, RoutingSpec
    from llamaswap.timing import TimingProfile
    from sim.run import simulate
    from sim.synthetic import synthetic_trace

    models = ["A", "B", "C"]
    trace = synthetic_trace(
        {
            "duration": requests / RATE,
            "rate": RATE,
            "models": models,
            "zipf": 1.0,
            "output_tokens": 16,
        },
        seed=1,
    )
    spec = RoutingSpec(models={m: ModelSpec(m, concurrency_limit=100) for m in models})
    profile = TimingProfile.parse(
        {
            "load_time": {"kind": "lognormal", "median": 2.0, "sigma": 0.2},
            "parallel": 8,
            "decode_tps": 400,
            "ttft_overhead": 0.01,
            "unload_time": 0.2,
        }
    )
    t0 = time.perf_counter()
    record, wall = simulate(spec, scheduler, trace, {m: profile for m in models}, seed=1)
    statuses = bytes(record.status)
    return {
        "scheduler": scheduler,
        "requests": len(trace),
        "wall_seconds": round(wall, 3),
        "requests_per_second": round(len(trace) / wall),
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
    parser.add_argument(
        "--child", nargs=2, metavar=("SCHEDULER", "REQUESTS"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], int(args.child[1]))))
        return 0
    sizes = [args.requests] + ([] if args.no_million else [1_000_000])
    rows = []
    for size in sizes:
        for scheduler in ("fifo", "serial"):
            out = subprocess.run(
                [sys.executable, __file__, "--child", scheduler, str(size)],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            row = json.loads(out.strip().splitlines()[-1])
            rows.append(row)
            print(
                f"{row['scheduler']:>7} {row['requests']:>8} requests: "
                f"{row['requests_per_second']:>7} simulated req/s, wall {row['wall_seconds']:.1f} s, "
                f"peak RSS {row['peak_rss_mib']:.0f} MiB, swaps {row['swaps']}, "
                f"completed {row['completed']}, rejected {row['rejected']}",
                flush=True,
            )
    RESULTS.write_text(
        json.dumps(
            {
                "machine": f"{platform.machine()} {platform.python_implementation()} {platform.python_version()}",
                "trace": f"synthetic, 3 models, Zipf 1.0, Poisson {RATE} req/s",
                "runs": rows,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
