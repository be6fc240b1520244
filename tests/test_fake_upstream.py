"""The fake upstream as a real process: health gating, timing from TimingProfile, fault knobs."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from llamaswap.daemon.testing import free_port_block
from llamaswap.timing import Distribution, TimingProfile

pytestmark = pytest.mark.daemon


@contextmanager
def fake(*args: str) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    port = free_port_block(1)
    proc = subprocess.Popen(
        [sys.executable, "-m", "llamaswap.daemon.fake_upstream", "--port", str(port), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        yield proc, f"http://127.0.0.1:{port}"
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (urllib.error.URLError, ConnectionError):
        return 0


def _wait_status(url: str, want: int, timeout: float = 10) -> float:
    start = time.monotonic()
    while _status(url) != want:
        assert time.monotonic() - start < timeout, f"{url} never answered {want}"
        time.sleep(0.01)
    return time.monotonic()


def _post(url: str, body: dict[str, object]) -> tuple[float, bytes]:
    req = urllib.request.Request(url, data=json.dumps(body).encode())
    start = time.monotonic()
    with urllib.request.urlopen(req, timeout=20) as r:
        data = r.read()
    return time.monotonic() - start, data


def test_health_is_503_until_the_load_time_has_passed() -> None:
    # The load counts from process creation, and the process itself takes up to about a second
    # to start answering on a busy box (an interpreter plus aiohttp), so a load shorter than that
    # could be over before the first /health: 3 s leaves the 503 phase observable with margin.
    with fake("--load-time", "3", "--model", "m") as (_proc, base):
        up = _wait_status(base + "/health", 503)
        ready = _wait_status(base + "/health", 200)
        assert 0.0 < ready - up < 3.5
        with urllib.request.urlopen(base + "/v1/models") as r:
            assert json.loads(r.read())["data"][0]["id"] == "m"


def test_generation_timing_follows_the_shared_timing_profile() -> None:
    profile = TimingProfile(
        load_time=Distribution("constant", 0.0),
        ttft_overhead=0.1,
        prefill_tps=1000.0,
        decode_tps=50.0,
    )
    with fake(
        "--load-time", "0", "--ttft-overhead", "0.1", "--prefill-tps", "1000", "--decode-tps", "50"
    ) as (_proc, base):
        _wait_status(base + "/health", 200)
        prompt = "x" * 400  # 100 tokens at 4 chars/token
        body = {"messages": [{"role": "user", "content": prompt}], "max_tokens": 20}
        elapsed, data = _post(base + "/v1/chat/completions", body)
        usage = json.loads(data)["usage"]
        assert usage == {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120}
        expected = profile.service_time(100, 20)  # 0.1 + 0.1 + 0.4
        assert expected == pytest.approx(0.6)
        assert expected - 0.01 < elapsed < expected + 0.6

        elapsed, data = _post(base + "/v1/chat/completions", {**body, "stream": True})
        events = [line for line in data.split(b"\n\n") if line.startswith(b"data: {")]
        assert len(events) == 21 and data.endswith(b"data: [DONE]\n\n")
        assert expected - 0.03 < elapsed < expected + 0.6

        elapsed, data = _post(base + "/v1/embeddings", {"input": "y" * 400})
        assert json.loads(data)["usage"]["prompt_tokens"] == 100
        assert profile.time_to_first_token(100) - 0.01 < elapsed < 0.8


def test_parallel_slots_queue_extra_generations() -> None:
    with fake("--load-time", "0", "--decode-tps", "20", "--parallel", "1") as (_proc, base):
        _wait_status(base + "/health", 200)
        import threading

        times: list[float] = []
        threads = [
            threading.Thread(
                target=lambda: times.append(
                    _post(base + "/v1/completions", {"prompt": "a", "max_tokens": 4})[0]
                )
            )
            for _ in range(2)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(times)[1] > 0.38  # the second waited for the only slot: 2 x 0.2 s


def test_fail_start_exits_1_and_never_becomes_healthy() -> None:
    with fake("--load-time", "0.3", "--fail-start") as (proc, _base):
        assert proc.wait(5) == 1
        out = proc.stdout.read() if proc.stdout else b""
        assert b"failed to load model" in out


def test_crash_after_n_requests() -> None:
    with fake("--load-time", "0", "--crash-after", "1") as (proc, base):
        _wait_status(base + "/health", 200)
        _post(base + "/v1/completions", {"prompt": "a", "max_tokens": 1})
        with pytest.raises((urllib.error.URLError, ConnectionError, http_error())):
            _post(base + "/v1/completions", {"prompt": "a", "max_tokens": 1})
        assert proc.wait(5) == 3


def http_error() -> type[Exception]:
    import http.client

    return http.client.HTTPException


def test_sigterm_stops_it_unless_ignored() -> None:
    with fake("--load-time", "0") as (proc, base):
        _wait_status(base + "/health", 200)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(5) == 0
    with fake("--load-time", "0", "--ignore-sigterm") as (proc, base):
        _wait_status(base + "/health", 200)
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        assert proc.poll() is None and _status(base + "/health") == 200
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(5) == -signal.SIGKILL


def test_first_request_after_a_load_pays_the_warm_up_once() -> None:
    """``--first-request-overhead``: the same warm-up term the simulator and calibration use."""
    with fake("--load-time", "0", "--first-request-overhead", "0.5", "--decode-tps", "1000") as (
        _proc,
        url,
    ):
        _wait_status(url + "/health", 200)
        body = {"prompt": "hi", "max_tokens": 1}
        first, _ = _post(url + "/v1/completions", body)
        second, _ = _post(url + "/v1/completions", body)
    assert first >= 0.5, "the first generation skipped its warm-up"
    assert second < 0.5, "the warm-up was paid again by a later request"


def test_responses_api_through_the_openai_sdk() -> None:
    """``client.responses.create`` works unchanged against a fake upstream (issue 21), plain and
    streaming, with the Responses API's shape: output_text, usage in input/output tokens, events."""
    import openai

    with fake("--load-time", "0", "--decode-tps", "500") as (_, url):
        _wait_status(url + "/health", 200)
        client = openai.OpenAI(base_url=url + "/v1", api_key="none")
        reply = client.responses.create(model="fake", input="hello there", max_output_tokens=4)
        assert reply.output_text == "lorem ipsum dolor sit "
        assert reply.status == "completed" and reply.usage is not None
        assert reply.usage.output_tokens == 4 and reply.usage.input_tokens >= 1
        events = list(
            client.responses.create(model="fake", input="hi", max_output_tokens=3, stream=True)
        )
        kinds = [e.type for e in events]
        assert kinds[:3] == [
            "response.created",
            "response.output_item.added",
            "response.content_part.added",
        ]
        assert kinds.count("response.output_text.delta") == 3
        assert kinds[-1] == "response.completed"
        assert [e.sequence_number for e in events] == list(range(len(events)))
        assert events[-1].response.output_text == "lorem ipsum dolor "


def test_a_client_disconnect_costs_one_log_line_not_a_traceback() -> None:
    import socket

    with fake("--load-time", "0", "--decode-tps", "20") as (proc, url):
        _wait_status(url + "/health", 200)
        port = int(url.rsplit(":", 1)[1])
        body = json.dumps({"messages": [{"role": "user", "content": "x"}], "stream": True})
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(
                f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                f"\r\nContent-Length: {len(body)}\r\n\r\n{body}".encode()
            )
            assert sock.recv(100).startswith(b"HTTP/1.1 200")  # streaming has begun
        # the next request proves the server went on; then stop it and read what it printed
        _post(url + "/v1/chat/completions", {"messages": [], "max_tokens": 1})
        proc.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=10)[0].decode()
    assert "client disconnected" in out
    assert "Traceback" not in out and "Error handling request" not in out
