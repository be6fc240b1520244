"""The sans-IO core: scheduling, swapping and process lifecycle as pure state machines.

Nothing in this package performs I/O or reads the wall clock. Hosts (the SimPy simulator and
the aiohttp daemon) feed events into :class:`~llamaswap.core.router.Router` and implement the
:class:`~llamaswap.core.host.Host` interface; time comes from a :class:`~llamaswap.core.clock.Clock`.
"""

from llamaswap.core.clock import Clock, ManualClock, TimerHandle
from llamaswap.core.errors import ErrorKind, RequestError
from llamaswap.core.events import (
    Event,
    ProcessExited,
    ProcessReady,
    RequestArrived,
    RequestCancelled,
    ServeDone,
    Shutdown,
    UnloadRequested,
)
from llamaswap.core.host import Host
from llamaswap.core.observe import Observation
from llamaswap.core.process import ProcessState
from llamaswap.core.request import Request
from llamaswap.core.router import Router
from llamaswap.core.spec import GroupSpec, ModelSpec, RoutingSpec

__all__ = [
    "Clock",
    "ErrorKind",
    "Event",
    "GroupSpec",
    "Host",
    "ManualClock",
    "ModelSpec",
    "Observation",
    "ProcessExited",
    "ProcessReady",
    "ProcessState",
    "Request",
    "RequestArrived",
    "RequestCancelled",
    "RequestError",
    "Router",
    "RoutingSpec",
    "ServeDone",
    "Shutdown",
    "TimerHandle",
    "UnloadRequested",
]
