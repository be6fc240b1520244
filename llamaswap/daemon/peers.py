"""Forwarding a request to a peer (reference §4.9): a reverse proxy with no scheduling.

Why outside the core: a peer has no process to swap and no queue of ours (llama-swap's ``Peer``
router is a plain reverse proxy too), so the request goes straight out with the peer's filters,
its own model id and its ``apiKey``. What the client gets when the peer fails, decided here:

================================================  ======  =====================================
peer failure                                      status  body names
================================================  ======  =====================================
refuses / resets / answers something not HTTP     502     the peer id, its URL and the error
no response headers within ``responseHeader`` s   504     the peer id and the timeout
dies while streaming the body                     --      SSE: an error event; raw: cut short
================================================  ======  =====================================

Shutdown as llama-swap's: the daemon's drain rejects new requests and waits for these in-flight
ones (they are counted by ``Server.request_opened``) up to its drain timeout.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from aiohttp import web

from llamaswap.config.model import Config
from llamaswap.config.peers import PeerConfig, PeerRoute
from llamaswap.daemon.contract import Server
from llamaswap.daemon.errors import error_response
from llamaswap.daemon.facts import facts_of
from llamaswap.daemon.forward import request_headers, response_headers, sse_error

log = logging.getLogger("llamaswap.peers")

_DROPPED_REQUEST_HEADERS = ("Host", "Content-Length")


def peer_records(config: Config, created: int) -> list[dict[str, Any]]:
    """``/v1/models`` entries: every peer model by its FQN, as llama-swap lists them (§2.10)."""
    return [
        {
            "id": f"{peer_id}/{model}",
            "object": "model",
            "created": created,
            "owned_by": "llamaswap",
            "name": f"{peer_id}: {model}",
            "meta": {"llamaswap": {"type": "peer", "peerID": peer_id}},
            "status": {"value": "unloaded"},
        }
        for peer_id, peer in sorted(config.peers.items())
        for model in peer.models
    ]


def peer_body(peer: PeerConfig, route: PeerRoute, requested: str, json_body: Any) -> bytes | None:
    """The JSON body the peer gets, or None when it goes unchanged.

    llama-swap's order: stripParams, setParams, setParamsByID[requested name]; then ``model`` becomes
    the peer's own id when the client used another name (the FQN).
    """
    if not isinstance(json_body, dict):
        return None
    changed = False
    for key in peer.strip_params:
        if key in json_body:
            del json_body[key]
            changed = True
    for key, value in sorted(peer.params_for(requested).items()):
        json_body[key] = value
        changed = True
    if json_body.get("model") != route.model:
        json_body["model"] = route.model
        changed = True
    return json.dumps(json_body).encode() if changed else None


async def forward(
    request: web.Request,
    server: Server,
    peer: PeerConfig,
    route: PeerRoute,
    path: str,
    body: bytes | AsyncIterator[bytes] | None,
    body_length: int | None = None,
) -> web.StreamResponse:
    """Relay one request to ``peer`` and its answer back, unbuffered; counted for the drain."""
    server.request_opened()
    seen = facts_of(request)
    seen.model = route.fqn
    status = 499
    try:
        response, status = await _relay(request, server.session, peer, path, body, body_length)
        return response
    finally:
        seen.status = status  # the operator view's middleware counts, logs and stores it
        server.request_closed()


async def _relay(
    request: web.Request,
    session: aiohttp.ClientSession,
    peer: PeerConfig,
    path: str,
    body: bytes | AsyncIterator[bytes] | None,
    body_length: int | None,
) -> tuple[web.StreamResponse, int]:
    headers = request_headers(request.headers)
    for name in _DROPPED_REQUEST_HEADERS:
        headers.popall(name, None)
    if body_length is not None:
        headers["Content-Length"] = str(body_length)
    if peer.api_key:
        headers["Authorization"] = f"Bearer {peer.api_key}"
        headers["x-api-key"] = peer.api_key
    url = peer.proxy + path
    timeouts = peer.timeouts
    try:
        upstream = await asyncio.wait_for(
            session.request(
                request.method,
                url,
                data=body,
                headers=headers,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=timeouts.connect or None),
            ),
            timeouts.response_header or None,
        )
    except TimeoutError:
        reason = f"peer {peer.id}: no response from {peer.proxy} within {timeouts.response_header}s"
        log.warning("%s", reason)
        return error_response(request, 504, reason), 504
    except (aiohttp.ClientError, ConnectionError, ValueError) as exc:
        reason = f"peer {peer.id}: proxy error ({peer.proxy}): {exc or type(exc).__name__}"
        log.warning("%s", reason)
        return error_response(request, 502, reason), 502
    response: web.StreamResponse | None = None
    try:
        out_headers = response_headers(upstream.headers)
        is_sse = "text/event-stream" in upstream.headers.get("Content-Type", "").lower()
        if is_sse:
            out_headers["X-Accel-Buffering"] = "no"
        response = web.StreamResponse(status=upstream.status, headers=out_headers)
        await response.prepare(request)
        while chunk := await upstream.content.readany():
            await response.write(chunk)
        await response.write_eof()
        upstream.release()
        return response, upstream.status
    except (TimeoutError, aiohttp.ClientError, ConnectionError) as exc:
        upstream.close()
        reason = f"peer {peer.id}: connection lost mid-response: {exc or type(exc).__name__}"
        log.warning("%s", reason)
        if response is None or not response.prepared:
            return error_response(request, 502, reason), 502
        if is_sse:
            try:
                await response.write(sse_error(502, reason))
                await response.write_eof()
            except (ConnectionError, RuntimeError):
                pass
        elif request.transport is not None:
            request.transport.close()  # a raw body cut short: the client must see it incomplete
        return response, 502
