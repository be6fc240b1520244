"""Proxy overhead: llamaswap vs the upstream called directly vs nginx, in the same run.

    .venv/bin/python bench/proxy_overhead.py [--upstream nginx|fake] [--seconds 5] [--sse-streams 600]

Setup (all on 127.0.0.1, one worker/process each, so every proxy gets one core):
- JSON upstream, chosen with ``--upstream``:
  ``nginx`` (default): an nginx server block answering a fixed ~300-byte chat completion (it costs
  almost nothing, so what is measured is the proxy's own ceiling);
  ``fake``: ``llamaswap fake-upstream`` with instant timing (no load time, 1e9 tokens/s), a
  llama-server-like Python upstream; the same one sits behind direct, nginx and llamaswap, so the
  proxies are compared the way a deployment sees them (the upstream is the bottleneck);
- SSE upstream: ``bench/proxy_sse_upstream.py``, paced events (``--sse-rate`` per second per stream);
- nginx reverse proxy (1 worker, upstream keepalive, ``proxy_buffering off``) to both;
- ``llamaswap serve`` (fifo scheduler) with two models whose ``cmd`` is ``sleep`` and whose ``proxy``
  points at those upstreams.
Load from ``wrk`` (C, one thread). nginx and wrk are installed from Debian's packages if missing.

Printed: p50 latency at concurrency 1 and the added p50 over direct; requests/s at 16 and 64;
SSE events/s relayed and the stream duration added over direct at p10/p25/p50/p75/p90/p99, mean
and max (differences of percentiles, not percentiles of differences). ``--sse-start burst``
(default) opens every SSE connection in the same millisecond, so each connection's first stream
carries the one-off cost of that herd; ``--sse-start stagger`` spreads the first requests over one
stream duration (the steady state a long-running daemon sees). ``--sse-proxies`` picks the proxies.
The machine is shared: run it on an idle box for figures worth quoting.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from llamaswap.daemon.testing import free_port_block, serve_argv  # noqa: E402

JSON_BODY = (
    '{"id":"x","object":"chat.completion","created":1,"model":"bench","choices":[{"index":0,'
    '"message":{"role":"assistant","content":"lorem ipsum dolor sit amet"},"finish_reason":"length"}],'
    '"usage":{"prompt_tokens":5,"completion_tokens":5,"total_tokens":10}}'
)


def ensure_tools() -> None:
    missing = [
        tool
        for tool in ("nginx", "wrk")
        if not shutil.which(tool) and not os.path.exists(f"/usr/sbin/{tool}")
    ]
    if missing:
        print(f"installing {missing} from Debian packages ...", flush=True)
        subprocess.run(
            ["apt-get", "install", "-y", *missing], check=True, stdout=subprocess.DEVNULL
        )


def nginx_bin() -> str:
    return shutil.which("nginx") or "/usr/sbin/nginx"


def nginx_conf(tmp: Path, name: str, body: str) -> Path:
    conf = tmp / f"{name}.conf"
    conf.write_text(
        f"""worker_processes 1;
daemon off;
error_log {tmp}/{name}-error.log;
pid {tmp}/{name}.pid;
events {{ worker_connections 8192; }}
http {{
  access_log off;
  keepalive_requests 10000000;
  {body}
}}
"""
    )
    return conf


def wait_http(url: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not come up")


def lua(tmp: Path, model: str, stagger: tuple[int, int] | None = None) -> Path:
    """wrk script; ``stagger=(connections, ms)``: each connection's first request waits a random
    0..ms (wrk times a request from when it is sent), so they do not all arrive at once."""
    script = tmp / f"{model}{'-stagger' if stagger else ''}.lua"
    delay = ""
    if stagger is not None:
        delay = (
            f"local first = {stagger[0]}\n"
            "function delay()\n"
            f"  if first > 0 then first = first - 1; return math.random(0, {stagger[1]}) end\n"
            "  return 0\n"
            "end\n"
        )
    script.write_text(
        delay + 'wrk.method = "POST"\n'
        f'wrk.body = \'{{"model":"{model}","messages":[{{"role":"user","content":"hello"}}],"max_tokens":5}}\'\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
        # wrk's own summary prints 3 digits (1.03s): too coarse for a few ms on a 1 s stream
        "function done(summary, latency, requests)\n"
        '  io.write(string.format("EXACT p50=%d p99=%d mean=%.1f\\n",\n'
        "    latency:percentile(50), latency:percentile(99), latency.mean))\n"
        '  io.write(string.format("PCT p10=%d p25=%d p75=%d p90=%d max=%d\\n",\n'
        "    latency:percentile(10), latency:percentile(25), latency:percentile(75),\n"
        "    latency:percentile(90), latency.max))\n"
        "end\n"
    )
    return script


_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0}


class WrkResult(NamedTuple):
    rps: float
    p50: float
    p99: float
    mean: float
    bad: int
    spread: tuple[float, ...] = ()
    """p10, p25, p75, p90 and max (seconds), when the Lua script reported them."""


def _seconds(value: str, unit: str) -> float:
    return float(value) * _UNITS[unit]


def wrk_full(url: str, script: Path, connections: int, seconds: float) -> WrkResult:
    """Requests/s, p50, p99 and mean latency (seconds), non-2xx count."""
    out = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{seconds:g}s",
            "--timeout",
            "30s",
            "--latency",
            "-s",
            str(script),
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50m = re.search(r"50%\s+([\d.]+)(us|ms|s)", out)
    p99m = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    meanm = re.search(r"Latency\s+([\d.]+)(us|ms|s)", out)
    nan = float("nan")
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors:.*", out)
    if errors:
        print(f"    ({errors.group(0)})")
    exact = re.search(r"EXACT p50=(\d+) p99=(\d+) mean=([\d.]+)", out)
    if exact:  # microseconds, from the script's done() callback
        p50, p99, mean = (float(v) * 1e-6 for v in exact.groups())
    else:
        p50 = _seconds(*p50m.groups()) if p50m else nan
        p99 = _seconds(*p99m.groups()) if p99m else nan
        mean = _seconds(*meanm.groups()) if meanm else nan
    pct = re.search(r"PCT p10=(\d+) p25=(\d+) p75=(\d+) p90=(\d+) max=(\d+)", out)
    spread = tuple(float(v) * 1e-6 for v in pct.groups()) if pct else ()
    return WrkResult(rps, p50, p99, mean, int(bad.group(1)) if bad else 0, spread)


def wrk(url: str, script: Path, connections: int, seconds: float) -> tuple[float, float, int]:
    """(requests/s, p50 seconds, non-2xx count)."""
    result = wrk_full(url, script, connections, seconds)
    return result.rps, result.p50, result.bad


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (and its reaped children), from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def nginx_worker(master_pid: int) -> int:
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == master_pid:
                return int(entry)
    return master_pid


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--sse-streams", type=int, default=600)
    parser.add_argument("--sse-events", type=int, default=50)
    parser.add_argument("--sse-rate", type=float, default=50.0)
    parser.add_argument(
        "--sse-seconds",
        type=float,
        default=None,
        help="SSE run length (default: 10 stream durations); longer runs dilute the one-off "
        "cost of opening every connection at once",
    )
    parser.add_argument("--only", choices=("json", "sse"), help="run one half only")
    parser.add_argument(
        "--sse-start",
        choices=("burst", "stagger"),
        default="burst",
        help="burst: every connection sends its first request at once (a thundering herd of "
        "new connections, which dominates the tail); stagger: each connection's first request "
        "waits a random 0..1 stream duration, so streams start and end spread out (steady state)",
    )
    parser.add_argument(
        "--sse-proxies",
        default="nginx,llamaswap",
        help="comma-separated proxies measured in the SSE half (direct always runs: it is the "
        "baseline)",
    )
    parser.add_argument(
        "--upstream",
        choices=("nginx", "fake"),
        default="nginx",
        help="JSON upstream: nginx `return 200` (the proxy's ceiling) or `llamaswap fake-upstream` "
        "with instant timing (a llama-server-like Python upstream)",
    )
    parser.add_argument(
        "--priority",
        type=int,
        default=0,
        help="nice value for the whole benchmark (e.g. -10, as root: shields it from other jobs)",
    )
    args = parser.parse_args()
    if args.priority:
        os.setpriority(os.PRIO_PROCESS, 0, args.priority)  # inherited by every process started
    ensure_tools()
    base = free_port_block(6)
    json_port, sse_port, nginx_port, daemon_port = base, base + 1, base + 2, base + 3
    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        try:
            upstream_conf = nginx_conf(
                tmp,
                "upstream",
                f"""server {{ listen 127.0.0.1:{json_port};
    location / {{ default_type application/json; return 200 '{JSON_BODY}'; }} }}""",
            )
            proxy_conf = nginx_conf(
                tmp,
                "proxy",
                f"""upstream json_up {{ server 127.0.0.1:{json_port}; keepalive 128; }}
  upstream sse_up {{ server 127.0.0.1:{sse_port}; keepalive 1024; }}
  server {{ listen 127.0.0.1:{nginx_port};
    proxy_http_version 1.1; proxy_set_header Connection ""; proxy_buffering off;
    location /sse/ {{ proxy_pass http://sse_up/; }}
    location / {{ proxy_pass http://json_up; }} }}""",
            )
            config = tmp / "config.yaml"
            config.write_text(
                f"""routing:
  scheduler: {{use: fifo}}
groups:
  all: {{swap: false, exclusive: true, members: [bench, sse]}}
models:
  bench:
    cmd: sleep 1000000
    proxy: http://127.0.0.1:{json_port}
    concurrencyLimit: 100000
  sse:
    cmd: sleep 1000000
    proxy: http://127.0.0.1:{sse_port}
    concurrencyLimit: 100000
"""
            )
            if args.upstream == "nginx":
                procs.append(
                    subprocess.Popen([nginx_bin(), "-c", str(upstream_conf), "-p", str(tmp)])
                )
            else:
                procs.append(
                    subprocess.Popen(
                        [
                            sys.executable,
                            "-m",
                            "llamaswap",
                            "fake-upstream",
                            "--port",
                            str(json_port),
                            "--model",
                            "bench",
                            "--load-time",
                            "0",
                            "--prefill-tps",
                            "1e9",
                            "--decode-tps",
                            "1e9",
                            "--parallel",
                            "100000",
                            "--quiet",
                        ],
                        stdout=subprocess.DEVNULL,
                    )
                )
            procs.append(subprocess.Popen([nginx_bin(), "-c", str(proxy_conf), "-p", str(tmp)]))
            procs.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        str(ROOT / "bench" / "proxy_sse_upstream.py"),
                        "--port",
                        str(sse_port),
                        "--events",
                        str(args.sse_events),
                        "--rate",
                        str(args.sse_rate),
                    ]
                )
            )
            daemon_log = open(tmp / "daemon.log", "wb")  # noqa: SIM115
            procs.append(
                subprocess.Popen(
                    serve_argv(config, daemon_port),
                    stdout=daemon_log,
                    stderr=subprocess.STDOUT,
                )
            )
            wait_http(f"http://127.0.0.1:{json_port}/health")
            wait_http(f"http://127.0.0.1:{sse_port}/health")
            wait_http(f"http://127.0.0.1:{daemon_port}/health")
            json_script, sse_script = lua(tmp, "bench"), lua(tmp, "sse")
            for model in ("bench", "sse"):  # load both models (the `sleep` processes)
                subprocess.run(
                    [
                        "wrk",
                        "-t1",
                        "-c1",
                        "-d1s",
                        "-s",
                        str(lua(tmp, model)),
                        f"http://127.0.0.1:{daemon_port}/v1/chat/completions",
                    ],
                    check=True,
                    capture_output=True,
                )
            targets = {
                "direct": f"http://127.0.0.1:{json_port}/v1/chat/completions",
                "nginx": f"http://127.0.0.1:{nginx_port}/v1/chat/completions",
                "llamaswap": f"http://127.0.0.1:{daemon_port}/v1/chat/completions",
            }
            cpu_pid = {
                "direct": nginx_worker(procs[0].pid) if args.upstream == "nginx" else procs[0].pid,
                "nginx": nginx_worker(procs[1].pid),
                "llamaswap": procs[3].pid,
            }
            print(
                f"JSON from the {args.upstream} upstream, {args.seconds:g}s per point (wrk -t1); "
                "CPU = the proxy's own CPU per request (for direct: the upstream's)"
            )
            print(
                f"{'target':<10} {'p50 c1':>9} {'added':>8} {'req/s c1':>9} {'req/s c16':>10} "
                f"{'req/s c64':>10} {'CPU/req c16':>12} {'CPU/req c64':>12}"
            )
            results: dict[str, tuple[float, float, float, float]] = {}
            for name, url in targets.items() if args.only != "sse" else ():
                rps1, p50, bad1 = wrk(url, json_script, 1, args.seconds)
                cpu_before = cpu_seconds(cpu_pid[name])
                rps16, _, bad16 = wrk(url, json_script, 16, args.seconds)
                cpu_per_request = (cpu_seconds(cpu_pid[name]) - cpu_before) / (rps16 * args.seconds)
                cpu_before = cpu_seconds(cpu_pid[name])
                rps64, _, bad64 = wrk(url, json_script, 64, args.seconds)
                cpu_per_request64 = (cpu_seconds(cpu_pid[name]) - cpu_before) / (
                    rps64 * args.seconds
                )
                if bad1 or bad16 or bad64:
                    print(f"    {name}: non-2xx responses: {bad1 + bad16 + bad64}")
                results[name] = (p50, rps1, rps16, rps64)
                added = (p50 - results["direct"][0]) * 1e3
                print(
                    f"{name:<10} {p50 * 1e3:8.3f}ms {added:7.3f}ms {rps1:9.0f} {rps16:10.0f} "
                    f"{rps64:10.0f} {cpu_per_request * 1e6:10.0f}us {cpu_per_request64 * 1e6:10.0f}us"
                )
            for c, i in ((16, 2), (64, 3)) if results else ():
                share = results["llamaswap"][i] / results["nginx"][i]
                print(f"llamaswap / nginx req/s at c{c}: {share:.0%}")

            if args.only == "json":
                return 0
            streams, events = args.sse_streams, args.sse_events
            duration = events / args.sse_rate
            seconds = args.sse_seconds or max(args.seconds, 10 * duration)
            print(
                f"\nSSE: {streams} streams x {events} events at {args.sse_rate:g}/s "
                f"({streams * args.sse_rate:,.0f} events/s offered), {seconds:g}s, "
                f"{args.sse_start} start"
            )
            measured_script = sse_script
            if args.sse_start == "stagger":
                measured_script = lua(tmp, "sse", (streams, round(duration * 1000)))
            sse_targets = {
                "direct": f"http://127.0.0.1:{sse_port}/v1/chat/completions",
                "nginx": f"http://127.0.0.1:{nginx_port}/sse/v1/chat/completions",
                "llamaswap": f"http://127.0.0.1:{daemon_port}/v1/chat/completions",
            }
            print(
                "events/s done = completed streams x events / run time (a stream still open when\n"
                "  the run ends does not count, so a few ms per stream can cost a whole stream per\n"
                "  connection); events/s open = streams x events / mean stream duration (Little's\n"
                "  law: the rate events flow while the streams are open); added = vs direct"
            )
            print(
                f"{'target':<10} {'ev/s done':>10} {'ev/s open':>10} {'p50 stream':>11} "
                f"{'added p50':>10} {'added mean':>11} {'added p99':>10} {'CPU/event':>10}"
            )
            direct: WrkResult | None = None
            cpu_pid["direct"] = procs[2].pid
            wanted = {"direct", *args.sse_proxies.split(",")}
            spreads: list[str] = []
            for name, url in sse_targets.items():
                if name not in wanted:
                    continue
                # Warm-up (not measured): opening `streams` connections at once (and, for the
                # proxies, as many upstream connections) is a one-off cost, not relay speed.
                wrk_full(url, sse_script, streams, math.ceil(duration * 1.5))
                cpu_before = cpu_seconds(cpu_pid[name])
                result = wrk_full(url, measured_script, streams, seconds)
                cpu_per_event = (cpu_seconds(cpu_pid[name]) - cpu_before) / (
                    result.rps * events * seconds
                )
                direct = result if name == "direct" else direct
                assert direct is not None
                note = f"  ({result.bad} non-2xx)" if result.bad else ""
                print(
                    f"{name:<10} {result.rps * events:10,.0f} {streams * events / result.mean:10,.0f} "
                    f"{result.p50:10.3f}s {(result.p50 - direct.p50) * 1e3:8.1f}ms "
                    f"{(result.mean - direct.mean) * 1e3:9.1f}ms "
                    f"{(result.p99 - direct.p99) * 1e3:8.1f}ms {cpu_per_event * 1e6:8.1f}us{note}"
                )
                if result.spread and direct.spread:
                    spreads.append(
                        f"{name:<10} "
                        + " ".join(
                            f"{(a - b) * 1e3:8.1f}ms"
                            for a, b in zip(result.spread, direct.spread, strict=True)
                        )
                    )
            if spreads:
                print(
                    "added stream duration at other percentiles (vs direct):\n"
                    f"{'target':<10} {'p10':>10} {'p25':>10} {'p75':>10} {'p90':>10} {'max':>10}"
                )
                print("\n".join(spreads))
        finally:
            for proc in reversed(procs):
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            for proc in procs:
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
