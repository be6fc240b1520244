"""The operator's view of a running daemon: access log, activity store, event stream, timeline.

One :class:`OperatorView` per daemon. Its middleware sits outside the API's, so it sees every
request with its final status (refusals and 401s included) and, once the response is finished,
writes the access-log line, counts the status in ``/metrics``, stores the activity row and
publishes events. Core observations reach it through the host (``AsyncHost.on_observe``); it only
watches and reports, it never takes a scheduling decision.
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from llamaswap.core.observe import (
    Observation,
    ProcessStateChanged,
    QueueDepth,
    RequestGranted,
    SwapFinished,
    SwapStarted,
)
from llamaswap.core.process import ProcessState
from llamaswap.daemon.access_log import AccessLog, AccessRecord
from llamaswap.daemon.activity import NAMES, ActivitySettings, ActivityStore
from llamaswap.daemon.events import EventHub, dumps, frame
from llamaswap.daemon.facts import FACTS, RequestFacts, ResponseTap, usage_counts
from llamaswap.daemon.uiauth import LOGIN_PATHS, Sessions, key_name, login_page
from llamaswap.record.usage import UsageTap

if TYPE_CHECKING:
    from llamaswap.daemon.host import Ticket
    from llamaswap.daemon.runtime import Runtime
    from llamaswap.daemon.server import Daemon

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

TIMELINE_STATES = 4000
TIMELINE_QUEUE = 4000
_SECRET_HEADERS = frozenset(("authorization", "x-api-key", "cookie", "proxy-authorization"))


class Timeline:
    """Bounded history of process states and queue depth (unix times), for the live Gantt."""

    def __init__(self) -> None:
        self.states: deque[dict[str, Any]] = deque(maxlen=TIMELINE_STATES)
        self.queue: deque[tuple[float, int]] = deque(maxlen=TIMELINE_QUEUE)

    def snapshot(self) -> dict[str, Any]:
        return {
            "now": round(time.time(), 3),
            "states": list(self.states),
            "queue": [[round(t, 3), n] for t, n in self.queue],
        }


class OperatorView:
    def __init__(
        self,
        daemon: Daemon,
        access_log: AccessLog | None = None,
        activity: ActivitySettings | None = None,
    ) -> None:
        self.daemon = daemon
        self.access_log = access_log or AccessLog()
        self.activity_settings = activity or ActivitySettings()
        self.store: ActivityStore | None = None
        self.events = EventHub()
        self.timeline = Timeline()
        self.sessions = Sessions()
        self.last_used: dict[str, float] = {}
        """Model -> loop time its last request finished (for "last used" and TTL left)."""
        self._loads: dict[str, list[float]] = {}
        """Model -> [loading since, ready at] of its latest load (loop times)."""
        self._offset = 0.0

    # ================================================================== lifecycle

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._offset = time.time() - loop.time()
        if self.activity_settings.enabled:
            self.store = ActivityStore(self.activity_settings)
        logs = self.daemon.logs
        self.events.describe = self._describe
        self.events.state = self._state_messages
        logs.proxy.listeners.append(functools.partial(self.events.log, "proxy"))
        logs.upstream.listeners.append(functools.partial(self.events.log, "upstream"))

    async def stop(self) -> None:
        self.events.close()
        if self.store is not None:
            store, self.store = self.store, None
            await asyncio.get_running_loop().run_in_executor(None, store.close)

    def attach(self, runtime: Runtime) -> None:
        """A new runtime (start, reload): watch its core's observations."""
        runtime.host.on_observe = self.observe
        self.events.state_changed()

    def unix(self, loop_time: float) -> float:
        return loop_time + self._offset

    # ================================================================== core observations

    def observe(self, obs: Observation) -> None:
        """Checked most frequent first: this runs for every observation the core makes."""
        if isinstance(obs, QueueDepth):
            self.timeline.queue.append((self.unix(obs.at), obs.depth))
            self.events.state_changed()
        elif isinstance(obs, RequestGranted):
            self.events.state_changed()
        elif isinstance(obs, ProcessStateChanged):
            self.timeline.states.append(
                {"t": round(self.unix(obs.at), 3), "model": obs.model, "state": obs.new}
            )
            if obs.new == ProcessState.STARTING.value:
                self._loads[obs.model] = [obs.at, float("inf")]
            elif obs.new == ProcessState.READY.value and obs.model in self._loads:
                self._loads[obs.model][1] = obs.at
            if self.events.active:
                self.events.publish(
                    "processState",
                    {
                        "model": obs.model,
                        "old": obs.old,
                        "new": obs.new,
                        "reason": obs.reason,
                        "at": round(self.unix(obs.at), 3),
                    },
                )
                self.events.state_changed()
        elif isinstance(obs, SwapStarted | SwapFinished) and self.events.active:
            swap: dict[str, Any] = {"model": obs.model, "at": round(self.unix(obs.at), 3)}
            if isinstance(obs, SwapStarted):
                swap.update(event="started", evict=list(obs.evict))
            else:
                swap.update(event="finished", error=obs.error)
            self.events.publish("swap", swap)
            self.events.state_changed()

    # ================================================================== state for the UI

    def _state_messages(self) -> list[tuple[str, Any]]:
        queue = self.timeline.queue
        t, depth = queue[-1] if queue else (time.time(), 0)
        return [
            ("modelStatus", self.model_status()),
            ("scheduler", self.scheduler_state()),
            ("queueDepth", {"depth": depth, "at": round(t, 3)}),
        ]

    def model_status(self) -> list[dict[str, Any]]:
        """llama-swap's ``modelStatus`` items plus queue, in flight, last use and TTL left."""
        runtime = self.daemon.runtime
        config = runtime.config
        host = runtime.host
        now = host.now()
        queued: dict[str, int] = {}
        for request in host.queue:
            queued[request.model] = queued.get(request.model, 0) + 1
        pids = runtime.processes.pids()
        out: list[dict[str, Any]] = []
        for model_id in sorted(config.models):
            model = config.models[model_id]
            state = runtime.state(model_id)
            value = state.value if state is not None else "stopped"
            in_flight = host.in_flight(model_id)
            last = self.last_used.get(model_id)
            ttl_left = None
            if model.ttl > 0 and value == "ready" and not in_flight and last is not None:
                ttl_left = round(max(0.0, model.ttl - (now - last)), 1)
            out.append(
                {
                    "id": model_id,
                    "name": model.name,
                    "description": model.description,
                    "state": value,
                    "unlisted": model.unlisted,
                    "peerID": "",
                    "aliases": list(model.aliases),
                    "queued": queued.get(model_id, 0),
                    "inFlight": in_flight,
                    "lastUsed": None if last is None else round(self.unix(last), 3),
                    "ttl": model.ttl,
                    "ttlLeft": ttl_left,
                    "pid": pids.get(model_id),
                }
            )
        return out

    def scheduler_state(self) -> dict[str, Any]:
        """``/api/scheduler`` plus the queue in order (position, id, model, seconds waited)."""
        runtime = self.daemon.runtime
        scheduler = runtime.router.scheduler
        now = runtime.host.now()
        queue = [
            {
                "position": i + 1,
                "id": str(r.id),
                "model": r.model,
                "waited": round(now - r.arrival, 3),
            }
            for i, r in enumerate(list(runtime.host.queue)[:200])
        ]
        return {
            "scheduler": scheduler.name,
            "state": _jsonable(dict(scheduler.snapshot())),
            "queue": queue,
        }

    def initial_events(self) -> bytes:
        """What a newly connected client gets first (as llama-swap: log history, models, in flight)."""
        logs = self.daemon.logs
        parts = [
            frame(
                "logData",
                dumps({"source": "proxy", "data": logs.proxy.history().decode("utf-8", "replace")}),
            ),
            frame(
                "logData",
                dumps(
                    {
                        "source": "upstream",
                        "data": logs.upstream.history().decode("utf-8", "replace"),
                    }
                ),
            ),
            frame("modelStatus", dumps(self.model_status())),
            frame("inflight", dumps({"operation": "snapshot", "requests": self.inflight()})),
            frame("scheduler", dumps(self.scheduler_state())),
        ]
        return b"".join(parts)

    def inflight(self) -> list[dict[str, Any]]:
        host = self.daemon.runtime.host
        return [self._describe(t) for t in host.tickets() if not t.preload]

    def _describe(self, ticket: Ticket) -> dict[str, Any]:
        request = ticket.request
        now = self.daemon.runtime.host.now()
        return {
            "id": str(request.id),
            "timestamp": time.strftime(
                "%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.unix(request.arrival))
            ),
            "model": request.model,
            "state": "serving" if ticket.granted else "queued",
            "position": ticket.position or None,
            "elapsed_ms": round((now - request.arrival) * 1000),
        }

    # ================================================================== the request path

    def request_started(self, ticket: Ticket) -> None:
        """Called right after the handler submitted its ticket to the core."""
        self.events.inflight_start(str(ticket.request.id), ticket)

    def response_tap(self, facts: RequestFacts, also: Callable[[], None] | None) -> UsageTap:
        """The relay's body tap: first byte time, usage tail, and (when on) the capture head."""
        host = self.daemon.runtime.host

        def first() -> None:
            facts.first_byte = host.now()
            if also is not None:
                also()

        cap = self.activity_settings.capture_bytes
        tap = facts.tap = ResponseTap(first, cap) if cap else UsageTap(first)
        return tap

    def capture_request(self, facts: RequestFacts, body: bytes) -> None:
        cap = self.activity_settings.capture_bytes
        if cap:
            facts.request_body = bytes(body[:cap])

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        keys = self.daemon.runtime.config.api_keys
        if keys:
            if request.path == "/ui/login" and request.method == "POST":
                return await self.sessions.login(request, keys)
            if request.path == "/ui/logout" and request.method == "POST":
                return self.sessions.logout(request)
            session_key = (
                None if "Authorization" in request.headers else self.sessions.key_for(request)
            )
            if session_key is not None:
                request = request.clone(
                    headers={**request.headers, "Authorization": f"Bearer {session_key}"}
                )
        loop_start = asyncio.get_running_loop().time()
        started = time.monotonic()
        status = 500
        response: web.StreamResponse | None = None
        try:
            response = await handler(request)
            status = response.status
            if status == 401 and request.method == "GET" and request.path in LOGIN_PATHS:
                response = login_page()
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        except asyncio.CancelledError:
            status = 499
            raise
        finally:
            self.finished(request, status, response, started, loop_start)

    def finished(
        self,
        request: web.Request,
        status: int,
        response: web.StreamResponse | None,
        started: float,
        loop_start: float,
    ) -> None:
        """Once per request, on the hot path: kept to plain tuples and attribute reads."""
        daemon = self.daemon
        total = time.monotonic() - started
        unix = time.time()
        facts: RequestFacts | None = request.get(FACTS)
        size = _body_length(response)
        daemon.metrics.http_done(status)
        method, path = request.method, request.path
        if facts is None:
            self.access_log.write(
                AccessRecord(unix, method, path, "", status, size, None, total, "")
            )
            if path != "/api/events":
                daemon.access(request, status, started)
            return
        if facts.status is not None:
            status = facts.status
        model = facts.model
        ticket = facts.ticket
        granted = ticket.granted_at if ticket is not None else None
        wait = (
            granted - ticket.request.arrival if ticket is not None and granted is not None else None
        )
        request_id = facts.request_id or (str(ticket.request.id) if ticket is not None else "")
        daemon.metrics.request_done(model, status, total)
        self.access_log.write(
            AccessRecord(unix, method, path, model, status, size, wait, total, request_id)
        )
        daemon.access(request, status, started)
        if ticket is not None:
            if ticket.granted:
                self.last_used[model] = loop_start + total
            self.events.inflight_end(str(ticket.request.id))
        store = self.store
        if store is None:
            return
        prompt = completion = None
        if facts.tap is not None and facts.tap.bytes:
            prompt, completion = usage_counts(facts.tap.tail)
        first = facts.first_byte
        tps = load_wait = None
        if granted is not None and ticket is not None:
            if completion:  # over the service time (grant -> end): what the upstream delivered
                service = loop_start + total - granted
                tps = completion / service if service > 0 else None
            load = self._loads.get(model)
            if load is not None:
                load_wait = max(0.0, min(granted, load[1]) - max(ticket.request.arrival, load[0]))
        keys = daemon.runtime.config.api_keys
        row = (  # in activity.NAMES order
            unix - total,
            model,
            daemon.runtime.router.scheduler.name,
            method,
            path,
            status,
            int(facts.stream),
            wait,
            load_wait,
            None if first is None else first - loop_start,
            total,
            prompt,
            completion,
            tps,
            size,
            key_name(self.sessions.presented(request), keys) if keys else "",
            request_id,
        )
        capture = (
            self._capture(request, facts, response)
            if self.activity_settings.capture_bytes
            else None
        )
        row_id = store.add(row, capture)
        if row_id is not None and self.events.active:
            self.events.activity(row_id, functools.partial(_fields, row))

    @staticmethod
    def _capture(
        request: web.Request, facts: RequestFacts, response: web.StreamResponse | None
    ) -> tuple[str, str, bytes | None, str, bytes | None]:
        def safe(headers: Any) -> str:
            return json.dumps(
                {k: v for k, v in headers.items() if k.lower() not in _SECRET_HEADERS}
            )

        head = getattr(facts.tap, "head", None)
        return (
            request.path,
            safe(request.headers),
            facts.request_body,
            safe(response.headers) if response is not None else "{}",
            bytes(head) if head is not None else None,
        )


def _fields(row: tuple[Any, ...]) -> dict[str, Any]:
    return dict(zip(NAMES, row, strict=True))


def _body_length(response: web.StreamResponse | None) -> int:
    """Body bytes: a plain response is not sent yet when the middleware sees it (count its body);
    a streamed one has been (aiohttp counts what it wrote)."""
    if response is None:
        return 0
    if type(response) is web.Response:
        body = response.body
        return len(body) if type(body) is bytes else response.content_length or 0
    return response.body_length


def _jsonable(value: Any) -> Any:
    """Scheduler snapshots hold tuples, sets and infinities; JSON wants lists and nulls."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = [_jsonable(v) for v in value]
        return sorted(items, key=str) if isinstance(value, set | frozenset) else items
    if (isinstance(value, float) and value != value) or value in (float("inf"), float("-inf")):
        return None
    return value
