"""The tests' waiting helper: returns what it waited for, fails naming what never happened."""

from __future__ import annotations

import asyncio

import pytest
from waiting import WaitTimeoutError, sample_until_done, wait_until, wait_until_sync


async def test_wait_until_returns_the_first_truthy_value_of_a_sync_or_async_condition() -> None:
    calls: list[int] = []

    def counted() -> int | None:
        calls.append(1)
        return len(calls) if len(calls) >= 3 else None

    assert await wait_until(counted, what="three calls", interval=0) == 3

    async def fetched() -> str:
        await asyncio.sleep(0)
        return "ready"

    assert await wait_until(fetched, what="an async answer") == "ready"


async def test_wait_until_times_out_naming_what_was_awaited_and_what_was_seen() -> None:
    with pytest.raises(
        WaitTimeoutError, match=r"waiting for the model to load \(seen: 'starting'\)"
    ):
        await wait_until(lambda: "", 0.05, what="the model to load", seen=lambda: "starting")
    with pytest.raises(WaitTimeoutError, match=r"after 0.05 s waiting for a pid \(seen: None\)"):
        await wait_until(lambda: None, 0.05, what="a pid")


def test_wait_until_sync_treats_ignored_errors_as_not_yet() -> None:
    attempts: list[int] = []

    def flaky() -> bool:
        attempts.append(1)
        if len(attempts) < 3:
            raise ConnectionRefusedError("not listening yet")
        return True

    assert wait_until_sync(flaky, what="the port", ignore=(ConnectionError,), interval=0) is True

    def refused() -> bool:
        raise ConnectionRefusedError("never listening")

    with pytest.raises(WaitTimeoutError, match="ConnectionRefusedError"):  # the last error shown
        wait_until_sync(refused, 0.05, what="the port", ignore=(ConnectionError,))
    with pytest.raises(ZeroDivisionError):  # errors not listed are not swallowed
        wait_until_sync(lambda: 1 / 0, what="arithmetic")


async def test_sample_until_done_probes_during_the_run_and_once_after_it() -> None:
    state = {"step": 0}

    async def run() -> str:
        for step in range(1, 4):
            await asyncio.sleep(0.02)
            state["step"] = step
        return "finished"

    result, samples = await sample_until_done(run(), lambda: state["step"], interval=0.005)
    assert result == "finished"
    assert samples[0] == 0 and samples[-1] == 3
    assert samples == sorted(samples) and len(set(samples)) == 4
