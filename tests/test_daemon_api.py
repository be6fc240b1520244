"""The daemon's HTTP API end to end: real daemon, real fake-upstream processes, real sockets.

The official ``openai`` SDK (async and sync, streaming and not) for the OpenAI endpoints; raw aiohttp
for the rest.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
from pathlib import Path

import aiohttp
import openai
import pytest
from waiting import wait_until

from llamaswap.config import load_config
from llamaswap.daemon.testing import fake_cmd, free_port_block, make_config, running_daemon

pytestmark = pytest.mark.daemon


def _models(**overrides: dict[str, object]) -> dict[str, dict[str, object]]:
    models: dict[str, dict[str, object]] = {
        "alpha": {"cmd": fake_cmd(), "aliases": ["a"]},
        "beta": {"cmd": fake_cmd(), "unlisted": False},
    }
    for name, extra in overrides.items():
        models.setdefault(name, {"cmd": fake_cmd()}).update(extra)
    return models


async def test_openai_sdk_async_chat_completions_embeddings_and_models() -> None:
    config = make_config(_models(), scheduler="fifo")
    async with running_daemon(config) as daemon:
        client = openai.AsyncOpenAI(base_url=f"http://127.0.0.1:{daemon.port}/v1", api_key="none")
        chat = await client.chat.completions.create(
            model="alpha", messages=[{"role": "user", "content": "hello"}], max_tokens=5
        )
        assert chat.choices[0].message.content == "lorem ipsum dolor sit amet "
        assert chat.usage is not None and chat.usage.completion_tokens == 5

        stream = await client.chat.completions.create(
            model="a",  # alias
            messages=[{"role": "user", "content": "hello"}],
            max_tokens=7,
            stream=True,
        )
        parts = [
            c.choices[0].delta.content
            async for c in stream
            if c.choices and c.choices[0].delta.content
        ]
        assert len(parts) == 7

        completion = await client.completions.create(model="beta", prompt="once upon", max_tokens=3)
        assert completion.choices[0].text == "lorem ipsum dolor "
        stream2 = await client.completions.create(
            model="beta", prompt="once upon", max_tokens=4, stream=True
        )
        texts = [c.choices[0].text async for c in stream2 if c.choices and c.choices[0].text]
        assert texts == ["lorem ", "ipsum ", "dolor ", "sit "]

        embedding = await client.embeddings.create(model="alpha", input=["x", "y"])
        assert len(embedding.data) == 2 and len(embedding.data[0].embedding) == 8

        listed = await client.models.list()
        assert [m.id for m in listed.data] == ["alpha", "beta"]
        await client.close()


async def test_openai_sdk_sync_streaming_and_not() -> None:
    config = make_config(_models())
    async with running_daemon(config) as daemon:

        def use_sync_sdk() -> tuple[str, list[str], list[str]]:
            client = openai.OpenAI(base_url=f"http://127.0.0.1:{daemon.port}/v1", api_key="none")
            reply = client.chat.completions.create(
                model="alpha", messages=[{"role": "user", "content": "hi"}], max_tokens=2
            )
            chunks = [
                c.choices[0].delta.content or ""
                for c in client.chat.completions.create(
                    model="beta",
                    messages=[{"role": "user", "content": "hi"}],
                    max_tokens=3,
                    stream=True,
                )
                if c.choices
            ]
            ids = [m.id for m in client.models.list().data]
            client.close()
            return reply.choices[0].message.content or "", chunks, ids

        content, chunks, ids = await asyncio.to_thread(use_sync_sdk)
        assert content == "lorem ipsum "
        assert "".join(chunks) == "lorem ipsum dolor "
        assert ids == ["alpha", "beta"]


async def test_error_envelope_and_status_codes() -> None:
    config = make_config(_models())
    async with running_daemon(config, max_body=4096) as daemon, aiohttp.ClientSession() as http:
        base = f"http://127.0.0.1:{daemon.port}"
        url = base + "/v1/chat/completions"
        hdr = {"Content-Type": "application/json"}

        async with http.post(url, data=b"{not json", headers=hdr) as r:
            body = await r.json()
            assert r.status == 400
            assert body["src"] == "llamaswap"
            assert body["error"]["type"] == "invalid_request_error"
            assert "malformed JSON" in body["error"]["message"]
        async with http.post(url, json={"messages": []}) as r:
            assert r.status == 400
            assert "no model" in (await r.json())["error"]["message"]
        async with http.post(url, json={"model": 42}) as r:
            assert r.status == 400
        async with http.post(url, json={"model": "nope"}) as r:
            assert r.status == 404
            assert (await r.json())["error"]["code"] == "not_found"
        async with http.post(url, json={"model": "nope"}, headers={"Accept": "text/plain"}) as r:
            assert r.status == 404
            assert (await r.text()) == "llamaswap: model 'nope' is not configured"
        async with http.post(url, json={"model": "alpha", "pad": "x" * 10000}) as r:
            assert r.status == 413
            assert (await r.json())["error"]["code"] == "request_too_large"
        async with http.get(base + "/no/such/path") as r:
            assert r.status == 404
            assert (await r.json())["src"] == "llamaswap"
        async with http.get(url) as r:
            assert r.status == 405
        async with http.get(base + "/health") as r:
            assert r.status == 200 and await r.text() == "OK"


async def test_api_keys_bearer_x_api_key_and_basic() -> None:
    config = make_config(_models(), apiKeys=["sekret-1", "other-key"])
    async with running_daemon(config) as daemon, aiohttp.ClientSession() as http:
        base = f"http://127.0.0.1:{daemon.port}"
        async with http.get(base + "/v1/models") as r:
            assert r.status == 401
            assert r.headers["WWW-Authenticate"].startswith("Basic")
            assert (await r.json())["error"]["type"] == "authentication_error"
        async with http.get(base + "/v1/models", headers={"Authorization": "Bearer wrong"}) as r:
            assert r.status == 401
        async with http.get(base + "/v1/models", headers={"Authorization": "Bearer sekret-1"}) as r:
            assert r.status == 200
        async with http.get(base + "/v1/models", headers={"x-api-key": "other-key"}) as r:
            assert r.status == 200
        basic = base64.b64encode(b"user:sekret-1").decode()
        async with http.get(base + "/running", headers={"Authorization": f"Basic {basic}"}) as r:
            assert r.status == 200
        async with http.get(base + "/health") as r:
            assert r.status == 200
        client = openai.AsyncOpenAI(base_url=base + "/v1", api_key="sekret-1")
        reply = await client.chat.completions.create(
            model="alpha", messages=[{"role": "user", "content": "x"}], max_tokens=1
        )
        assert reply.choices[0].message.content == "lorem "
        await client.close()


async def test_cors_preflight() -> None:
    # llama-swap's behaviour (any origin) is opt-in since issue 19: see test_daemon_hardening_web.
    config = make_config(_models(), security={"corsOrigins": ["*"]})
    async with (
        running_daemon(config) as daemon,
        aiohttp.ClientSession() as http,
        http.options(
            f"http://127.0.0.1:{daemon.port}/v1/chat/completions",
            headers={"Access-Control-Request-Headers": "x-custom, authorization"},
        ) as r,
    ):
        assert r.status == 204
        assert r.headers["Access-Control-Allow-Origin"] == "*"
        assert r.headers["Access-Control-Allow-Headers"] == "x-custom, authorization"
        assert r.headers["Access-Control-Max-Age"] == "86400"


async def test_filters_use_model_name_and_aliases_reach_the_upstream() -> None:
    models = _models(
        alpha={
            "useModelName": "upstream-name",
            "filters": {"stripParams": "temperature, top_p", "setParams": {"seed": 7}},
        }
    )
    config = make_config(models)
    async with running_daemon(config) as daemon, aiohttp.ClientSession() as http:
        base = f"http://127.0.0.1:{daemon.port}"
        body = {"model": "a", "messages": [], "max_tokens": 1, "temperature": 0.1, "top_p": 1}
        async with http.post(base + "/v1/chat/completions", json=body) as r:
            assert r.status == 200
            assert (await r.json())["model"] == "upstream-name"
        async with http.get(base + "/upstream/alpha/debug/last-request") as r:
            seen = await r.json()
        assert seen["body"] == {
            "model": "upstream-name",
            "messages": [],
            "max_tokens": 1,
            "seed": 7,
        }
        assert seen["headers"]["Content-Length"] == str(len(json.dumps(seen["body"])))


async def test_multipart_and_query_routing() -> None:
    config = make_config(_models())
    async with running_daemon(config) as daemon, aiohttp.ClientSession() as http:
        base = f"http://127.0.0.1:{daemon.port}"
        form = aiohttp.FormData()
        form.add_field("model", "beta")
        form.add_field("file", b"\x00\x01RIFF" * 100, filename="a.wav", content_type="audio/wav")
        async with http.post(base + "/v1/audio/transcriptions", data=form) as r:
            echo = await r.json()
        assert r.status == 200
        assert echo["model"] == "beta" and echo["path"] == "/v1/audio/transcriptions"
        assert echo["content_type"].startswith("multipart/form-data")
        async with http.get(base + "/props?model=a") as r:
            echo = await r.json()
        assert echo["model"] == "alpha" and echo["query"] == "model=a"
        async with http.post(
            base + "/v/chat/completions", json={"model": "beta", "max_tokens": 1}
        ) as r:
            assert r.status == 200
            assert (await r.json())["choices"][0]["message"]["content"] == "lorem "


async def test_upstream_passthrough_redirect_and_running_unload() -> None:
    config = make_config(_models())
    async with running_daemon(config) as daemon, aiohttp.ClientSession() as http:
        base = f"http://127.0.0.1:{daemon.port}"
        async with http.get(base + "/upstream/alpha", allow_redirects=False) as r:
            assert r.status == 301 and r.headers["Location"] == "/upstream/alpha/"
        async with http.post(base + "/upstream/alpha", allow_redirects=False) as r:
            assert r.status == 308
        async with http.get(base + "/upstream/nope/x") as r:
            assert r.status == 404
        async with http.get(base + "/upstream/a/v1/models") as r:
            assert (await r.json())["data"][0]["id"] == "alpha"
        async with http.get(base + "/running") as r:
            running = (await r.json())["running"]
        assert [(e["model"], e["state"]) for e in running] == [("alpha", "ready")]
        async with http.get(base + "/v1/models") as r:
            status = {m["id"]: m["status"]["value"] for m in (await r.json())["data"]}
        assert status == {"alpha": "loaded", "beta": "unloaded"}
        async with http.post(base + "/api/models/unload/nope") as r:
            assert r.status == 404
            assert (await r.json())["error"]["message"] == "model not found: 'nope'"
        async with http.get(base + "/upstream/nope/x") as r:
            assert r.status == 404
            assert "'nope'" in (await r.json())["error"]["message"]
        async with http.get(base + "/upstream") as r:  # llama-swap: a redirect to its UI's list
            index = {m["id"]: m for m in (await r.json())["models"]}
        assert index["alpha"]["upstream"] == "/upstream/alpha/"
        assert index["alpha"]["aliases"] == ["a"] and index["alpha"]["state"] == "ready"
        assert index["beta"]["state"] == "stopped"
        async with http.post(base + "/api/models/unload/a") as r:  # as POST /api/models/unload
            assert r.status == 200 and await r.json() == {"msg": "ok", "model": "alpha"}
        async with http.get(base + "/running") as r:
            assert (await r.json())["running"] == []
        async with http.post(
            base + "/v1/completions", json={"model": "beta", "max_tokens": 1}
        ) as r:
            assert r.status == 200
        async with http.get(base + "/unload") as r:
            assert await r.text() == "OK"
        async with http.post(base + "/api/models/unload") as r:
            assert await r.json() == {"msg": "ok"}
        async with http.get(base + "/running") as r:
            assert (await r.json())["running"] == []


async def test_models_listing_hides_unlisted_and_lists_aliases() -> None:
    models = _models(
        beta={"unlisted": True},
        gamma={"name": "Gamma", "description": "third", "metadata": {"size": 3}},
    )
    config = make_config(models, includeAliasesInList=True, security={"corsOrigins": ["*"]})
    async with running_daemon(config) as daemon, aiohttp.ClientSession() as http:
        async with http.get(
            f"http://127.0.0.1:{daemon.port}/models", headers={"Origin": "http://ui"}
        ) as r:
            listing = await r.json()
            assert r.headers["Access-Control-Allow-Origin"] == "http://ui"
        ids = [m["id"] for m in listing["data"]]
        assert ids == ["a", "alpha", "gamma"]
        gamma = listing["data"][2]
        assert gamma["name"] == "Gamma" and gamma["description"] == "third"
        assert gamma["meta"]["llamaswap"]["size"] == 3
        assert listing["data"][0]["meta"]["llamaswap"]["type"] == "alias"


async def test_logs_metrics_and_log_stream() -> None:
    models = {"talky": {"cmd": fake_cmd().replace("--quiet ", "")}}
    config = make_config(models)
    async with running_daemon(config) as daemon, aiohttp.ClientSession() as http:
        base = f"http://127.0.0.1:{daemon.port}"
        async with http.post(
            base + "/v1/chat/completions", json={"model": "talky", "max_tokens": 1}
        ) as r:
            assert r.status == 200
        async with http.get(base + "/logs") as r:
            text = await r.text()
        assert "Request 127.0.0.1" in text and "talky: stopped -> starting" in text
        assert "fake-upstream[talky]: /v1/chat/completions" in text
        async with http.get(base + "/logs/stream/bogus") as r:
            assert r.status == 400
        async with http.get(base + "/logs/stream/talky") as r:
            assert r.headers["X-Accel-Buffering"] == "no"
            first = await asyncio.wait_for(r.content.readuntil(b"\n"), 5)
            assert first.startswith(b"fake-upstream[talky]")
        async with http.get(base + "/logs/stream/proxy?no-history") as r:
            async with http.get(base + "/health"):
                pass
            async with http.post(
                base + "/v1/completions", json={"model": "talky", "max_tokens": 1}
            ):
                pass
            line = await asyncio.wait_for(r.content.readuntil(b"\n"), 5)
            assert b"Request 127.0.0.1" in line
        async with http.get(base + "/metrics") as r:
            metrics = await r.text()
        assert 'llamaswap_requests_total{model="talky",status="200"} 2.0' in metrics
        assert 'llamaswap_load_duration_seconds_count{model="talky"} 1.0' in metrics
        assert 'llamaswap_process_state{model="talky",state="ready"} 1.0' in metrics
        assert "llamaswap_queue_depth 0.0" in metrics
        # Client requests only (no preload); the first one waited for the load.
        assert 'llamaswap_queue_wait_seconds_count{model="talky"} 2.0' in metrics
        waited = re.search(
            r'^llamaswap_queue_wait_seconds_sum\{model="talky"\} (\S+)$', metrics, re.M
        )
        assert waited is not None and float(waited.group(1)) > 0


async def test_loading_state_stream_then_upstream_tokens() -> None:
    models = {"slow": {"cmd": fake_cmd(load_time=1.6), "sendLoadingState": True}}
    config = make_config(models)
    async with running_daemon(config) as daemon:
        client = openai.AsyncOpenAI(base_url=f"http://127.0.0.1:{daemon.port}/v1", api_key="none")
        stream = await client.chat.completions.create(
            model="slow", messages=[{"role": "user", "content": "x"}], max_tokens=3, stream=True
        )
        reasoning, content = [], []
        async for chunk in stream:
            delta = chunk.choices[0].delta
            extra = getattr(delta, "reasoning_content", None) or (delta.model_extra or {}).get(
                "reasoning_content"
            )
            if extra:
                reasoning.append(extra)
            if delta.content:
                content.append(delta.content)
        text = "".join(reasoning)
        assert "llamaswap loading model: slow" in text
        assert "Queue position: #1" in text
        assert "Done! (" in text
        assert "".join(content) == "lorem ipsum dolor "
        # A second streaming request to the now-ready model gets no loading banner.
        stream = await client.chat.completions.create(
            model="slow", messages=[{"role": "user", "content": "x"}], max_tokens=1, stream=True
        )
        chunks = [c async for c in stream]
        assert all(
            not (c.choices[0].delta.model_extra or {}).get("reasoning_content") for c in chunks
        )
        await client.close()


async def test_concurrency_limit_answers_429_with_retry_after() -> None:
    models = {"one": {"cmd": fake_cmd(decode_tps=20, parallel=1), "concurrencyLimit": 1}}
    config = make_config(models)
    async with running_daemon(config) as daemon, aiohttp.ClientSession() as http:
        url = f"http://127.0.0.1:{daemon.port}/v1/chat/completions"
        slow = asyncio.create_task(http.post(url, json={"model": "one", "max_tokens": 20}))
        await wait_until(  # being served (20 tokens at 20/s: 1 s of serving)
            lambda: daemon.runtime.host.in_flight("one") == 1, what="the slow request to be served"
        )
        async with http.post(url, json={"model": "one", "max_tokens": 1}) as r:
            assert r.status == 429
            assert r.headers["Retry-After"] == "1"
            body = await r.json()
            assert body["error"]["code"] == "concurrency_limit"
            assert body["error"]["message"] == (
                "Too many requests: 'one' already has 1 admitted (its concurrencyLimit); retry later"
            )
        async with http.get(f"http://127.0.0.1:{daemon.port}/metrics") as r:
            assert 'llamaswap_in_flight_requests{model="one"} 1.0' in await r.text()
        first = await slow
        assert first.status == 200
        first.release()


async def test_the_example_config_serves_the_openai_sdk(tmp_path: Path) -> None:
    """``llamaswap serve --config examples/config.yaml`` works as shipped (ports moved only)."""
    text = (Path(__file__).parent.parent / "examples" / "config.yaml").read_text()
    assert "startPort: 5800" in text
    config_path = tmp_path / "config.yaml"
    config_path.write_text(text.replace("startPort: 5800", f"startPort: {free_port_block(3)}"))
    config = load_config(config_path)
    assert not config.warnings
    async with running_daemon(config) as daemon:
        client = openai.AsyncOpenAI(base_url=f"http://127.0.0.1:{daemon.port}/v1", api_key="none")
        listed = sorted(m.id for m in (await client.models.list()).data)
        assert listed == ["embed", "medium", "small"]
        chat = await client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], max_tokens=4
        )
        assert chat.choices[0].message.content == "lorem ipsum dolor sit "
        vectors = await client.embeddings.create(model="text-embedding-3-small", input="x")
        assert len(vectors.data[0].embedding) == 8
        await client.close()


async def test_http10_client_gets_a_close_delimited_stream() -> None:
    """No chunked encoding for HTTP/1.0: the relay must not frame chunks for it."""
    config = make_config({"alpha": {"cmd": fake_cmd()}})
    async with running_daemon(config) as daemon:
        reader, writer = await asyncio.open_connection("127.0.0.1", daemon.port)
        body = json.dumps({"model": "alpha", "max_tokens": 5, "stream": True}).encode()
        writer.write(
            b"POST /v1/chat/completions HTTP/1.0\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        raw = await asyncio.wait_for(reader.read(), 10)  # until the daemon closes
        writer.close()
        head, _, payload = raw.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.0 200") or head.startswith(b"HTTP/1.1 200")
        assert b"chunked" not in head.lower()
        events = [e for e in payload.split(b"\n\n") if e.startswith(b"data: ")]
        assert len(events) == 7 and events[-1] == b"data: [DONE]"


async def test_a_missing_program_is_named_in_the_error() -> None:
    config = make_config({"m": {"cmd": "/no/such/binary --port ${PORT}"}})
    async with running_daemon(config) as daemon, aiohttp.ClientSession() as http:
        url = f"http://127.0.0.1:{daemon.port}/v1/chat/completions"
        async with http.post(url, json={"model": "m"}) as r:
            assert r.status == 502
            message = (await r.json())["error"]["message"]
    assert "unable to load model 'm'" in message and "'/no/such/binary'" in message
