"""Error responses in llama-swap's envelope (reference §2.6) and the core's ErrorKind -> HTTP map.

Body by ``Accept``: ``text/plain`` -> ``llamaswap: <message>``; ``text/html`` -> a tiny page;
otherwise ``{"src":"llamaswap","error":{"message","type","param":null,"code"}}``.

Status decisions (where we differ from llama-swap, on purpose; reference §8 item 7):

=================  ======  ===============================================================
ErrorKind          status  why
=================  ======  ===============================================================
NOT_FOUND          404     unknown model (llama-swap: same)
OVER_LIMIT         429     ``Retry-After: 1``, code ``concurrency_limit`` (llama-swap: same)
LOAD_FAILED        502     the upstream could not be brought up (exit, health timeout): it is
                           a gateway failure, and clients and load balancers treat 502 as
                           "retry elsewhere/later". llama-swap answers 500 "unspecific error".
LOAD_ABORTED       503     the load was cancelled (unload, eviction, config reload): transient.
UNLOADED           503     the model was unloaded while the request waited: transient.
UPSTREAM_CRASHED   502     the upstream died while serving (llama-swap: 502 from Go's proxy).
SHUTTING_DOWN      503     the daemon is going away (llama-swap: 500).
=================  ======  ===============================================================
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping

from aiohttp import web

from llamaswap.core.errors import ErrorKind, RequestError

SRC = "llamaswap"

_KIND_STATUS: dict[ErrorKind, int] = {
    ErrorKind.NOT_FOUND: 404,
    ErrorKind.OVER_LIMIT: 429,
    ErrorKind.LOAD_FAILED: 502,
    ErrorKind.LOAD_ABORTED: 503,
    ErrorKind.UNLOADED: 503,
    ErrorKind.UPSTREAM_CRASHED: 502,
    ErrorKind.SHUTTING_DOWN: 503,
}

_STATUS_TYPE: dict[int, tuple[str, str]] = {
    400: ("invalid_request_error", "bad_request"),
    401: ("authentication_error", "unauthorized"),
    403: ("authentication_error", "forbidden"),
    404: ("invalid_request_error", "not_found"),
    405: ("invalid_request_error", "method_not_allowed"),
    408: ("invalid_request_error", "request_timeout"),
    409: ("invalid_request_error", "conflict"),
    413: ("invalid_request_error", "request_too_large"),
    415: ("invalid_request_error", "unsupported_media_type"),
    429: ("rate_limit_error", "rate_limit_exceeded"),
    502: ("server_error", "bad_gateway"),
    503: ("server_error", "service_unavailable"),
    504: ("server_error", "gateway_timeout"),
}


def status_of(kind: ErrorKind) -> int:
    return _KIND_STATUS[kind]


def envelope(status: int, message: str, code: str | None = None) -> dict[str, object]:
    kind, default_code = _STATUS_TYPE.get(
        status,
        ("invalid_request_error", "invalid_request")
        if 400 <= status < 500
        else ("server_error", "internal_error"),
    )
    return {
        "src": SRC,
        "error": {"message": message, "type": kind, "param": None, "code": code or default_code},
    }


def error_body(
    accept: str, status: int, message: str, code: str | None = None
) -> tuple[bytes, str]:
    """(body, content type) for an error, chosen by the request's Accept header."""
    if "text/plain" in accept:
        return f"{SRC}: {message}".encode(), "text/plain"
    if "text/html" in accept:
        text = html.escape(message)
        page = f"<!doctype html><title>{status}</title><h1>{status}</h1><p>{SRC}: {text}</p>"
        return page.encode(), "text/html"
    return json.dumps(envelope(status, message, code)).encode(), "application/json"


def error_response(
    request: web.BaseRequest,
    status: int,
    message: str,
    code: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    body, content_type = error_body(request.headers.get("Accept", ""), status, message, code)
    response = web.Response(status=status, body=body, headers=headers)
    response.content_type = content_type
    if content_type != "application/json":
        response.charset = "utf-8"
    return response


def request_error_response(request: web.BaseRequest, error: RequestError) -> web.Response:
    status = status_of(error.kind)
    if error.kind is ErrorKind.OVER_LIMIT:
        # llama-swap says only "Too many requests"; the core's message names the model and its
        # limit, which is what the client (or its operator) needs to act on.
        return error_response(
            request,
            429,
            f"{error.message} (its concurrencyLimit); retry later",
            "concurrency_limit",
            {"Retry-After": "1"},
        )
    return error_response(request, status, error.message)
