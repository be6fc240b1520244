"""Keys for the web UI: a login form that keeps the key for the browser session.

A browser cannot put a Bearer header on a page load or on an ``EventSource``, so with ``apiKeys``
set the UI logs in once: ``POST /ui/login`` checks the key and sets an HttpOnly, SameSite=Strict
session cookie holding a random token (never the key). The operator middleware turns a valid token
back into the key's ``Authorization`` header before the API's own auth check, so every route keeps
exactly one auth rule. Basic auth works too (the 401's ``WWW-Authenticate``). Tokens live in
memory, are bounded in number, and stop working as soon as their key leaves the config.
"""

from __future__ import annotations

import html
import secrets
from collections import OrderedDict

from aiohttp import web

from llamaswap.daemon.app import _api_key, key_ok

COOKIE = "llamaswap_session"
MAX_SESSIONS = 1024
LOGIN_PATHS = ("/", "/ui", "/ui/")


def key_name(presented: str | None, keys: tuple[str, ...]) -> str:
    """The configured key's name (``key-<n>``, 1-based): what the activity store keeps."""
    if presented is None:
        return ""
    for index, key in enumerate(keys, 1):
        if key_ok(presented, (key,)):
            return f"key-{index}"
    return ""


class Sessions:
    def __init__(self) -> None:
        self._tokens: OrderedDict[str, str] = OrderedDict()

    def open(self, key: str) -> str:
        token = secrets.token_urlsafe(32)
        self._tokens[token] = key
        while len(self._tokens) > MAX_SESSIONS:
            self._tokens.popitem(last=False)
        return token

    def close(self, token: str | None) -> None:
        if token is not None:
            self._tokens.pop(token, None)

    def key_for(self, request: web.BaseRequest) -> str | None:
        token = request.cookies.get(COOKIE)
        return None if token is None else self._tokens.get(token)

    def presented(self, request: web.BaseRequest) -> str | None:
        """The key a request carries: a header (as the API reads it) or a UI session."""
        return _api_key(request) or self.key_for(request)

    async def login(self, request: web.Request, keys: tuple[str, ...]) -> web.StreamResponse:
        form = await request.post()
        key = str(form.get("key", ""))
        if not key_ok(key, keys):
            return login_page("That key is not one of the configured apiKeys.")
        response = web.Response(status=303, headers={"Location": "/ui/"})
        response.set_cookie(COOKIE, self.open(key), httponly=True, samesite="Strict", path="/")
        return response

    def logout(self, request: web.Request) -> web.StreamResponse:
        self.close(request.cookies.get(COOKIE))
        response = web.Response(status=303, headers={"Location": "/ui/"})
        response.del_cookie(COOKIE, path="/")
        return response


def login_page(error: str = "") -> web.Response:
    message = f'<p class="error">{html.escape(error)}</p>' if error else ""
    body = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>llamaswap: sign in</title>
<style>body{{font:15px system-ui,sans-serif;background:#f4f5f7;display:grid;place-items:center;
height:100vh;margin:0}}form{{background:#fff;padding:2em;border-radius:8px;box-shadow:0 1px 4px #0002}}
input{{display:block;margin:.5em 0 1em;padding:.4em;width:20em}}.error{{color:#b00020}}</style></head>
<body class="login"><form method="post" action="/ui/login" id="login">
<h1>llamaswap</h1><p>This proxy has <code>apiKeys</code> set: enter one to open the UI.</p>
{message}<label>API key <input type="password" name="key" autofocus autocomplete="current-password"></label>
<button type="submit">Sign in</button></form></body></html>"""
    return web.Response(
        status=401,
        text=body,
        content_type="text/html",
        # no WWW-Authenticate: a browser would show its own Basic dialog instead of this form
        headers={"Cache-Control": "no-store"},
    )
