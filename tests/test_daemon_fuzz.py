"""Bad input against a live daemon: hypothesis-generated bodies, headers, paths and content types.

Never a 5xx caused by our own code, never a hang. The daemon runs in a background thread with its
own event loop (and a real fake upstream), so hypothesis drives it with plain blocking HTTP.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import threading
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from llamaswap.daemon.extract import (
    BadRequestError,
    apply_filters,
    extract,
    multipart_field,
    replace_multipart_model,
)
from llamaswap.daemon.server import Daemon
from llamaswap.daemon.testing import fake_cmd, make_config

pytestmark = pytest.mark.daemon

PATHS = [
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/embeddings",
    "/v1/audio/transcriptions",
    "/v1/models",
    "/running",
    "/upstream/m/health",
    "/upstream/m",
    "/logs",
    "/metrics",
    "/props",
    "/api/models/unload/zzz",
    "/v/chat/completions",
]
CONTENT_TYPES = [
    "application/json",
    "application/json; charset=utf-8",
    "multipart/form-data; boundary=xyz",
    "multipart/form-data",
    "application/x-www-form-urlencoded",
    "text/plain",
    "",
    "application/octet-stream",
]


class ThreadedDaemon:
    def __init__(self) -> None:
        self.port = 0
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._main())

    async def _main(self) -> None:
        config = make_config(
            {"m": {"cmd": fake_cmd(decode_tps=100000, parallel=8), "aliases": ["alias-m"]}},
            scheduler="fifo",
        )
        daemon = Daemon(config, max_body=64 * 1024, drain_timeout=2.0)
        self.port = await daemon.start("127.0.0.1", 0)
        self._stop = asyncio.Event()
        self._ready.set()
        await self._stop.wait()
        await daemon.stop()

    def __enter__(self) -> ThreadedDaemon:
        self.thread.start()
        assert self._ready.wait(20)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._stop is not None
        self.loop.call_soon_threadsafe(self._stop.set)
        self.thread.join(20)

    def request(
        self, method: str, path: str, body: bytes, headers: dict[str, str]
    ) -> tuple[int, bytes, str]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=20)
        try:
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            return response.status, response.read(), response.getheader("Content-Type") or ""
        finally:
            conn.close()


@pytest.fixture(scope="module")
def daemon() -> Iterator[ThreadedDaemon]:
    with ThreadedDaemon() as running:
        yield running


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
json_bodies = st.fixed_dictionaries(
    {},
    optional={
        "model": st.sampled_from(["m", "m", "m", "alias-m", "nope", "", "M"])
        | st.text(max_size=10)
        | json_values,
        "max_tokens": st.integers(min_value=-5, max_value=5) | json_values,
        "stream": st.booleans() | json_values,
        "messages": json_values,
        "prompt": json_values,
        "input": json_values,
    },
).map(lambda d: json.dumps(d).encode())
raw_bodies = st.one_of(json_bodies, json_bodies, st.binary(max_size=300), st.just(b"x" * 70000))
header_text = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=40)
paths = st.sampled_from(PATHS[:4] * 3 + PATHS) | st.builds(
    lambda base, tail: base + tail,
    st.sampled_from([*PATHS, "/", "/v1/", "/upstream/"]),
    st.text(alphabet="abcxyz/?=&%.-_m0", max_size=20),
)


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    method=st.sampled_from(["POST"] * 6 + ["GET", "PUT", "DELETE", "PATCH"]),
    path=paths,
    body=raw_bodies,
    content_type=st.sampled_from(CONTENT_TYPES) | header_text,
    accept=st.sampled_from(["", "text/plain", "text/html", "application/json", "*/*"]),
    extra=st.dictionaries(
        st.sampled_from(["Authorization", "x-api-key", "Origin", "X-Forwarded-For", "Cookie"]),
        header_text,
        max_size=3,
    ),
)
def test_fuzzed_requests_never_cause_our_5xx(
    daemon: ThreadedDaemon,
    method: str,
    path: str,
    body: bytes,
    content_type: str,
    accept: str,
    extra: dict[str, str],
) -> None:
    headers = {"Content-Type": content_type, "Accept": accept, **extra}
    status, payload, response_type = daemon.request(method, path, body, headers)
    event(f"status {status}")
    assert status < 500, (status, payload[:300])
    if status >= 400 and "json" in response_type and b'"src"' in payload:
        error = json.loads(payload)["error"]
        assert error["message"] and error["type"]


def test_the_daemon_still_serves_after_fuzzing(daemon: ThreadedDaemon) -> None:
    body = json.dumps({"model": "m", "max_tokens": 2}).encode()
    status, payload, _ = daemon.request(
        "POST", "/v1/chat/completions", body, {"Content-Type": "application/json"}
    )
    assert status == 200 and json.loads(payload)["usage"]["completion_tokens"] == 2


# ---------------------------------------------------------------------- the pure parts, directly


@given(content_type=st.sampled_from(CONTENT_TYPES) | header_text, body=raw_bodies)
def test_extract_either_routes_or_raises_a_clear_error(content_type: str, body: bytes) -> None:
    try:
        found = extract(content_type, body, {})
    except BadRequestError as exc:
        assert str(exc)
    else:
        assert found.model is None or isinstance(found.model, str)


@given(
    model=st.text(
        alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=20
    ),
    other=st.binary(max_size=50),
)
def test_multipart_model_field_roundtrip(model: str, other: bytes) -> None:
    boundary = "b0undary"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a"\r\n\r\n'.encode()
        + other
        + f'\r\n--{boundary}\r\nContent-Disposition: form-data; name="model"\r\n\r\n{model}\r\n--{boundary}--\r\n'.encode()
    )
    ctype = f"multipart/form-data; boundary={boundary}"
    if f"--{boundary}".encode() in other:
        return  # a file containing the delimiter is not a valid form
    assert multipart_field(ctype, body, "model") == model
    rewritten = replace_multipart_model(ctype, body, "new-name")
    assert multipart_field(ctype, rewritten, "model") == "new-name"
    assert multipart_field(ctype, rewritten, "file") == other.decode("utf-8", "replace")


def test_filters_order_and_model_protection() -> None:
    body = {"model": "x", "a": 1, "b": 2}
    assert apply_filters(body, "real", ["a", "model"], {"c": 3})
    assert body == {"model": "real", "b": 2, "c": 3}
    assert not apply_filters(body, "real", [], {})
