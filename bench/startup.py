"""Start-up cost of the command line: CPU seconds until a command has done its first job.

    .venv/bin/python bench/startup.py [--runs 5]

Each case runs as a fresh process (``python -m llamaswap ...``); its user+system CPU time comes
from ``wait4`` (so a busy box inflates wall time but much less the CPU time, which is what the goal
is about). Cases:

* ``llamaswap --version``;
* ``llamaswap fake-upstream``: until it answers ``/health`` on its port (every fake upstream of a
  test, demo or fidelity run pays this before its "load" can start), then SIGTERM;
* ``llamaswap check-config --help`` and ``llamaswap sim --help`` for comparison;
* the reference, side by side: the old start-up, which imported every command's module to build
  the parser (``build_parser()`` with no argv), an empty interpreter (``python -c pass``), and the
  real llama-swap binary's ``--version`` when ``../shared/peers/llama-swap`` (or
  ``$LLAMA_SWAP_BIN``) is present.

Goal (issue 21): under 0.3 s of CPU for ``--version`` and for ``fake-upstream``. Prints the median
of ``--runs`` runs and ``--json`` for the raw numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LLAMA_SWAP = Path(
    os.environ.get("LLAMA_SWAP_BIN", ROOT.parent / "shared" / "peers" / "llama-swap" / "llama-swap")
)
GOAL = 0.3
OLD_IMPORTS = (
    "import llamaswap.daemon.cli, llamaswap.daemon.fake_upstream, llamaswap.config.cli, "
    "llamaswap.fidelity.cli, rich.table, sim.report"
)
"""What every ``llamaswap`` process imported before issue 21: each command's module, and
``sim/cli.py``'s top-level rich and ``sim.report`` (numpy, matplotlib, SimPy)."""


def _cpu(proc: subprocess.Popen[bytes]) -> float:
    _, _, usage = os.wait4(proc.pid, 0)
    proc.returncode = 0  # reaped here; keep Popen from waiting again
    return usage.ru_utime + usage.ru_stime


def run_once(argv: list[str]) -> float:
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return _cpu(proc)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def fake_upstream_once() -> float:
    """CPU until ``/health`` answers (200 with ``--load-time 0``), then stop it."""
    port = _free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llamaswap",
            "fake-upstream",
            "--port",
            str(port),
            "--load-time",
            "0",
            "--quiet",
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as r:
                if r.status == 200:
                    break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("fake-upstream did not come up") from None
            time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    return _cpu(proc)


def cases() -> dict[str, object]:
    py = [sys.executable]
    out: dict[str, object] = {
        "llamaswap --version": [*py, "-m", "llamaswap", "--version"],
        "llamaswap fake-upstream (until /health)": fake_upstream_once,
        "llamaswap check-config --help": [*py, "-m", "llamaswap", "check-config", "--help"],
        "llamaswap sim --help": [*py, "-m", "llamaswap", "sim", "--help"],
        "reference: old start-up (every module imported)": [*py, "-c", OLD_IMPORTS],
        "reference: python -c pass": [*py, "-c", "pass"],
    }
    if LLAMA_SWAP.exists():
        out["reference: llama-swap --version"] = [str(LLAMA_SWAP), "--version"]
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results: dict[str, list[float]] = {}
    for name, case in cases().items():
        results[name] = [
            case() if callable(case) else run_once(case)  # type: ignore[arg-type]
            for _ in range(args.runs)
        ]
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    load = os.getloadavg()[0]
    print(f"CPU seconds per start, median of {args.runs} runs (load average {load:.1f}):")
    for name, values in results.items():
        median = statistics.median(values)
        goal = ""
        if not name.startswith("reference") and name.split(" (")[0] in (
            "llamaswap --version",
            "llamaswap fake-upstream",
        ):
            goal = "  ok" if median < GOAL else f"  above the {GOAL} s goal"
        print(f"  {name:50s} {median:6.3f} s  (min {min(values):.3f}){goal}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
