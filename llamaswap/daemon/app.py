"""The HTTP API (reference §2): routes, auth, CORS, and the request path through the core.

Request path for a model-dispatched endpoint: read the body (413 past the limit) -> find the model
(400 if missing or malformed, 404 if unknown) -> filters -> ``submit`` a ticket to the core -> wait
(with the loading stream when ``sendLoadingState`` applies) -> relay to the upstream -> ``ServeDone``.
A client that disconnects while waiting cancels its ticket (aiohttp handler cancellation), which
sends ``RequestCancelled`` so no load is triggered for nobody.
"""

from __future__ import annotations

import base64
import gc
import hmac
import itertools
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import unquote

from aiohttp import web

from llamaswap.config.model import Config
from llamaswap.config.peers import PeerRoute
from llamaswap.core.errors import ErrorKind, RequestError
from llamaswap.core.process import ProcessState
from llamaswap.core.selectors import NoTargetError
from llamaswap.daemon.body import Body as ReceivedBody
from llamaswap.daemon.body import BodyTooLargeError, BodyTooSlowError, paced, read_body
from llamaswap.daemon.browser import add_cors_headers, browser_guard
from llamaswap.daemon.contract import Backend, Server
from llamaswap.daemon.errors import error_response, request_error_response
from llamaswap.daemon.extract import (
    BadRequestError,
    Extracted,
    apply_filters,
    extract,
    replace_multipart_model,
)
from llamaswap.daemon.facts import facts_of
from llamaswap.daemon.forward import failed_status, relay, request_headers
from llamaswap.daemon.loading import wait_with_loading_state
from llamaswap.daemon.logs import LogMonitor
from llamaswap.daemon.paths import ClimbsOutError, upstream_rest
from llamaswap.daemon.peers import forward as peer_forward
from llamaswap.daemon.peers import peer_body, peer_records
from llamaswap.daemon.profiles import apply_pin, pin_records
from llamaswap.daemon.profiles import routes as profile_routes
from llamaswap.daemon.selecting import select, selector_records

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

JSON_ROUTES = (
    "/v1/chat/completions",
    "/v1/responses",
    "/v1/completions",
    "/v1/messages",
    "/v1/messages/count_tokens",
    "/v1/embeddings",
    "/reranking",
    "/rerank",
    "/v1/rerank",
    "/v1/reranking",
    "/infill",
    "/completion",
    "/v1/audio/speech",
    "/v1/images/generations",
    "/sdapi/v1/txt2img",
    "/sdapi/v1/img2img",
)
VERSIONLESS_ROUTES = (
    "/v/chat/completions",
    "/v/responses",
    "/v/completions",
    "/v/messages",
    "/v/messages/count_tokens",
    "/v/embeddings",
    "/v/rerank",
    "/v/reranking",
)
MULTIPART_ROUTES = ("/v1/audio/transcriptions", "/v1/images/edits")
QUERY_ROUTES = ("/v1/audio/voices", "/sdapi/v1/loras", "/props")
NO_AUTH = frozenset(("/health", "/wol-health"))
REQUEST_ID_HEADER = "X-Request-Id"
"""A client-chosen request id: the id ``serve --record`` logs (so replayed traces line up)."""
_record_ids = itertools.count(1)


def _api_key(request: web.BaseRequest) -> str | None:
    """The key a client presented: Basic password, then Bearer, then ``x-api-key``."""
    auth = request.headers.get("Authorization", "")
    scheme, _, value = auth.partition(" ")
    if scheme.lower() == "basic" and value:
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            return None
        return decoded.partition(":")[2]
    if scheme.lower() == "bearer" and value:
        return value.strip()
    return request.headers.get("x-api-key")


def key_ok(presented: str | None, keys: tuple[str, ...]) -> bool:
    """Constant time in the key's content: every configured key is compared, no early exit."""
    if presented is None:
        return False
    given = presented.encode("utf-8", "surrogateescape")
    ok = False
    for key in keys:
        ok |= hmac.compare_digest(given, key.encode("utf-8"))
    return ok


class Api:
    """Route handlers bound to one :class:`Server` (its current backend changes on reload)."""

    def __init__(self, server: Server, client_max_size: int = 1 << 30) -> None:
        self.server = server
        self.client_max_size = client_max_size

    # ================================================================== middleware

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if self.server.draining and request.path not in NO_AUTH:
            return error_response(
                request, 503, "llamaswap is shutting down", headers={"Connection": "close"}
            )
        keys = self.server.config.api_keys
        if keys and request.path not in NO_AUTH and not key_ok(_api_key(request), keys):
            return error_response(
                request,
                401,
                "unauthorized: invalid or missing API key",
                headers={"WWW-Authenticate": 'Basic realm="llamaswap"'},
            )
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            return error_response(request, exc.status, exc.reason)
        return response

    # ================================================================== model-dispatched

    def model_handler(self, *, query_first: bool = False, strip_prefix: str = "") -> Handler:
        async def handle(request: web.Request) -> web.StreamResponse:
            facts_of(request)  # a model route: the operator's view logs and stores it
            return await self._dispatch(request, query_first, strip_prefix)

        return handle

    async def _dispatch(
        self, request: web.Request, query_first: bool, strip_prefix: str
    ) -> web.StreamResponse:
        started = time.monotonic()
        content_type = request.headers.get("Content-Type", "")
        limits = self.server.config.limits
        try:
            received = await read_body(
                request.content,
                content_type,
                request.content_length,
                request.query,
                self.client_max_size,
                limits,
            )
        except BodyTooLargeError as exc:
            return error_response(request, 413, f"request body too large: {exc}")
        except BodyTooSlowError as exc:
            return error_response(request, 408, str(exc), headers={"Connection": "close"})
        self.server.operator.capture_request(facts_of(request), received.head)
        try:
            found = extract(
                content_type,
                received.head,
                request.query,
                query_first=query_first,
                max_containers=limits.max_json_containers,
            )
        except BadRequestError as exc:
            return error_response(request, 400, str(exc))
        if not found.model:
            return error_response(
                request, 400, "no model could be identified: set 'model' in the body or ?model="
            )
        backend = await self.server.current()
        if (refusal := apply_pin(request, backend, found, received, content_type)) is not None:
            return refusal
        if found.model not in backend.config.selectors:
            return await self._route(request, backend, found, received, strip_prefix, started)
        try:
            selector, target = (
                found.model,
                select(backend, found.model, content_type, found, received),
            )
        except NoTargetError as exc:
            return error_response(request, 503, str(exc))
        try:
            return await self._route(request, backend, found, received, strip_prefix, started)
        finally:
            backend.selectors.release(selector, target)

    async def _route(
        self,
        request: web.Request,
        backend: Backend,
        found: Extracted,
        received: ReceivedBody,
        strip_prefix: str,
        started: float,
    ) -> web.StreamResponse:
        """A request whose name is final (selectors applied): a local model or a peer's."""
        assert found.model is not None
        content_type = request.headers.get("Content-Type", "")
        body: bytes | AsyncIterator[bytes] = received.head
        config = backend.config
        model_id = config.resolve(found.model)
        if model_id is None:
            route = config.peer_route(found.model)
            if route is not None:
                return await self._to_peer(request, config, route, found, received, strip_prefix)
            return error_response(request, 404, f"model {found.model!r} is not configured")
        model = config.models[model_id]
        seen = facts_of(request)
        seen.model, seen.stream = model_id, bool(found.stream)
        if found.json_body is not None:
            if apply_filters(
                found.json_body, model.use_model_name, model.strip_params, model.set_params
            ):
                body = json.dumps(found.json_body).encode()
        elif model.use_model_name and content_type.lower().startswith("multipart/form-data"):
            body = replace_multipart_model(content_type, received.head, model.use_model_name)
        body, body_length, path = _outgoing(request, received, body, strip_prefix)
        url = model.proxy.rstrip("/") + path
        loading = (
            found.stream
            and model.send_loading_state
            and request.path.startswith("/v1/chat/completions")
            and backend.state(model_id) is not ProcessState.READY
        )
        facts = None
        if self.server.recorder is not None:
            json_body = found.json_body if isinstance(found.json_body, dict) else {}
            max_tokens = next(
                (
                    v
                    for k in ("max_tokens", "max_completion_tokens", "n_predict")
                    if isinstance(v := json_body.get(k), int) and not isinstance(v, bool)
                ),
                None,
            )
            facts = (max_tokens, bool(found.stream))
        return await self._serve(
            request, backend, model_id, url, body, loading, started, facts, body_length
        )

    async def _serve(
        self,
        request: web.Request,
        backend: Backend,
        model_id: str,
        url: str,
        body: Any,
        loading: bool,
        started: float,
        facts: tuple[int | None, bool] | None = None,
        body_length: int | None = None,
    ) -> web.StreamResponse:
        server = self.server
        server.request_opened()
        recorder = server.recorder
        request_id: str | None = request.headers.get(REQUEST_ID_HEADER) or None
        if request_id is not None:
            request_id = request_id[:200]
        seen = facts_of(request)
        seen.model = model_id
        on_first = None
        if recorder is not None:
            if request_id is None:
                request_id = f"req-{next(_record_ids)}"
            max_tokens, stream = facts or (None, False)
            recorder.arrival(request_id, model_id, output_tokens=max_tokens, stream=stream)
            logged_id = request_id

            def on_first() -> None:
                recorder.first_byte(logged_id)

        tap = server.operator.response_tap(seen, on_first)
        ticket = backend.submit(model_id, request_id=request_id)
        seen.ticket, seen.request_id = ticket, request_id or ""
        server.operator.request_started(ticket)
        url_path = url[len(backend.config.models[model_id].proxy.rstrip("/")) :]
        status = 499
        error_text: str | None = None
        try:
            prepared: web.StreamResponse | None = None
            error: RequestError | None
            if loading and not ticket.future.done():
                prepared, error = await wait_with_loading_state(request, ticket, model_id)
                if error is not None:
                    status = 200
                    return prepared
            else:
                error = await ticket.future
                while moved := await self._moved_by_reload(backend, model_id, error):
                    # The old config's seat: cancelled, never served; the request queues again.
                    server.operator.events.inflight_end(str(ticket.request.id))
                    backend.release(ticket)
                    backend = moved
                    url = backend.config.models[model_id].proxy.rstrip("/") + url_path
                    ticket = backend.submit(model_id, request_id=request_id)
                    seen.ticket = ticket
                    server.operator.request_started(ticket)
                    error = await ticket.future
            if error is not None:
                refusal = request_error_response(request, error)
                status = refusal.status
                return refusal
            headers = request_headers(request.headers, backend.config.security.forward_credentials)
            if body_length is not None:  # a streamed upload keeps an exact Content-Length
                headers["Content-Length"] = str(body_length)
            response, error_text = await relay(
                request,
                server.session,
                ticket,
                url,
                body,
                headers,
                prepared,
                tap=tap.chunk,
                settle=lambda: backend.settle_if_dead(model_id),
                lean=server.lean,
                timeouts=backend.config.models[model_id].timeouts,
            )
            status = response.status if error_text is None else failed_status(error_text)
            if status == 504 and error_text is not None:
                server.metrics.timed_out(model_id, error_text.rpartition("(")[2].rstrip(")"))
            return response
        finally:
            if recorder is not None:
                if ticket.granted:
                    prompt_tokens, output_tokens = tap.usage()
                    recorder.done(
                        ticket.request.id,
                        status,
                        prompt_tokens=prompt_tokens,
                        output_tokens=output_tokens,
                        error=error_text,
                    )
                elif status == 499:
                    recorder.cancel(ticket.request.id)
                else:
                    recorder.done(ticket.request.id, status)
            backend.release(ticket, error_text)
            seen.status = status
            server.request_closed()

    async def _to_peer(
        self,
        request: web.Request,
        config: Config,
        route: PeerRoute,
        found: Extracted,
        received: ReceivedBody,
        strip_prefix: str,
    ) -> web.StreamResponse:
        """A name only a peer answers to: its filters and model id, then straight out (§4.9).

        ``config``: the dispatching backend's, so a reload never moves a request to another peer.
        """
        peer = config.peers[route.peer]
        body: bytes | AsyncIterator[bytes] = received.head
        rewritten = peer_body(peer, route, found.model or "", found.json_body)
        if rewritten is not None:
            body = rewritten
        elif route.model != found.model and request.content_type == "multipart/form-data":
            body = replace_multipart_model(
                request.headers["Content-Type"], received.head, route.model
            )
        body, body_length, path = _outgoing(request, received, body, strip_prefix)
        return await peer_forward(request, self.server, peer, route, path, body, body_length)

    async def _moved_by_reload(
        self, backend: Backend, model_id: str, error: RequestError | None
    ) -> Backend | None:
        """The new backend, when a reload (not a shutdown) failed this queued request and its
        model still exists there: it queues again instead of failing (issue 19)."""
        if error is None or error.kind is not ErrorKind.SHUTTING_DOWN or self.server.draining:
            return None
        current = await self.server.current()
        if current is backend or model_id not in current.config.models:
            return None
        return current

    # ================================================================== /upstream passthrough

    async def upstream(self, request: web.Request) -> web.StreamResponse:
        backend = await self.server.current()
        config = backend.config
        raw = request.raw_path[len("/upstream/") :]
        raw_path, _, query = raw.partition("?")
        segments = raw_path.split("/")
        for i in range(len(segments), 0, -1):
            name = unquote("/".join(segments[:i]))
            model_id = config.resolve(name)
            route = config.peer_route(name) if model_id is None else None
            if model_id is None and route is None:
                continue
            if i == len(segments):
                target = "/upstream/" + "/".join(segments) + "/" + (f"?{query}" if query else "")
                if request.method in ("GET", "HEAD"):
                    raise web.HTTPMovedPermanently(target)
                raise web.HTTPPermanentRedirect(target)
            try:
                rest = upstream_rest(segments[i:]) + (f"?{query}" if query else "")
            except ClimbsOutError as exc:
                return error_response(request, 400, str(exc))
            body: Any = None
            if request.can_read_body:
                length = request.content_length
                if length is not None and length <= 1 << 20:
                    try:
                        body = b"".join([c async for c in paced(request.content, config.limits)])
                    except BodyTooSlowError as exc:
                        return error_response(request, 408, str(exc))
                else:
                    body = paced(request.content, config.limits)
            if route is not None:  # a peer model: the rest of the path goes to the peer as is
                peer = config.peers[route.peer]
                return await peer_forward(request, self.server, peer, route, rest, body)
            assert model_id is not None
            url = config.models[model_id].proxy.rstrip("/") + rest
            return await self._serve(request, backend, model_id, url, body, False, time.monotonic())
        if not raw_path.strip("/"):
            return await self.upstream_index(request)
        return error_response(
            request, 404, f"model not found: no model or alias {unquote(segments[0])!r}"
        )

    async def upstream_index(self, request: web.Request) -> web.Response:
        """``GET /upstream``: each model's passthrough path (llama-swap redirects to its web UI's
        model list; without a UI, the list itself)."""
        backend = await self.server.current()
        config = backend.config
        aliases_of: dict[str, list[str]] = {}
        for alias, real in sorted(config.aliases.items()):
            aliases_of.setdefault(real, []).append(alias)
        models = [
            {
                "id": mid,
                "upstream": f"/upstream/{mid}/",
                "proxy": config.models[mid].proxy,
                "aliases": aliases_of.get(mid, []),
                "state": _state_name(backend.state(mid)),
            }
            for mid in sorted(config.models)
            if not config.models[mid].unlisted
        ]
        return web.json_response({"models": models})

    # ================================================================== listing and state

    async def models(self, request: web.Request) -> web.Response:
        backend = await self.server.current()
        config = backend.config
        created = int(time.time())
        data: list[dict[str, Any]] = []
        aliases_of: dict[str, list[str]] = {}
        for alias, real in sorted(config.aliases.items()):
            aliases_of.setdefault(real, []).append(alias)
        for model_id in sorted(config.models):
            model = config.models[model_id]
            if model.unlisted:
                continue
            state = backend.state(model_id)
            loaded = state is not None and state not in (
                ProcessState.STOPPED,
                ProcessState.SHUTDOWN,
            )
            record: dict[str, Any] = {
                "id": model_id,
                "object": "model",
                "created": created,
                "owned_by": "llamaswap",
            }
            if model.name:
                record["name"] = model.name
            if model.description:
                record["description"] = model.description
            meta = {
                **dict(model.metadata),
                "type": "model",
                "aliases": aliases_of.get(model_id, []),
            }
            record["meta"] = {"llamaswap": meta}
            record["status"] = {"value": "loaded" if loaded else "unloaded"}
            data.append(record)
            if config.include_aliases_in_list:
                for alias in aliases_of.get(model_id, []):
                    alias_record = {**record, "id": alias}
                    alias_record["meta"] = {
                        "llamaswap": {**dict(model.metadata), "type": "alias", "modelID": model_id}
                    }
                    data.append(alias_record)
        data.extend(peer_records(config, created))
        data.extend(selector_records(backend, created))
        names = {*config.models, *config.aliases, *config.peer_routes, *config.selectors}
        data.extend(pin_records(backend, names, created))
        data.sort(key=lambda r: r["id"])
        return web.json_response({"object": "list", "data": data})

    async def running(self, request: web.Request) -> web.Response:
        backend = await self.server.current()
        return web.json_response({"running": backend.running()})

    async def scheduler(self, request: web.Request) -> web.Response:
        """What the scheduler would say about itself (queue, loads, and for batch-aging its
        urgent models, claims, load estimates and plan limit): for operators tuning a policy."""
        name, state = (await self.server.current()).scheduler_state()
        return web.json_response({"scheduler": name, "state": dict(state)})

    async def health(self, request: web.Request) -> web.Response:
        return web.Response(text="OK")

    async def unload_all_get(self, request: web.Request) -> web.Response:
        await (await self.server.current()).unload(None)
        return web.Response(text="OK")

    async def unload_all(self, request: web.Request) -> web.Response:
        await (await self.server.current()).unload(None)
        return web.json_response({"msg": "ok"})

    async def unload_one(self, request: web.Request) -> web.Response:
        backend = await self.server.current()
        name = request.match_info["model"]
        model_id = backend.config.resolve(name)
        if model_id is None:
            return error_response(request, 404, f"model not found: {name!r}")
        await backend.unload((model_id,))
        # The same answer as POST /api/models/unload (llama-swap answers the text OK here).
        return web.json_response({"msg": "ok", "model": model_id})

    async def metrics(self, request: web.Request) -> web.Response:
        response = web.Response(body=self.server.metrics.render())
        response.content_type = "text/plain"
        response.charset = "utf-8"
        response.headers["Content-Type"] = "text/plain; version=0.0.4; charset=utf-8"
        return response

    # ================================================================== logs

    async def logs(self, request: web.Request) -> web.Response:
        return web.Response(body=self.server.logs.combined.history(), content_type="text/plain")

    def _monitor(self, name: str) -> LogMonitor | None:
        logs = self.server.logs
        if name in ("", "proxy"):
            return logs.proxy if name else logs.combined
        if name == "upstream":
            return logs.upstream
        model_id = self.server.config.resolve(name)
        if model_id is None:
            return None
        return logs.model(model_id)

    async def logs_stream(self, request: web.Request) -> web.StreamResponse:
        monitor = self._monitor(request.match_info.get("id", ""))
        if monitor is None:
            return error_response(
                request, 400, "invalid logger. Use 'proxy', 'upstream' or a model's ID"
            )
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/plain; charset=utf-8",
                "X-Accel-Buffering": "no",
                "X-Content-Type-Options": "nosniff",
            }
        )
        await response.prepare(request)
        queue = monitor.subscribe()
        try:
            if "no-history" not in request.query:
                await response.write(monitor.history())
            while True:
                chunk = await queue.get()
                if chunk is None:
                    break
                await response.write(chunk)
        finally:
            monitor.unsubscribe(queue)
        await response.write_eof()
        return response


GC_THRESHOLDS = (7000, 20, 100)
"""CPython's defaults are (700, 10, 10); see :func:`quiet_gc`."""


async def quiet_gc(app: web.Application) -> None:
    """Keep the cyclic GC from pausing open streams (an ``on_startup`` hook).

    Measured at 600 open SSE streams: each keeps a few hundred objects alive, and with the default
    thresholds CPython rescans all ~150k of them every 2-3 s (55-75 ms pauses that collect nothing),
    which stretched the streams open at the time by tens of ms on average. Everything allocated
    by startup (modules, config, the app) is frozen so no collection rescans it, and the young
    generation is collected 10x less often, so a full collection comes every few million
    allocations instead of every ~70k. Cycles are still collected; only the timing changes.
    Done once per process (a test process starts many daemons).
    """
    if gc.get_threshold() != GC_THRESHOLDS:
        gc.freeze()
        gc.set_threshold(*GC_THRESHOLDS)


def _outgoing(
    request: web.Request,
    received: ReceivedBody,
    body: bytes | AsyncIterator[bytes],
    strip_prefix: str,
) -> tuple[bytes | AsyncIterator[bytes], int | None, str]:
    """What goes upstream, for a local model or a peer alike: the (possibly rewritten) head plus
    the rest of a body still arriving (with its exact length), and the path without the route's
    prefix."""
    body_length: int | None = None
    if not received.whole:
        head = body if isinstance(body, bytes) else None
        body_length = received.length(head)
        body = received.payload(head)
    path = request.raw_path
    if strip_prefix and path.startswith(strip_prefix):
        path = path[len(strip_prefix) :]
    return body, body_length, path


def _state_name(state: ProcessState | None) -> str:
    return "stopped" if state is None else str(state.value)


def build_app(server: Server, client_max_size: int) -> web.Application:
    api = Api(server, client_max_size)
    guard = browser_guard(server, JSON_ROUTES + VERSIONLESS_ROUTES)
    app = web.Application(
        client_max_size=client_max_size,
        middlewares=[server.operator.middleware, guard, api.middleware],
    )
    app.on_startup.append(quiet_gc)
    app.on_response_prepare.append(add_cors_headers)
    add = app.router.add_route
    for path in JSON_ROUTES + MULTIPART_ROUTES:
        add("POST", path, api.model_handler())
    for path in VERSIONLESS_ROUTES:
        add("POST", path, api.model_handler(strip_prefix="/v"))
    add("POST", "/audioapi/v1/tasks/run", api.model_handler(strip_prefix="/audioapi"))
    for path in QUERY_ROUTES:
        add("GET", path, api.model_handler(query_first=True))
    add("POST", "/v1/audio/voices", api.model_handler())
    add("GET", "/v1/models", api.models)
    add("GET", "/models", api.models)
    add("GET", "/health", api.health)
    add("GET", "/wol-health", api.health)
    add("GET", "/running", api.running)
    add("GET", "/api/scheduler", api.scheduler)
    add("GET", "/unload", api.unload_all_get)
    add("POST", "/api/models/unload", api.unload_all)
    add("POST", "/api/models/unload/{model:.+}", api.unload_one)
    add("GET", "/metrics", api.metrics)
    add("GET", "/logs", api.logs)
    add("GET", "/logs/stream", api.logs_stream)
    add("GET", "/logs/stream/{id:.+}", api.logs_stream)
    add("GET", "/upstream", api.upstream_index)
    add("*", "/upstream/{tail:.*}", api.upstream)
    for method, path, handler in profile_routes(server):
        add(method, path, handler)
    return app
