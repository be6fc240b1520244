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
import socket
import struct

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


_NETLINK_SOCK_DIAG = 4
_SOCK_DIAG_BY_FAMILY = 20
_NLM_F_REQUEST_DUMP = 0x1 | 0x300
_NLMSG_DONE = 3
_TCP_LISTEN = 10


def _diag_listeners(port: int) -> set[str] | None:
    """Inodes of TCP listeners on ``port`` through the kernel's sock_diag netlink interface,
    which returns only listening sockets; None when it is not available. Reading
    ``/proc/net/tcp`` walks every socket, TIME_WAIT ones included: 30 ms on a busy box, which
    every model load would pay."""
    inodes: set[str] = set()
    try:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, _NETLINK_SOCK_DIAG)
    except (OSError, AttributeError):
        return None
    with sock:
        for family in (socket.AF_INET, socket.AF_INET6):
            sockid = b"\0" * 40 + struct.pack("=II", 0xFFFFFFFF, 0xFFFFFFFF)
            req = struct.pack("=BBBBI", family, socket.IPPROTO_TCP, 0, 0, 1 << _TCP_LISTEN) + sockid
            header = struct.pack(
                "=IHHII", 16 + len(req), _SOCK_DIAG_BY_FAMILY, _NLM_F_REQUEST_DUMP, 1, 0
            )
            try:
                sock.sendto(header + req, (0, 0))
                done = False
                while not done:
                    data = sock.recv(65536)
                    offset = 0
                    while offset + 16 <= len(data):
                        length, kind = struct.unpack_from("=IH", data, offset)
                        if kind == _NLMSG_DONE or length < 16:
                            done = True
                            break
                        if kind == 2:  # NLMSG_ERROR
                            return None
                        sport = struct.unpack_from("!H", data, offset + 16 + 4)[0]
                        inode = struct.unpack_from("=I", data, offset + 16 + 52 + 16)[0]
                        if sport == port:
                            inodes.add(str(inode))
                        offset += (length + 3) & ~3
                    if not data:
                        break
            except OSError:
                return None
    return inodes


def _listening_inodes(port: int) -> set[str]:
    fast = _diag_listeners(port)
    if fast is not None:
        return fast
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


def descendants(pid: int, limit: int = 64) -> list[int]:
    """``pid`` and its descendants still in the tree of parents (``/proc/<pid>/task/*/children``),
    breadth first: the cheap first look, before scanning every process's environment."""
    out: list[int] = []
    queue = [pid]
    while queue and len(out) < limit:
        current = queue.pop(0)
        out.append(current)
        try:
            tasks = os.listdir(f"/proc/{current}/task")
        except OSError:
            continue
        for tid in tasks:
            try:
                with open(f"/proc/{current}/task/{tid}/children") as f:
                    queue.extend(int(c) for c in f.read().split())
            except (OSError, ValueError):
                continue
    return out


def port_owner(
    port: int, tree: str, since: int | None = None, root: int | None = None
) -> tuple[bool | None, str]:
    """(is the listener on ``port`` ours?, who it is). Ours: in ``tree``, or started after
    ``since`` (a helper the command launched outside its tree, such as ``docker-proxy`` for
    ``docker run -p``). None: cannot tell (no listener visible, in another network namespace,
    owned by a process this user cannot inspect, or no ``/proc``): the caller trusts it.
    ``root``: the spawned process, whose own descendants are looked at first (the usual case,
    a few milliseconds cheaper than the environment scan)."""
    inodes = _listening_inodes(port)
    if not inodes:
        return None, ""
    for pid in descendants(root) if root is not None else ():
        if _holds(pid, inodes):
            return True, describe(pid)
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
