"""Near-ties at fifo batch boundaries, found in a hand-written log."""

from __future__ import annotations

from typing import Any

import pytest

from llamaswap.record.ties import near_ties


def req(rid: str, model: str, arrival: float, grant: float, done: float) -> list[dict[str, Any]]:
    return [
        {"ev": "arrival", "t": arrival, "id": rid, "model": model},
        {"ev": "grant", "t": grant, "id": rid, "model": model},
        {"ev": "done", "t": done, "id": rid, "status": 200},
    ]


def ordered(*groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
    records = [r for g in groups for r in g]
    return sorted(records, key=lambda r: r["t"])


def test_a_request_that_just_missed_its_models_batch_is_a_near_tie() -> None:
    log = ordered(
        req("a1", "A", 0.0, 0.0, 10.0),
        req("b1", "B", 5.0, 10.5, 11.0),  # waits for A's batch to end at 10.0
        req("a2", "A", 10.03, 11.6, 12.0),  # 30 ms too late: waits for the swap back
    )
    (tie,) = near_ties(log, window=0.1)
    assert (tie.request, tie.boundary, tie.joined, tie.other_waiting) == ("a2", "a1", False, 1)
    assert tie.margin == pytest.approx(0.03)
    assert tie.as_dict()["outcome"] == "missed"


def test_a_request_that_joined_just_before_the_batch_ended_is_a_near_tie() -> None:
    log = ordered(
        req("a1", "A", 0.0, 0.0, 10.0),
        req("b1", "B", 5.0, 11.5, 12.0),
        req("a2", "A", 9.98, 9.98, 11.0),  # joined 20 ms before a1 finished
    )
    ties = near_ties(log, window=0.1)
    assert [(t.request, t.boundary, t.joined) for t in ties] == [("a2", "a1", True)]
    assert ties[0].margin == pytest.approx(-0.02)


def test_no_tie_when_nobody_else_waits_or_outside_the_window() -> None:
    quiet = ordered(req("a1", "A", 0.0, 0.0, 10.0), req("a2", "A", 10.03, 10.03, 11.0))
    assert near_ties(quiet) == []  # nothing waited: no swap could start at 10.0
    far = ordered(
        req("a1", "A", 0.0, 0.0, 10.0),
        req("b1", "B", 5.0, 10.5, 11.0),
        req("a2", "A", 10.3, 11.6, 12.0),
    )
    assert near_ties(far, window=0.1) == []
    assert [t.request for t in near_ties(far, window=0.5)] == ["a2"]


def test_a_cancelled_waiter_stops_counting_as_waiting() -> None:
    log = ordered(
        req("a1", "A", 0.0, 0.0, 10.0),
        [
            {"ev": "arrival", "t": 5.0, "id": "b1", "model": "B"},
            {"ev": "cancel", "t": 6.0, "id": "b1"},
        ],
        req("a2", "A", 10.03, 10.5, 11.0),
    )
    assert near_ties(log) == []


def test_a_negative_window_is_refused() -> None:
    with pytest.raises(ValueError, match="window: must be >= 0 seconds"):
        near_ties([], window=-1)
