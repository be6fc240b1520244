"""A small fidelity run: the real daemon (subprocess, fake upstream processes) vs the simulator.

The full run is ``bench/fidelity.py``; this one compresses the CI-scaled synthetic fidelity scenario
to 20 s so it finishes well under two minutes, and asserts what must hold exactly: the same swaps
(count and model sequence) and, for ``serial``, the same grant order.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llamaswap.fidelity.harness import FidelityOptions, prepare_trace, run_fidelity
from llamaswap.fidelity.plots import plot_fidelity
from sim.scenario import load_scenario

ROOT = Path(__file__).resolve().parents[1]


def test_prepare_trace_compresses_drops_cancels_and_names_requests() -> None:
    scenario = load_scenario(ROOT / "scenarios" / "default.yaml")
    trace = prepare_trace(scenario, 30.0, ci=True)
    assert trace.arrival[0] == 0.0 and trace.arrival[-1] == pytest.approx(30.0)
    assert all(c != c for c in trace.cancel_after.tolist())  # NaN: no cancels
    assert trace.ids is not None and len(set(trace.ids)) == len(trace)


@pytest.mark.daemon
def test_small_fidelity_run_matches_swaps_and_serial_grant_order(tmp_path: Path) -> None:
    scenario = load_scenario(ROOT / "scenarios" / "fidelity-synthetic.yaml")
    options = FidelityOptions(
        schedulers=["serial", "fifo"],
        out=tmp_path,
        duration=20.0,
        ci=True,
        deadline=60.0,
        probe_rounds=3,
    )
    summary = run_fidelity(scenario, options)
    assert json.loads((tmp_path / "fidelity.json").read_text()) == summary
    for name in ("serial", "fifo"):
        result = summary["results"][name]
        live, verdict = result["live"], result["recorded"]
        assert live["answered"] == live["sent"] == summary["requests"]
        assert live["statuses"] == {"200": summary["requests"]}
        assert verdict["completed"]["real"] == verdict["completed"]["sim"] == summary["requests"]
        loads = verdict["loads"]
        assert loads["count"]["real"] == loads["count"]["sim"], loads
        assert loads["identical"], loads
        # Timing is checked loosely here (a busy CI box); bench/fidelity.py reports the 5% goal.
        assert abs(verdict["latency"]["p50"]["rel_error"]) < 0.25, verdict["latency"]
    serial = summary["results"]["serial"]["recorded"]["grant_order"]
    assert serial["identical"], serial
    assert (plot_fidelity(tmp_path, ["serial", "fifo"], "test")).stat().st_size > 10_000


def test_fidelity_refuses_profiles_a_fake_upstream_cannot_play(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from llamaswap.cli import main

    code = main(["fidelity", str(ROOT / "scenarios" / "default.yaml"), "--out", str(tmp_path)])
    assert code == 1
    err = capsys.readouterr().err
    assert "default.yaml: timing.llama-8b.load_time" in err and "use a constant" in err
    assert not (tmp_path / "probe").exists()  # nothing was started
    assert main(["fidelity", str(tmp_path / "missing.yaml")]) == 2
    assert "no such scenario file" in capsys.readouterr().err
    assert main(["fidelity", str(ROOT / "scenarios" / "default.yaml"), "--duration", "0"]) == 2


def test_overheads_hide_start_up_inside_longer_loads() -> None:
    """A fake upstream counts its load from process creation: a load longer than its start-up
    hides it, a shorter one takes the start-up (issue 21: adding the probe's whole excess to
    every load made short runs 17-87% slow)."""
    from llamaswap.fidelity.probe import Overheads
    from llamaswap.timing import Distribution, TimingProfile

    overheads = Overheads(load_extra=0.01, start_up=0.6)
    for load, expected in ((1.5, 1.51), (0.2, 0.61), (0.0, 0.61)):
        profile = TimingProfile(load_time=Distribution("constant", load))
        assert overheads.apply(profile).load_time.value == pytest.approx(expected)
    assert overheads.as_dict()["start_up"] == 0.6


async def test_open_loop_answers_in_order_and_cancels_what_outlives_the_deadline() -> None:
    """The harness's client (also bench/real_fidelity.py's) against a real HTTP server on
    127.0.0.1: answers in send order with their bodies; a request still open at the deadline is
    cancelled and counted, not answered."""
    import asyncio

    from aiohttp import web

    from llamaswap.fidelity.live import Outgoing, open_loop

    never = asyncio.Event()

    async def handle(request: web.Request) -> web.Response:
        if request.path == "/slow":
            await never.wait()
        return web.Response(text=request.headers["X-Id"])

    app = web.Application()
    app.router.add_post("/{name}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        host, port = runner.addresses[0][:2]
        outgoing = [
            Outgoing(0.0, "/fast", b"{}", {"X-Id": "a"}),
            Outgoing(0.05, "/slow", b"{}", {"X-Id": "b"}),
            Outgoing(0.1, "/fast", b"{}", {"X-Id": "c"}),
        ]
        answers, cancelled = await open_loop(
            f"http://{host}:{port}", outgoing, deadline=0.5, keep_bodies=True
        )
    finally:
        never.set()  # let the held handler end, or the runner's cleanup waits out its grace time
        await runner.cleanup()
    assert cancelled == 1 and answers[1] is None
    first, last = answers[0], answers[2]
    assert first is not None and last is not None
    assert (first.status, first.body, last.status, last.body) == ("200", b"a", "200", b"c")
    assert first.late >= 0.0 and last.late >= 0.0 and first.latency > 0.0
