"""Near-ties at fifo batch boundaries: the decisions a few milliseconds of timing can flip.

Under ``fifo`` a request for the resident model joins its batch while that model is still serving;
once the model's last in-flight request is done and another model is waiting, the swap starts and a
later request for the old model waits for the next swap back (two more loads). So whenever a
request for model X arrives within a few milliseconds of the completion that ended X's batch, the
swap count depends on which came first. Any simulation, however faithful, decides such a tie by its
own timing, so listing them in a real log says how far a swap-count comparison can be trusted.
"""

from __future__ import annotations

import bisect
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from llamaswap.record.calibrate import collect_requests


@dataclass(frozen=True)
class NearTie:
    request: str
    """The request that arrived near the boundary."""
    model: str
    margin: float
    """Its arrival minus the completion: < 0 it arrived in time and joined, > 0 it just missed."""
    boundary: str
    """The request whose completion (with another model waiting) was the batch boundary."""
    other_waiting: int
    """Requests for other models waiting at that completion."""

    @property
    def joined(self) -> bool:
        return self.margin <= 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "request": self.request,
            "model": self.model,
            "margin_s": round(self.margin, 6),
            "outcome": "joined" if self.joined else "missed",
            "boundary": self.boundary,
            "other_waiting": self.other_waiting,
        }


def near_ties(records: Iterable[Mapping[str, Any]], window: float = 0.1) -> list[NearTie]:
    """Arrivals within ``window`` seconds of a completion of the same model while another waited.

    Sorted by ``|margin|``, closest first. A request that arrived before the completion counts only
    if it was granted by then (it joined the batch); one that arrived after counts only if it was
    not granted at once (it missed it).
    """
    if window < 0:
        raise ValueError(f"window: must be >= 0 seconds, got {window}")
    requests, _, _, _ = collect_requests(records)
    arrivals: dict[str, list[tuple[float, int]]] = defaultdict(list)
    # Waiting-line sweep: +1 at arrival, -1 when granted or otherwise answered.
    steps: list[tuple[float, int, str]] = []
    for index, r in enumerate(requests):
        arrivals[r.model].append((r.arrival, index))
        steps.append((r.arrival, 1, r.model))
        left = r.grant if r.grant is not None else (r.done if r.done is not None else r.cancelled)
        if left is not None:
            steps.append((left, -1, r.model))
    for series in arrivals.values():
        series.sort()
    steps.sort(key=lambda s: (s[0], s[1]))  # at the same instant, leave before arriving
    completions = sorted(
        (r.done, index) for index, r in enumerate(requests) if r.ok and r.done is not None
    )
    waiting: Counter[str] = Counter()
    step = 0
    ties: list[NearTie] = []
    for done, index in completions:
        while step < len(steps) and steps[step][0] <= done:
            waiting[steps[step][2]] += steps[step][1]
            step += 1
        finished = requests[index]
        others = sum(n for model, n in waiting.items() if model != finished.model)
        if others <= 0:
            continue
        series = arrivals[finished.model]
        lo = bisect.bisect_left(series, (done - window, -1))
        hi = bisect.bisect_right(series, (done + window, len(requests)))
        for arrival, other in series[lo:hi]:
            r = requests[other]
            if other == index or r.grant is None:
                continue
            joined = arrival <= done and r.grant <= done
            missed = arrival > done and r.grant > arrival
            if joined or missed:
                ties.append(NearTie(r.id, r.model, arrival - done, finished.id, others))
    ties.sort(key=lambda t: (abs(t.margin), t.request))
    return ties
