"""Facts the core reports as it runs, for metrics, record logs and simulator reports.

Hosts receive them through ``Host.observe``; the core never depends on what a host does with them.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ProcessStateChanged:
    at: float
    model: str
    old: str
    new: str
    generation: int
    reason: str = ""


@dataclass(frozen=True, slots=True)
class SwapStarted:
    at: float
    model: str
    evict: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SwapFinished:
    at: float
    model: str
    error: str | None


@dataclass(frozen=True, slots=True)
class RequestGranted:
    at: float
    request_id: Hashable
    model: str


@dataclass(frozen=True, slots=True)
class RequestFailed:
    at: float
    request_id: Hashable
    model: str
    kind: str
    message: str


@dataclass(frozen=True, slots=True)
class QueueDepth:
    at: float
    depth: int


Observation = (
    ProcessStateChanged | SwapStarted | SwapFinished | RequestGranted | RequestFailed | QueueDepth
)
