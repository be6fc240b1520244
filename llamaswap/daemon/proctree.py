"""Which processes are ours, and who owns a port: Linux ``/proc`` reads, blocking (run them off
the event loop).

Every upstream is started with ``LLAMASWAP_TREE=<daemon pid>-<n>`` in its environment, and
everything it starts inherits it, ``setsid`` or double-forked daemons included, which a process
group does not follow. That marker is how the daemon (after each exit) and the watchdog (after the
daemon dies, however) find and kill a model's whole tree, and how a health answer is traced to the
process that was spawned rather than to a stranger on the same port. A process that scrubs its
own environment escapes the sweep (cgroups would not); docs/limits.md says so.
"""

from __future__ import annotations

import contextlib
import os
import signal

TREE_VAR = "LLAMASWAP_TREE"


def _pids() -> list[int]:
    try:
        return [int(name) for name in os.listdir("/proc") if name.isdigit()]
    except OSError:
        return []


def marked(prefix: str) -> list[int]:
    """Pids whose environment has ``LLAMASWAP_TREE`` equal to ``prefix`` or starting with it
    (``prefix`` ending in ``-``: every tree of one daemon)."""
    needle = f"\0{TREE_VAR}={prefix}".encode()
    exact = not prefix.endswith("-")
    found = []
    me = os.getpid()
    for pid in _pids():
        if pid == me:
            continue
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                env = b"\0" + f.read()
        except OSError:
            continue
        at = env.find(needle)
        if at >= 0 and (not exact or env[at + len(needle) : at + len(needle) + 1] in (b"\0", b"")):
            found.append(pid)
    return found


def kill_marked(prefix: str) -> list[int]:
    """SIGKILL every process of the tree(s) named by ``prefix``; the pids signalled."""
    pids = marked(prefix)
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    return pids


def _listening_inodes(port: int) -> set[str]:
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                lines = f.read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if (
                len(fields) > 9
                and fields[3] == "0A"
                and int(fields[1].rsplit(":", 1)[1], 16) == port
            ):
                inodes.add(fields[9])
    return inodes


def _holds(pid: int, targets: set[str]) -> bool:
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:[") and link[8:-1] in targets:
            return True
    return False


def describe(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmd = f.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()
    except OSError:
        cmd = ""
    return f"pid {pid}" + (f": {cmd[:160]}" if cmd else "")


def started(pid: int) -> int | None:
    """When ``pid`` started, in clock ticks since boot (``/proc/<pid>/stat`` field 22)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return int(f.read().rsplit(b")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def port_owner(port: int, tree: str, since: int | None = None) -> tuple[bool | None, str]:
    """(is the listener on ``port`` ours?, who it is). Ours: in ``tree``, or started after
    ``since`` (a helper the command launched outside its tree, such as ``docker-proxy`` for
    ``docker run -p``). None: cannot tell (no listener visible, in another network namespace,
    owned by a process this user cannot inspect, or no ``/proc``): the caller trusts it."""
    inodes = _listening_inodes(port)
    if not inodes:
        return None, ""
    for pid in marked(tree):
        if _holds(pid, inodes):
            return True, describe(pid)
    for pid in _pids():
        if _holds(pid, inodes):
            born = started(pid)
            if since is not None and born is not None and born >= since:
                return True, describe(pid)
            return False, describe(pid)
    return None, ""
