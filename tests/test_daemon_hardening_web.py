"""Issue 19: no web page may drive the daemon (CORS allow-list, JSON-only bodies, Host checks).

Each forged request is what a browser sends for a hostile page: an ``Origin`` (and
``Sec-Fetch-*``) it cannot leave out, a "simple" ``text/plain`` body that needs no preflight, and
for DNS rebinding a ``Host`` naming the attacker's domain. The daemon is real, so is the upstream.
"""

from __future__ import annotations

import aiohttp
import pytest

from llamaswap.config import Config
from llamaswap.daemon.testing import fake_cmd, make_config, running_daemon

pytestmark = pytest.mark.daemon

CHAT = "/v1/chat/completions"
EVIL = "https://evil.example"
BODY = '{"model": "m", "max_tokens": 1}'


def _config(**security: object) -> Config:
    return make_config({"m": {"cmd": fake_cmd()}}, security=security)


async def test_forged_cross_site_requests_are_refused_and_get_no_cors_headers() -> None:
    async with running_daemon(_config()) as daemon, aiohttp.ClientSession() as http:
        base = f"http://127.0.0.1:{daemon.port}"
        forged = {"Origin": EVIL, "Sec-Fetch-Site": "cross-site", "Content-Type": "text/plain"}
        for method, path in (("POST", CHAT), ("GET", "/logs"), ("POST", "/api/models/unload")):
            async with http.request(method, base + path, data=BODY, headers=forged) as r:
                assert r.status == 403, (method, path, r.status)
                assert "Access-Control-Allow-Origin" not in r.headers
                assert "security.corsOrigins" in (await r.json())["error"]["message"]
        # No Origin at all (an <img src>), but the browser still says it is cross-site.
        async with http.get(base + "/unload", headers={"Sec-Fetch-Site": "cross-site"}) as r:
            assert r.status == 403
        async with http.options(
            base + CHAT, headers={"Origin": EVIL, "Access-Control-Request-Method": "POST"}
        ) as r:
            assert r.status == 403 and "Access-Control-Allow-Origin" not in r.headers
        assert daemon.runtime.state("m").value == "stopped"  # nothing was loaded for the page


async def test_browser_json_routes_need_application_json_even_from_allowed_origins() -> None:
    ui = "http://ui.local:3000"
    async with (
        running_daemon(_config(corsOrigins=[ui])) as daemon,
        aiohttp.ClientSession() as http,
    ):
        base = f"http://127.0.0.1:{daemon.port}"
        headers = {"Origin": ui, "Content-Type": "text/plain"}
        async with http.post(base + CHAT, data=BODY, headers=headers) as r:
            assert r.status == 415
            assert "application/json" in (await r.json())["error"]["message"]
        headers["Content-Type"] = "application/json"
        async with http.post(base + CHAT, data=BODY, headers=headers) as r:
            assert r.status == 200
            assert r.headers["Access-Control-Allow-Origin"] == ui
            assert "Origin" in r.headers.getall("Vary")
        async with http.options(
            base + CHAT, headers={"Origin": ui, "Access-Control-Request-Method": "POST"}
        ) as r:
            assert r.status == 204 and r.headers["Access-Control-Allow-Origin"] == ui
        # Non-browser clients (no Origin, no Sec-Fetch-*) keep llama-swap's lenient parsing.
        async with http.post(base + CHAT, data=BODY, headers={"Content-Type": "text/plain"}) as r:
            assert r.status == 200
        # The page the daemon itself serves (same origin) needs no allow-list entry.
        own = {"Origin": base, "Content-Type": "application/json"}
        async with http.post(base + CHAT, data=BODY, headers=own) as r:
            assert r.status == 200 and "Access-Control-Allow-Origin" not in r.headers


async def test_llama_swap_behaviour_is_available_behind_the_wildcard() -> None:
    async with (
        running_daemon(_config(corsOrigins=["*"])) as daemon,
        aiohttp.ClientSession() as http,
    ):
        base = f"http://127.0.0.1:{daemon.port}"
        headers = {"Origin": EVIL, "Content-Type": "text/plain"}
        async with http.post(base + CHAT, data=BODY, headers=headers) as r:
            assert r.status == 200 and r.headers["Access-Control-Allow-Origin"] == "*"


async def test_dns_rebinding_host_is_refused_on_loopback_unless_allowed() -> None:
    async with (
        running_daemon(_config(allowedHosts=["box.lan"])) as daemon,
        aiohttp.ClientSession() as http,
    ):
        base = f"http://127.0.0.1:{daemon.port}"
        async with http.get(
            base + "/running", headers={"Host": f"evil.example:{daemon.port}"}
        ) as r:
            assert r.status == 403
            assert "security.allowedHosts" in (await r.json())["error"]["message"]
        for host in (f"localhost:{daemon.port}", "127.0.0.1", f"[::1]:{daemon.port}", "box.lan"):
            async with http.get(base + "/running", headers={"Host": host}) as r:
                assert r.status == 200, host
