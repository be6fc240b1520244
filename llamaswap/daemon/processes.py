"""Real upstream processes: spawn, health-check, stop and report (reference §3.2, §3.5-3.7).

The core decides *when*; this module only does it and reports back through two callbacks:
``on_ready(model, generation, slots)`` and ``on_exited(model, generation, reason)``. The callbacks are
invoked from this module's own tasks (never from inside ``Router.handle``).

- Each upstream runs in its own session/process group, with ``PR_SET_PDEATHSIG(SIGKILL)`` so the
  kernel kills it if the daemon dies; a :mod:`watchdog` process covers the rest of its group.
- stdout/stderr are read in chunks (not lines: a model's progress bar may never end a line) into the
  model's log monitor.
- Health checks poll ``proxy + checkEndpoint`` from 5 ms, backing off by 1.5x to 10 ms: a model
  that takes two minutes to load costs ~12000 cheap GETs (~1.5% of a core while it loads), and a
  swap costs ~5-10 ms beyond the upstream's own start (llama-swap polls once a second, ~0.5 s).
  The deadline is the core's business.
- Once healthy, one ``GET proxy/props`` asks the upstream for its parallel slots (llama-server's
  ``total_slots``); ``slots`` is None when it has no such endpoint or says nothing usable. The core
  decides what to do with it (``batch-aging`` sizes its window when ``slots`` is not configured).
- Commands are looked up on ``PATH``; a bare name that is not there but sits next to the daemon's
  own Python (its virtualenv's ``bin``) is taken from there, so ``llamaswap fake-upstream`` in a
  config works even when the venv is not activated.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import itertools
import logging
import os
import shlex
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import aiohttp

from llamaswap.daemon.logs import Logs
from llamaswap.daemon.proctree import TREE_VAR, kill_marked, port_owner, started

log = logging.getLogger("llamaswap.processes")

POLL_FIRST = 0.005
POLL_MAX = 0.01
POLL_ATTEMPT_TIMEOUT = 5.0
PROPS_TIMEOUT = 2.0
PIPE_DRAIN_TIMEOUT = 2.0
DEATH_GRACE = 0.25
_PR_SET_PDEATHSIG = 1
PORT_CHECK_TIMEOUT = 0.5


class PortInUseError(OSError):
    """Something already listens on a model's port: the load fails, naming it."""


@dataclass(frozen=True)
class UpstreamSpec:
    """What it takes to run one model's server (from ``ModelConfig``)."""

    model: str
    cmd: tuple[str, ...]
    proxy: str
    cmd_stop: str = ""
    env: Mapping[str, str] = field(default_factory=dict)
    health_url: str | None = None
    """None: ready as soon as it is spawned (``checkEndpoint: none``)."""
    inherit_env: bool = False
    """``security.inheritEnv``: the daemon's whole environment instead of :data:`PASS_ENV`."""
    check_port: bool = False
    """The daemon allocated the port (``${PORT}``): whatever already listens there, or answers
    there without being the spawned process, is a stranger. A fixed port in ``proxy`` is the
    operator's own arrangement (a server run elsewhere, ``docker run -p``): trusted as in
    llama-swap."""

    @property
    def local_port(self) -> int | None:
        """The port of a ``proxy`` on this machine whose owner is checked, else None."""
        if not self.check_port:
            return None
        try:
            parts = urlsplit(self.proxy)
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            return None
        host = (parts.hostname or "").lower()
        local = host in ("localhost", "::1") or host.startswith("127.")
        return port if local else None


PASS_ENV = frozenset(
    [
        "PATH",
        "HOME",
        "USER",
        "LOGNAME",
        "SHELL",
        "LANG",
        "LANGUAGE",
        "TZ",
        "TMPDIR",
        "TERM",
        "XDG_RUNTIME_DIR",
        "LD_LIBRARY_PATH",
        "PYTHONPATH",
        "VIRTUAL_ENV",
        "SSL_CERT_FILE",
    ]
)
PASS_PREFIXES = ("LC_", "CUDA_", "NVIDIA_", "HIP_", "ROCR_", "HSA_", "GPU_", "GGML_", "LLAMA_")
"""What an upstream inherits by default: where things are, the locale, and the GPU selection
variables model servers read. Not the rest: the daemon's environment holds the values behind
``apiKeys: ["${env.KEY}"]`` and whatever else its operator exported. A model's ``env`` adds to
this; ``security.inheritEnv: true`` passes everything, as llama-swap does."""


def upstream_env(spec: UpstreamSpec, tree: str) -> dict[str, str]:
    if spec.inherit_env:
        base = dict(os.environ)
    else:
        base = {k: v for k, v in os.environ.items() if k in PASS_ENV or k.startswith(PASS_PREFIXES)}
    return {**base, **spec.env, TREE_VAR: tree}


def _set_pdeathsig() -> None:  # pragma: no cover - runs in the forked child
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except OSError:
        pass


def resolve_command(argv: Sequence[str]) -> list[str]:
    """argv with its program found on PATH, or beside the daemon's interpreter as a fallback."""
    program = argv[0]
    if os.sep in program or shutil.which(program):
        return list(argv)
    sibling = os.path.join(os.path.dirname(sys.executable), program)
    if os.access(sibling, os.X_OK):
        return [sibling, *argv[1:]]
    return list(argv)


def slots_from_props(body: object) -> int | None:
    """``total_slots`` of a llama-server ``/props`` answer when it is a whole number >= 1."""
    slots = body.get("total_slots") if isinstance(body, dict) else None
    if isinstance(slots, bool) or not isinstance(slots, int) or slots < 1:
        return None
    return slots


def _alive(pid: int) -> bool:
    """Running (not a zombie waiting to be reaped)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] not in (b"Z", b"X")
    except (OSError, IndexError):
        return False


_trees = itertools.count(1)


def tree_prefix() -> str:
    """The ``LLAMASWAP_TREE`` prefix of every upstream this daemon process starts."""
    return f"{os.getpid()}-"


class Watchdog:
    """The daemon's side of :mod:`llamaswap.daemon.watchdog`."""

    def __init__(self) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "llamaswap.daemon.watchdog", tree_prefix()],
            stdin=subprocess.PIPE,
            start_new_session=True,
            close_fds=True,
        )

    @property
    def pid(self) -> int:
        return self._proc.pid

    def _send(self, line: str) -> None:
        stdin = self._proc.stdin
        if stdin is None:
            return
        try:
            stdin.write(line.encode() + b"\n")
            stdin.flush()
        except (BrokenPipeError, ValueError):
            log.warning("watchdog is gone; orphan protection relies on PDEATHSIG only")

    def add(self, pgid: int) -> None:
        self._send(f"+{pgid}")

    def remove(self, pgid: int) -> None:
        self._send(f"-{pgid}")

    def close(self) -> None:
        """Clean exit: close the pipe (the watchdog kills what is left, normally nothing)."""
        if self._proc.stdin is not None:
            with contextlib.suppress(OSError):
                self._proc.stdin.close()
        try:
            self._proc.wait(timeout=5)
        except subprocess.TimeoutExpired:  # pragma: no cover
            self._proc.kill()


class _ExitProtocol(asyncio.subprocess.SubprocessStreamProtocol):
    """asyncio's subprocess protocol plus a future set the moment the process exits.

    ``Process.wait()`` returns only once the output pipe is closed too, so a grandchild that
    inherited the pipe (and left the process group) would hold the exit report forever."""

    def __init__(self, exited: asyncio.Future[None], loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(limit=1 << 16, loop=loop)
        self._exited = exited

    def process_exited(self) -> None:
        super().process_exited()
        if not self._exited.done():
            self._exited.set_result(None)


OUTPUT_TAIL_BYTES = 2048
"""How much of a process's latest output is kept to explain its exit."""
LAST_LINE_CHARS = 300


def _last_line(output: bytes) -> str:
    """The last non-blank line of ``output`` (progress-bar carriage returns split lines too)."""
    text = output.decode("utf-8", errors="replace").replace("\r", "\n")
    lines = [line.strip() for line in text.split("\n") if line.strip()]
    if not lines:
        return ""
    last = lines[-1]
    return last if len(last) <= LAST_LINE_CHARS else last[: LAST_LINE_CHARS - 3] + "..."


@dataclass
class _Child:
    model: str
    generation: int
    proc: asyncio.subprocess.Process | None = None
    stop_requested: bool = False
    kill_requested: bool = False
    ready: bool = False
    task: asyncio.Task[None] | None = None
    output_tail: bytes = b""
    """The last bytes this process wrote: its exit reason quotes the last line (why it died)."""
    tree: str = field(default_factory=lambda: f"{tree_prefix()}{next(_trees)}")
    """Its ``LLAMASWAP_TREE`` marker (see :mod:`llamaswap.daemon.proctree`)."""
    foreign: str = ""
    """Why it was killed for a stranger answering on its port (its exit reason then)."""


class UpstreamProcesses:
    def __init__(
        self,
        specs: Mapping[str, UpstreamSpec],
        logs: Logs,
        on_ready: Callable[[str, int, int | None], None],
        on_exited: Callable[[str, int, str], None],
        watchdog: Watchdog | None = None,
    ) -> None:
        self._specs = specs
        self._logs = logs
        self._on_ready = on_ready
        self._on_exited = on_exited
        self._watchdog = watchdog
        self._children: dict[str, _Child] = {}
        self._session: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------ Host side (never blocks)

    def spawn(self, model: str, generation: int) -> None:
        child = _Child(model, generation)
        self._children[model] = child
        child.task = self._start_task(self._run(child))

    def terminate(self, model: str, generation: int) -> None:
        child = self._child(model, generation)
        if child is None:
            return
        child.stop_requested = True
        if child.proc is not None and child.proc.returncode is None:
            self._start_task(self._stop(child))

    def kill(self, model: str, generation: int) -> None:
        child = self._child(model, generation)
        if child is None:
            return
        child.kill_requested = True
        if child.proc is not None:
            self._signal(child.proc.pid, signal.SIGKILL)

    def pid(self, model: str) -> int | None:
        child = self._children.get(model)
        if child is None or child.proc is None or child.proc.returncode is not None:
            return None
        return child.proc.pid

    async def settle_if_dead(self, model: str, timeout: float = 1.0) -> None:
        """If the model's process has died, wait (bounded) until its exit has been reported.

        Called when relaying to it failed: answering the client only after the core knows the
        process is gone means the client's next request restarts it instead of meeting the
        corpse (a crash is seen on the socket before the child watcher reaps the process).
        """
        child = self._children.get(model)
        if child is None or child.proc is None or child.task is None:
            return
        # A dying process closes its sockets a moment before it becomes a zombie: give it that
        # moment (only on this failure path) before concluding it is alive.
        loop = asyncio.get_running_loop()
        grace_until = loop.time() + DEATH_GRACE
        while _alive(child.proc.pid):
            if loop.time() >= grace_until:
                return
            await asyncio.sleep(0.005)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(child.task), timeout)

    def pids(self) -> dict[str, int]:
        return {m: pid for m in self._children if (pid := self.pid(m)) is not None}

    async def aclose(self) -> None:
        """Last resort at exit: SIGKILL whatever is still running and wait for the reports."""
        for child in list(self._children.values()):
            if child.proc is not None and child.proc.returncode is None:
                self._signal(child.proc.pid, signal.SIGKILL)
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=PIPE_DRAIN_TIMEOUT + 3)
        if self._session is not None:
            await self._session.close()

    # ------------------------------------------------------------------ internals

    def _child(self, model: str, generation: int) -> _Child | None:
        child = self._children.get(model)
        if child is None or child.generation != generation:
            return None
        return child

    def _start_task(self, coro: object) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _session_get(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=POLL_ATTEMPT_TIMEOUT),
                connector=aiohttp.TCPConnector(limit=0, force_close=False),
            )
        return self._session

    @staticmethod
    def _signal(pid: int, sig: signal.Signals) -> None:
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        except PermissionError:  # pragma: no cover
            log.warning("not allowed to signal process group %s", pid)

    async def _run(self, child: _Child) -> None:
        spec = self._specs[child.model]
        monitor = self._logs.model(child.model)
        env = upstream_env(spec, child.tree)
        try:
            argv = resolve_command(spec.cmd)
            if not argv:
                raise ValueError("empty cmd")
            await self._port_free(spec)
            loop = asyncio.get_running_loop()
            exited: asyncio.Future[None] = loop.create_future()
            transport, protocol = await loop.subprocess_exec(
                lambda: _ExitProtocol(exited, loop),
                *argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
                preexec_fn=_set_pdeathsig,
            )
            proc = asyncio.subprocess.Process(transport, protocol, loop)
        except PortInUseError as exc:
            reason = str(exc)
            monitor.write(f"llamaswap: {reason}\n".encode())
            self._forget(child)
            self._on_exited(child.model, child.generation, reason)
            return
        except (OSError, ValueError, subprocess.SubprocessError) as exc:
            reason = f"failed to start command: {exc}"
            monitor.write(f"llamaswap: {reason}\n".encode())
            self._forget(child)
            self._on_exited(child.model, child.generation, reason)
            return
        child.proc = proc
        if self._watchdog is not None:
            self._watchdog.add(proc.pid)
        log.info("started %s (generation %d) pid %d", child.model, child.generation, proc.pid)
        if child.kill_requested:
            self._signal(proc.pid, signal.SIGKILL)
        elif child.stop_requested:
            self._start_task(self._stop(child))
        pump = asyncio.get_running_loop().create_task(self._pump(proc, monitor, child))
        health = asyncio.get_running_loop().create_task(self._health(child, spec))
        await exited  # not proc.wait(): that also waits for every holder of the pipe to go
        code = proc.returncode if proc.returncode is not None else -signal.SIGKILL
        health.cancel()
        # Grandchildren may still hold the pipe: clean the group, and whatever left it (setsid,
        # double fork) but still carries the tree's marker; then stop waiting for EOF.
        self._signal(proc.pid, signal.SIGKILL)
        swept = await loop.run_in_executor(None, kill_marked, child.tree)
        if swept:
            log.info("%s: killed %d leftover descendant(s): %s", child.model, len(swept), swept)
        with contextlib.suppress(TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(pump, PIPE_DRAIN_TIMEOUT)
        with contextlib.suppress(asyncio.CancelledError):
            await health
        if self._watchdog is not None:
            self._watchdog.remove(proc.pid)
        reason = self._describe_exit(child, code)
        log.info("%s (generation %d) exited: %s", child.model, child.generation, reason)
        self._forget(child)
        self._on_exited(child.model, child.generation, reason)

    def _forget(self, child: _Child) -> None:
        if self._children.get(child.model) is child:
            del self._children[child.model]

    @staticmethod
    def _describe_exit(child: _Child, code: int) -> str:
        how = f"killed by {signal.Signals(-code).name}" if code < 0 else f"code {code}"
        if child.foreign:
            return child.foreign
        if child.stop_requested or child.kill_requested:
            return f"stopped ({how})"
        said = _last_line(child.output_tail)
        said = f"; its last output: {said}" if said else ""
        if not child.ready:
            return f"upstream command exited prematurely ({how}){said}"
        return f"exited unexpectedly ({how}){said}"

    @staticmethod
    async def _pump(proc: asyncio.subprocess.Process, monitor: object, child: _Child) -> None:
        stream = proc.stdout
        if stream is None:
            return
        write = monitor.write  # type: ignore[attr-defined]
        partial = b""
        while True:
            data = await stream.read(65536)
            if not data:
                if partial:
                    write(partial + b"\n")
                return
            child.output_tail = (child.output_tail + data)[-OUTPUT_TAIL_BYTES:]
            # Whole lines only: the combined logs interleave every process's output, and a line
            # cut at a read boundary would be spliced with another process's line.
            data = partial + data
            cut = data.rfind(b"\n") + 1
            if cut == 0 and len(data) < 65536:
                partial = data
                continue
            cut = cut or len(data)
            partial = data[cut:]
            write(data[:cut])

    async def _health(self, child: _Child, spec: UpstreamSpec) -> None:
        if spec.health_url is None:
            child.ready = True
            self._on_ready(child.model, child.generation, None)
            return
        session = self._session_get()
        delay = POLL_FIRST
        while not (child.stop_requested or child.kill_requested):
            try:
                async with session.get(spec.health_url) as response:
                    await response.read()
                    if response.status == 200:
                        break
            except (aiohttp.ClientError, TimeoutError, OSError):
                pass
            await asyncio.sleep(delay)
            delay = min(POLL_MAX, delay * 1.5)
        else:
            return
        if not await self._answered_by_child(child, spec):
            return
        slots = await self._reported_slots(session, spec)
        if child.stop_requested or child.kill_requested:
            return
        child.ready = True
        self._on_ready(child.model, child.generation, slots)

    @staticmethod
    async def _reported_slots(session: aiohttp.ClientSession, spec: UpstreamSpec) -> int | None:
        """The upstream's own parallel slot count (llama-server ``/props``), or None."""
        try:
            async with session.get(
                spec.proxy.rstrip("/") + "/props",
                timeout=aiohttp.ClientTimeout(total=PROPS_TIMEOUT),
            ) as response:
                if response.status != 200:
                    return None
                body = await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError):
            return None
        return slots_from_props(body)

    async def _answered_by_child(self, child: _Child, spec: UpstreamSpec) -> bool:
        """The first health answer must come from the process we spawned (its tree, or a helper
        started after it): anything older listening there (a leftover upstream of an earlier
        run that had not bound yet when the port was checked) would otherwise be taken for the
        model and sent its traffic. A stranger gets our child killed and the load failed,
        naming it."""
        port = spec.local_port
        if port is None or child.proc is None:
            return True
        loop = asyncio.get_running_loop()
        since = started(child.proc.pid)
        ours, who = await loop.run_in_executor(
            None, port_owner, port, child.tree, since, child.proc.pid
        )
        if ours is not False:
            return True
        child.foreign = (
            f"port {port} is answered by a process llamaswap did not start ({who}); "
            f"{child.model} was stopped instead of trusting it"
        )
        log.warning("%s: %s", child.model, child.foreign)
        self._signal(child.proc.pid, signal.SIGKILL)
        return False

    async def _port_free(self, spec: UpstreamSpec) -> None:
        """Refuse to spawn when something already accepts connections on the model's port."""
        port = spec.local_port
        if port is None:
            return
        host = urlsplit(spec.proxy).hostname or "127.0.0.1"
        try:
            async with asyncio.timeout(PORT_CHECK_TIMEOUT):
                _, writer = await asyncio.open_connection(host, port)
        except (OSError, TimeoutError):
            return  # refused (free), or nothing answering in time
        writer.close()
        loop = asyncio.get_running_loop()
        _, who = await loop.run_in_executor(None, port_owner, port, "\0")
        raise PortInUseError(
            f"port {port} is already in use by another process ({who or 'unknown'}); "
            f"not starting {spec.model} (stop that process or change the model's port)"
        )

    async def _stop(self, child: _Child) -> None:
        proc = child.proc
        if proc is None or proc.returncode is not None:
            return
        spec = self._specs[child.model]
        if spec.cmd_stop:
            try:
                argv = shlex.split(spec.cmd_stop.replace("${PID}", str(proc.pid)))
                if not argv:
                    raise ValueError("empty cmdStop")
                stopper = await asyncio.create_subprocess_exec(
                    *resolve_command(argv),
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    env=upstream_env(spec, child.tree),
                    start_new_session=True,
                )
                out, _ = await stopper.communicate()
                self._logs.model(child.model).write(out)
                return
            except (OSError, ValueError, subprocess.SubprocessError) as exc:
                log.warning("cmdStop of %s failed (%s); sending SIGTERM", child.model, exc)
        self._signal(proc.pid, signal.SIGTERM)
