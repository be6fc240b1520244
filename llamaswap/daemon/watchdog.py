"""Orphan guard: a tiny process that SIGKILLs every upstream process group when the daemon dies.

``PR_SET_PDEATHSIG`` (set in each child) only reaches the direct child; an upstream started through a
shell or a wrapper may leave grandchildren in its process group. The daemon therefore tells this
watchdog about every group it starts (``+PGID``) and stops (``-PGID``) over a pipe on its stdin.
When the pipe reaches EOF (the daemon exited, however it died), the watchdog kills every group still
registered, then exits. It ignores SIGINT/SIGTERM and lives in its own session so that a terminal's
Ctrl-C or a ``kill`` of the daemon's group cannot take it down first.

Process groups do not hold everything: a ``setsid`` grandchild leaves its group. So the watchdog
is also given the daemon's ``LLAMASWAP_TREE`` prefix (``python -m llamaswap.daemon.watchdog
PREFIX``) and, after the groups, kills every process still marked with it
(:mod:`llamaswap.daemon.proctree`).

It imports nothing heavy so it starts in ~30 ms.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys


def main() -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    groups: set[int] = set()
    for line in sys.stdin:
        line = line.strip()
        if len(line) < 2 or line[0] not in "+-" or not line[1:].isdigit():
            continue
        pgid = int(line[1:])
        if line[0] == "+":
            groups.add(pgid)
        else:
            groups.discard(pgid)
    for pgid in sorted(groups):
        with contextlib.suppress(OSError):
            os.killpg(pgid, signal.SIGKILL)
    if len(sys.argv) > 1 and sys.argv[1].endswith("-"):
        # Descendants that left their group (setsid, double fork) still carry the daemon's
        # LLAMASWAP_TREE marker: they would otherwise keep the port and the GPU memory.
        from llamaswap.daemon.proctree import kill_marked

        kill_marked(sys.argv[1])
    return 0


if __name__ == "__main__":
    sys.exit(main())
