"""Fake upstream for fidelity runs: its load time counts from process creation, like a real server's.

``llamaswap fake-upstream`` starts its load clock after Python has imported aiohttp (0.15-0.4 s on
a busy 2-core box, and variable), so a real swap took the configured load time PLUS that start-up
time: noise the simulator cannot know. This launcher backdates the fake upstream's start to the
moment the kernel created the process (``/proc/self/stat`` start time, 10 ms resolution), so
``/health`` turns 200 at spawn + load time, as long as start-up is shorter than the load time.
It also exits with ``os._exit`` right after the server closes (no interpreter teardown), so a stop
costs milliseconds. Arguments are those of ``llamaswap fake-upstream``.
"""

import time


def _process_start_monotonic() -> float:
    """When this process was forked, on the monotonic clock (falls back to now)."""
    now = time.monotonic()
    try:
        import os

        with open("/proc/self/stat", "rb") as handle:
            fields = handle.read().rsplit(b")", 1)[1].split()
        started_boot = int(fields[19]) / os.sysconf("SC_CLK_TCK")
        age = time.clock_gettime(time.CLOCK_BOOTTIME) - started_boot
    except (OSError, ValueError, IndexError, AttributeError):
        return now
    return now - age if 0.0 <= age < 60.0 else now


_EXEC_TIME = _process_start_monotonic()

import argparse  # noqa: E402
import asyncio  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
from collections.abc import Sequence  # noqa: E402


def main(argv: Sequence[str] | None = None) -> int:
    from llamaswap.daemon import fake_upstream
    from llamaswap.timing import Distribution, TimingProfile

    parser = argparse.ArgumentParser(prog="python -m llamaswap.fidelity.upstream")
    fake_upstream.add_arguments(parser)
    args = parser.parse_args(argv)
    if args.ignore_sigterm:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    profile = TimingProfile(
        load_time=Distribution("constant", args.load_time),
        parallel=args.parallel,
        ttft_overhead=args.ttft_overhead,
        prefill_tps=args.prefill_tps,
        decode_tps=args.decode_tps,
        default_output_tokens=args.default_output_tokens,
    )
    upstream = fake_upstream.FakeUpstream(
        args.model,
        profile,
        fail_start=args.fail_start,
        crash_after=args.crash_after,
        quiet=args.quiet,
    )
    upstream.started = _EXEC_TIME
    asyncio.run(fake_upstream._serve(args, upstream))
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
