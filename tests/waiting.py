"""How daemon tests wait: for a condition, never for a fixed time.

Why: a fixed sleep is either too long (a slow suite) or too short on a loaded box (a flaky one),
and a copied ``deadline = time.monotonic() + N`` loop tends to lose its failure message. Here a
condition is polled until it holds; on timeout the failure names what was awaited and what the
condition last returned (or what ``seen`` describes), so a red test says what never happened.

- :func:`wait_until` (async tests) and :func:`wait_until_sync` (tests driving a daemon process):
  the condition's first truthy value is returned; exceptions listed in ``ignore`` (e.g. a
  connection refused while a process starts) count as "not yet".
- :func:`sample_until_done`: probe a state repeatedly while something runs, for tests whose point
  is an invariant over a whole run (every probe is kept), not one event.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

DEFAULT_TIMEOUT = 10.0
POLL_INTERVAL = 0.01


class WaitTimeoutError(AssertionError):
    """The awaited condition did not hold in time (an assertion failure, shown as such)."""


class _Attempts:
    """Deadline bookkeeping shared by the async and the blocking loop."""

    def __init__(self, timeout: float, what: str, seen: Callable[[], object] | None) -> None:
        self.deadline = time.monotonic() + timeout
        self.timeout = timeout
        self.what = what
        self.seen = seen
        self.last: object = None

    def expired(self) -> bool:
        return time.monotonic() >= self.deadline

    def failure(self) -> WaitTimeoutError:
        state = self.seen() if self.seen is not None else self.last
        return WaitTimeoutError(
            f"timed out after {self.timeout:g} s waiting for {self.what} (seen: {state!r})"
        )


async def wait_until(
    condition: Callable[[], T | Awaitable[T]],
    timeout: float = DEFAULT_TIMEOUT,
    *,
    what: str,
    seen: Callable[[], object] | None = None,
    ignore: tuple[type[BaseException], ...] = (),
    interval: float = POLL_INTERVAL,
) -> T:
    """Poll ``condition`` (sync or async) until it returns something truthy; return that."""
    attempts = _Attempts(timeout, what, seen)
    while True:
        try:
            value = condition()
            if inspect.isawaitable(value):
                value = await value
        except ignore as exc:
            attempts.last = exc
        else:
            if value:
                return value
            attempts.last = value
        if attempts.expired():
            raise attempts.failure()
        await asyncio.sleep(interval)


def wait_until_sync(
    condition: Callable[[], T],
    timeout: float = DEFAULT_TIMEOUT,
    *,
    what: str,
    seen: Callable[[], object] | None = None,
    ignore: tuple[type[BaseException], ...] = (),
    interval: float = POLL_INTERVAL,
) -> T:
    """:func:`wait_until` for tests that block (a daemon in a subprocess, urllib clients)."""
    attempts = _Attempts(timeout, what, seen)
    while True:
        try:
            value = condition()
        except ignore as exc:
            attempts.last = exc
        else:
            if value:
                return value
            attempts.last = value
        if attempts.expired():
            raise attempts.failure()
        time.sleep(interval)


async def sample_until_done(
    running: Awaitable[T],
    probe: Callable[[], object | Awaitable[object]],
    *,
    interval: float = 0.02,
) -> tuple[T, list[object]]:
    """Await ``running`` while calling ``probe`` every ``interval``; its result and every sample.

    For invariants over a run ("never more than one request at the upstream"): the samples are
    what the test asserts on. The first is taken at once, the last after ``running`` finished.
    """
    task = asyncio.ensure_future(running)
    samples: list[object] = []
    while True:
        finished = task.done()
        value = probe()
        samples.append(await value if inspect.isawaitable(value) else value)
        if finished:
            return task.result(), samples
        await asyncio.wait({task}, timeout=interval)
