"""Fake upstream for fidelity runs: its load time counts from process start, like a real server's.

``llamaswap fake-upstream`` starts its load clock after Python has imported aiohttp (0.15-0.4 s on
a busy 2-core box, and variable), so a real swap took the configured load time PLUS that import
time: noise the simulator cannot know. This launcher reads the clock as its very first statement
and backdates the fake upstream's start to it, so ``/health`` turns 200 at exec + load time. It
also exits with ``os._exit`` right after the server closes (no interpreter teardown), so a stop
costs milliseconds. Arguments are those of ``llamaswap fake-upstream``.
"""

import time

_EXEC_TIME = time.monotonic()

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
