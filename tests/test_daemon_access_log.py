"""The access log and status counting on a real daemon: one line per request, refusals included,
every status in /metrics, never a key or a body."""

from __future__ import annotations

import io
import json
import re

import aiohttp
import pytest

from llamaswap.daemon.access_log import AccessLog, AccessRecord
from llamaswap.daemon.testing import fake_cmd, make_config, running_daemon

pytestmark = pytest.mark.daemon

SECRET = "sk-access-log-secret-771"
BODY_MARKER = "body-marker-that-must-not-be-logged"


def _chat(model: str) -> dict[str, object]:
    return {"model": model, "messages": [{"role": "user", "content": BODY_MARKER}], "max_tokens": 2}


async def _exchange(fmt: str) -> tuple[str, str, bytes]:
    out = io.StringIO()
    config = make_config({"alpha": {"cmd": fake_cmd()}}, apiKeys=[SECRET])
    auth = {"Authorization": f"Bearer {SECRET}", "X-Request-Id": "rid-42"}
    async with running_daemon(config, access_log=AccessLog(fmt, out), max_body=4096) as daemon:
        base = f"http://127.0.0.1:{daemon.port}"
        async with aiohttp.ClientSession() as http:
            calls = [
                (base + "/v1/chat/completions", _chat("alpha"), auth, 200),
                (base + "/v1/chat/completions", _chat("nope"), auth, 404),
                (base + "/v1/chat/completions", {"messages": []}, auth, 400),
                (base + f"/v1/chat/completions?api_key={SECRET}", _chat("alpha"), {}, 401),
                (base + "/v1/chat/completions", {"model": "alpha", "x": "y" * 9000}, auth, 413),
            ]
            for url, body, headers, want in calls:
                async with http.post(url, json=body, headers=headers) as r:
                    assert r.status == want, (url, await r.text())
                    await r.read()
            async with http.get(base + "/metrics", headers=auth) as r:
                metrics = await r.text()
        proxy_log = daemon.logs.proxy.history()
    return out.getvalue(), metrics, proxy_log


async def test_text_access_log_has_a_line_per_request_and_every_status_is_counted() -> None:
    text, metrics, proxy_log = await _exchange("text")
    lines = [line for line in text.splitlines() if "/v1/chat/completions" in line]
    assert [re.search(r"status=(\d+)", line).group(1) for line in lines] == [  # type: ignore[union-attr]
        "200",
        "404",
        "400",
        "401",
        "413",
    ]
    ok = lines[0]
    assert "POST /v1/chat/completions model=alpha" in ok and "id=rid-42" in ok
    assert re.search(r"bytes=[1-9]\d* wait=\d+\.\dms total=\d+\.\dms", ok)
    assert "model=-" in lines[1] and "wait=-" in lines[1]
    for status in ("200", "404", "400", "413"):
        assert f'status="{status}"' in metrics
    assert 'llamaswap_requests_total{model="alpha",status="200"} 1.0' in metrics
    assert 'llamaswap_requests_total{model="",status="404"} 1.0' in metrics
    assert 'llamaswap_http_requests_total{status="401"} 1.0' in metrics
    for log in (text, proxy_log.decode()):
        assert SECRET not in log and BODY_MARKER not in log and "api_key" not in log


async def test_json_access_log_lines_parse_and_carry_the_same_fields() -> None:
    text, _, _ = await _exchange("json")
    records = [json.loads(line) for line in text.splitlines()]
    chats = [r for r in records if r["path"] == "/v1/chat/completions"]
    assert [r["status"] for r in chats] == [200, 404, 400, 401, 413]
    first = chats[0]
    assert set(first) == {
        "time",
        "method",
        "path",
        "model",
        "status",
        "bytes",
        "wait_ms",
        "total_ms",
        "request_id",
    }
    assert first["model"] == "alpha" and first["request_id"] == "rid-42" and first["bytes"] > 0
    assert chats[1]["model"] is None and chats[1]["wait_ms"] is None
    assert SECRET not in text and BODY_MARKER not in text


def test_access_log_formats_and_a_bad_format_is_one_clear_error() -> None:
    record = AccessRecord(0.0, "GET", "/health", "", 200, 2, None, 0.0012, "")
    assert "GET /health model=- status=200 bytes=2 wait=- total=1.2ms id=-" in AccessLog().text(
        record
    )
    off = io.StringIO()
    AccessLog("off", off).write(record)
    assert off.getvalue() == ""
    with pytest.raises(ValueError, match="access log format: expected one of text, json, off"):
        AccessLog("yaml")
