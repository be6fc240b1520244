"""Swap overhead: from the moment the upstream could first pass its health check to the first
response byte at the client, for a cold model whose fake upstream takes ``--load-time`` to load.

    .venv/bin/python bench/swap_overhead.py [--rounds 8] [--load-time 2]

The fake upstream prints ``healthy_at_monotonic=<t>`` (CLOCK_MONOTONIC is shared by all processes),
the client stamps the first response byte with the same clock. Each round unloads the model first.
llama-swap polls once a second after a 250 ms wait, which costs ~0.5 s on average here.
"""

from __future__ import annotations

import argparse
import http.client
import json
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from llamaswap.daemon.testing import free_port_block, serve_argv  # noqa: E402


def first_byte(port: int, body: dict[str, object]) -> tuple[float, int]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request(
        "POST", "/v1/chat/completions", json.dumps(body), {"Content-Type": "application/json"}
    )
    response = conn.getresponse()  # returns once the status line and headers have arrived
    stamp = time.monotonic()
    response.read()
    conn.close()
    return stamp, response.status


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--load-time", type=float, default=2.0)
    args = parser.parse_args()
    base = free_port_block(2)
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "config.yaml"
        config.write_text(
            f"""startPort: {base + 1}
models:
  m:
    cmd: {sys.executable} -m llamaswap.daemon.fake_upstream --quiet --port ${{PORT}} --model m --load-time {args.load_time} --decode-tps 100000
    proxy: http://127.0.0.1:${{PORT}}
"""
        )
        daemon = subprocess.Popen(
            serve_argv(config, base),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 20
            while True:
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{base}/health", timeout=1)
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
            overheads = []
            for _ in range(args.rounds):
                stamp, status = first_byte(base, {"model": "m", "max_tokens": 1})
                assert status == 200, status
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{base}/logs/stream/m?", timeout=5
                ) as r:
                    history = r.read1(1 << 20).decode()
                healthy = float(re.findall(r"healthy_at_monotonic=([\d.]+)", history)[-1])
                overheads.append(stamp - healthy)
                req = urllib.request.Request(
                    f"http://127.0.0.1:{base}/api/models/unload", method="POST"
                )
                urllib.request.urlopen(req, timeout=30).read()
            ms = sorted(o * 1e3 for o in overheads)
            print(
                f"swap overhead (upstream healthy -> first byte at client), {args.rounds} cold loads of "
                f"{args.load_time:g}s: p50 {statistics.median(ms):.1f} ms, mean {statistics.fmean(ms):.1f} ms, "
                f"max {ms[-1]:.1f} ms  (all: {', '.join(f'{v:.1f}' for v in ms)})"
            )
        finally:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
