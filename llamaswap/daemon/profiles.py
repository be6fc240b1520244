"""``GET /api/profiles`` and ``PUT /api/profiles/active`` (llama-swap's apigroup.go), and the pin.

Why the active profile lives on the backend: a reload builds a new one, so no profile is active
after it, as in llama-swap. The pin runs first on the request path (before selectors, aliases,
filters and routing).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from llamaswap.daemon.body import Body
from llamaswap.daemon.contract import Backend, Server
from llamaswap.daemon.errors import error_response
from llamaswap.daemon.extract import Extracted
from llamaswap.daemon.selecting import rewrite_model

log = logging.getLogger("llamaswap.profiles")


def apply_pin(
    request: web.Request, backend: Backend, found: Extracted, body: Body, content_type: str
) -> web.Response | None:
    """Rewrite the requested name by the active profile; a 404 when the profile disables it."""
    profile = backend.config.profiles.get(backend.active_profile)
    if profile is None or found.model is None or found.model not in profile.pins:
        return None
    target = profile.pins[found.model]
    if not target:
        return error_response(
            request, 404, f"model {found.model!r} is disabled by profile {profile.name!r}"
        )
    rewrite_model(found, body, content_type, target)
    return None


def pin_records(backend: Backend, listed: set[str], created: int) -> list[dict[str, Any]]:
    """``/v1/models`` entries for the active profile's pins that name nothing already listed."""
    profile = backend.config.profiles.get(backend.active_profile)
    if profile is None:
        return []
    return [
        {
            "id": pin,
            "object": "model",
            "created": created,
            "owned_by": "llamaswap",
            "meta": {"llamaswap": {"type": "profile"}},
            "status": {"value": "unloaded"},
        }
        for pin, target in sorted(profile.pins.items())
        if target and pin not in listed
    ]


def _active(backend: Backend) -> str | None:
    return backend.active_profile or None


async def list_profiles(server: Server, request: web.Request) -> web.Response:
    backend = await server.current()
    profiles = [
        {"id": name, "description": p.description, "pins": dict(p.pins)}
        for name, p in sorted(backend.config.profiles.items())
    ]
    return web.json_response({"active": _active(backend), "profiles": profiles})


async def set_active(server: Server, request: web.Request) -> web.Response:
    """``{"name": "<profile>"}`` activates, ``{"name": null}`` or ``""`` deactivates."""
    try:
        body = json.loads(await request.read())
    except ValueError:
        return error_response(request, 400, "invalid profile request")
    if not isinstance(body, dict):
        return error_response(request, 400, "invalid profile request")
    if "name" not in body:
        return error_response(request, 400, "profile name is required")
    name = body["name"]
    if name is None:
        name = ""
    if not isinstance(name, str):
        return error_response(request, 400, "profile name must be a string or null")
    backend = await server.current()
    if name and name not in backend.config.profiles:
        return error_response(request, 404, f"profile {name!r} not found")
    if backend.active_profile != name:
        backend.active_profile = name
        log.info("active profile changed to %r", name)
    return web.json_response({"active": _active(backend)})


def routes(
    server: Server,
) -> list[tuple[str, str, Callable[[web.Request], Awaitable[web.Response]]]]:
    """(method, path, handler) for the two profile endpoints, bound to ``server``."""

    async def get(request: web.Request) -> web.Response:
        return await list_profiles(server, request)

    async def put(request: web.Request) -> web.Response:
        return await set_active(server, request)

    return [("GET", "/api/profiles", get), ("PUT", "/api/profiles/active", put)]
