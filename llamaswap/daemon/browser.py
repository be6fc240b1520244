"""No web page may drive the daemon: CORS by allow-list, Host checks, JSON-only bodies from browsers.

llama-swap answers every request carrying an ``Origin`` with ``Access-Control-Allow-Origin: *``,
reads a ``text/plain`` body that starts with ``{`` as JSON (a "simple" request, so no preflight)
and never checks ``Host``: any page a user visits could then chat with their models, read
``/logs`` or unload everything, and DNS rebinding reaches a daemon on 127.0.0.1 even when the
page's own origin is refused. That behaviour stays available as ``security.corsOrigins: ["*"]``
(for a UI served from elsewhere on a trusted network), but it is not the default because the
daemon cannot tell the operator's page from any other.

Decisions, in order (the first that applies wins); every refusal is one clear error envelope:

=====================================================  ======  ==================================
request                                                answer  why
=====================================================  ======  ==================================
listening on loopback, ``Host`` a dotted name that is   403     DNS rebinding (``allowedHosts``
not loopback (see :func:`loopback_safe`)                        adds names)
``corsOrigins: ["*"]``                                  pass    llama-swap's behaviour, opted into
preflight (``OPTIONS`` + ``Access-Control-Request-      204     with the CORS headers
Method``) from an allowed origin
preflight from any other origin                         403     no CORS headers: the browser stops
``Origin`` neither allowed nor this daemon's own        403     a forged cross-site request
``Sec-Fetch-Site: cross-site/same-site``, no allowed    403     the same without ``Origin`` (e.g.
origin, and not a top-level GET navigation                      ``<img src=/unload>``)
POST to a JSON route from a browser (``Origin`` or      415     a form or ``text/plain`` body
``Sec-Fetch-Site``) without a JSON content type                 needs no preflight
anything else                                           pass    allowed origins get
                                                                ``Access-Control-Allow-Origin``
=====================================================  ======  ==================================
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection
from typing import TYPE_CHECKING

from aiohttp import web
from aiohttp.typedefs import Middleware

from llamaswap.config.limits import Security
from llamaswap.daemon.errors import error_response
from llamaswap.daemon.logsafe import printable

if TYPE_CHECKING:
    from llamaswap.daemon.contract import Server

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

LOOPBACK_LISTEN = frozenset({"127.0.0.1", "localhost", "::1"})
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
ALLOW_HEADERS = "Content-Type, Authorization, Accept, X-Requested-With"
ALLOW_METHODS = "GET, POST, PUT, PATCH, DELETE, OPTIONS"
CORS_KEY = web.RequestKey("llamaswap_cors", str)
STATE_CHANGING_GETS = frozenset({"/unload"})
ECHO_ORIGIN_PATHS = frozenset({"/v1/models", "/models"})
"""llama-swap echoes the ``Origin`` here rather than ``*`` (kept under ``corsOrigins: ["*"]``)."""


def host_name(host: str) -> str:
    """``Host`` without its port, lower-cased, IPv6 brackets removed."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:].partition("]")[0]
    return host.rpartition(":")[0] if host.count(":") == 1 else host


def loopback_safe(name: str, allowed: Collection[str]) -> bool:
    """A ``Host`` a DNS-rebinding page cannot send: loopback names and addresses, ``*.localhost``
    (browsers pin it to loopback), single-label names (resolved only by local search domains),
    and ``security.allowedHosts``. A rebinding page sends its own dotted domain name."""
    if name in LOOPBACK_HOSTS or name in allowed or name.endswith(".localhost"):
        return True
    if name.startswith("127.") and name.replace(".", "").isdigit():
        return True
    return "." not in name and ":" not in name


def sanitize_header_list(value: str) -> str:
    tokens = [t.strip() for t in value.split(",")]
    safe = [t for t in tokens if t and all(c.isalnum() or c in "-_" for c in t)]
    return ", ".join(safe) or ALLOW_HEADERS


def allowed_origin(origin: str, security: Security) -> str | None:
    """The ``Access-Control-Allow-Origin`` value for ``origin``, or None when it is not allowed."""
    if "*" in security.cors_origins:
        return "*"
    if origin.rstrip("/").lower() in security.cors_origins:
        return origin
    return None


def _same_origin(origin: str, host: str | None) -> bool:
    if not host:
        return False
    return origin.lower().rstrip("/") in (f"http://{host.lower()}", f"https://{host.lower()}")


def _refuse(request: web.Request, status: int, message: str) -> web.Response:
    return error_response(request, status, message)


def browser_guard(daemon: Server, json_paths: Collection[str]) -> Middleware:
    """The middleware (outermost: before auth, for every route, present and future)."""
    json_routes = frozenset(json_paths)

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        security = daemon.config.security
        host = request.headers.get("Host")
        if (
            daemon.listen_host in LOOPBACK_LISTEN
            and host is not None
            and not loopback_safe(host_name(host), security.allowed_hosts)
        ):
            return _refuse(
                request,
                403,
                f"Host {printable(host)!r} refused: this daemon listens on loopback and answers "
                "only loopback names (DNS-rebinding guard); add the name to security.allowedHosts",
            )
        origin = request.headers.get("Origin")
        allow = allowed_origin(origin, security) if origin else None
        if allow is not None:
            request[CORS_KEY] = allow
        if request.method == "OPTIONS":
            if allow is None and "*" not in security.cors_origins:
                return _refuse(request, 403, "CORS preflight refused: origin not allowed")
            requested = request.headers.get("Access-Control-Request-Headers")
            return web.Response(
                status=204,
                headers={
                    "Access-Control-Allow-Origin": allow or "*",
                    "Access-Control-Allow-Methods": ALLOW_METHODS,
                    "Access-Control-Allow-Headers": sanitize_header_list(requested)
                    if requested
                    else ALLOW_HEADERS,
                    "Access-Control-Max-Age": "86400",
                    "Vary": "Origin",
                },
            )
        if "*" not in security.cors_origins:
            refusal = _browser_refusal(request, origin, allow, host, json_routes)
            if refusal is not None:
                return _refuse(request, 403 if "content type" not in refusal else 415, refusal)
        return await handler(request)

    return guard


def _browser_refusal(
    request: web.Request,
    origin: str | None,
    allow: str | None,
    host: str | None,
    json_routes: frozenset[str],
) -> str | None:
    site = request.headers.get("Sec-Fetch-Site", "")
    own = origin is not None and _same_origin(origin, host)
    if origin is not None and allow is None and not own:
        return (
            f"cross-origin request from {printable(origin)!r} refused; "
            "allow the origin with security.corsOrigins"
        )
    if site in ("cross-site", "same-site") and allow is None and not own:
        navigation = (
            request.method == "GET"
            and request.headers.get("Sec-Fetch-Mode") == "navigate"
            and request.path not in STATE_CHANGING_GETS
        )
        if not navigation:
            return "cross-site request refused; allow the origin with security.corsOrigins"
    if (
        request.method == "POST"
        and request.path in json_routes
        and (origin is not None or site)
        and "json" not in request.headers.get("Content-Type", "").lower()
    ):
        return "a browser request to a JSON route must have the content type application/json"
    return None


async def add_cors_headers(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare``: allowed origins get their header on every response, streams too.

    An upstream's own CORS headers are dropped first: llama-server echoes any ``Origin`` it is
    sent, which would otherwise undo the allow-list for every relayed answer.
    """
    if request.method == "OPTIONS":
        return  # answered by the guard itself, CORS headers included
    headers = response.headers
    if "Access-Control-Allow-Origin" in headers:  # (cheap test first: this runs per response)
        for name in [h for h in headers if h.lower().startswith("access-control-allow-")]:
            del headers[name]
    allow = request.get(CORS_KEY)
    if allow == "*" and request.path in ECHO_ORIGIN_PATHS:
        allow = request.headers.get("Origin", "*")
    if allow is not None:
        response.headers["Access-Control-Allow-Origin"] = allow
        response.headers.add("Vary", "Origin")
