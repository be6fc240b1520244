"""The SQLite activity store: bounds (rows, age), restart survival, filters, CSV, captures."""

from __future__ import annotations

import asyncio
import base64
import csv
import io
import time
from pathlib import Path

import aiohttp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llamaswap.daemon.activity import NAMES, ActivitySettings, ActivityStore, Filters, values
from llamaswap.daemon.testing import fake_cmd, make_config, running_daemon

KEY = "sk-activity-key"


def _row(i: int, **over: object) -> tuple[object, ...]:
    row: dict[str, object] = dict.fromkeys(NAMES)
    row.update(ts=time.time(), model="m", status=200, total=0.01 * (i % 50), request_id=str(i))
    row.update(over)
    return values(row)


@settings(max_examples=25, deadline=None)
@given(max_rows=st.integers(1, 40), batches=st.lists(st.integers(0, 60), max_size=6))
def test_store_keeps_exactly_the_newest_rows_up_to_its_bound(
    max_rows: int, batches: list[int]
) -> None:
    store = ActivityStore(ActivitySettings(max_rows=max_rows))
    try:
        ids: list[int] = []
        for size in batches:
            for i in range(size):
                row_id = store.add(_row(i))
                assert row_id is not None
                ids.append(row_id)
            store.flush()
            assert store.count() <= max_rows
        kept = [r["id"] for r in store.rows(Filters(limit=10_000))]
        assert kept == sorted(ids, reverse=True)[:max_rows]
    finally:
        store.close()


def test_rows_older_than_the_age_bound_are_deleted_and_captures_with_them() -> None:
    store = ActivityStore(ActivitySettings(max_age=60.0, capture_bytes=16))
    try:
        old = store.add(_row(1, ts=time.time() - 3600), ("/x", "{}", b"req", "{}", b"resp"))
        store.add(_row(2))
        store.flush()
        with store._lock:  # the age prune runs every minute; run it now
            store._pruned_at = 0.0
            store._prune(time.time())
        assert [r["request_id"] for r in store.rows(Filters())] == ["2"]
        assert old is not None and store.capture(old) is None
    finally:
        store.close()


def test_rows_and_ids_survive_a_restart(tmp_path: Path) -> None:
    path = str(tmp_path / "state" / "activity.sqlite")
    store = ActivityStore(ActivitySettings(path=path))
    first = [store.add(_row(i)) for i in range(5)]
    store.close()
    reopened = ActivityStore(ActivitySettings(path=path))
    try:
        assert [r["id"] for r in reopened.rows(Filters())] == sorted(first, reverse=True)  # type: ignore[type-var]
        assert reopened.add(_row(9)) == max(first) + 1  # type: ignore[type-var, operator]
    finally:
        reopened.close()


def test_filters_are_validated_with_one_clear_message() -> None:
    assert Filters.parse({"status": "4xx", "model": "a", "limit": "5"}).limit == 5
    for query, message in (
        ({"status": "teapot"}, "status: expected a code like 404 or a class like 4xx"),
        ({"limit": "0"}, "limit: expected 1..10000"),
        ({"since": "yesterday"}, "since: expected a number"),
        ({"until": "nan"}, "until: expected a finite number"),
    ):
        with pytest.raises(ValueError, match=message):
            Filters.parse(query)


def test_stats_count_tokens_and_bin_latencies() -> None:
    store = ActivityStore()
    try:
        store.add(_row(1, prompt_tokens=3, completion_tokens=10, total=0.02, tokens_per_s=50.0))
        store.add(_row(2, prompt_tokens=4, completion_tokens=20, total=3.0, tokens_per_s=150.0))
        store.add(_row(3, status=404, total=0.001))
        store.flush()
        stats = store.stats(Filters())
        assert (stats["requests"], stats["errors"]) == (3, 1)
        assert (stats["prompt_tokens"], stats["completion_tokens"]) == (7, 30)
        assert stats["mean_tokens_per_s"] == 100.0
        hist = stats["histogram"]
        assert sum(hist["counts"]) == 2  # errors are not in the latency histogram
        assert hist["counts"][hist["edges"].index(0.025)] == 1
        assert hist["counts"][hist["edges"].index(5)] == 1
        assert store.stats(Filters(status="4xx"))["requests"] == 1
    finally:
        store.close()


# ---------------------------------------------------------------------- on a real daemon


def _config(**top: object) -> object:
    return make_config({"alpha": {"cmd": fake_cmd()}, "beta": {"cmd": fake_cmd()}}, **top)


async def _chat(http: aiohttp.ClientSession, base: str, model: str, **extra: object) -> int:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3}
    async with http.post(base + "/v1/chat/completions", json={**body, **extra}) as r:
        await r.read()
        return r.status


async def _flush(daemon: object) -> None:
    store = daemon.operator.store  # type: ignore[attr-defined]
    await asyncio.get_running_loop().run_in_executor(None, store.flush)


@pytest.mark.daemon
async def test_activity_rows_survive_a_daemon_restart(tmp_path: Path) -> None:
    settings_ = ActivitySettings(path=str(tmp_path / "activity.sqlite"))
    async with (
        running_daemon(_config(), activity=settings_) as daemon,
        aiohttp.ClientSession() as http,
    ):
        base = f"http://127.0.0.1:{daemon.port}"
        assert await _chat(http, base, "alpha") == 200
        assert await _chat(http, base, "alpha", stream=True) == 200
    async with (
        running_daemon(_config(), activity=settings_) as daemon,
        aiohttp.ClientSession() as http,
    ):
        base = f"http://127.0.0.1:{daemon.port}"
        async with http.get(base + "/api/activity") as r:
            rows = (await r.json())["rows"]
        assert [(row["model"], row["stream"], row["completion_tokens"]) for row in rows] == [
            ("alpha", 1, 3),
            ("alpha", 0, 3),
        ]
        assert all(row["ttfb"] is not None and row["queue_wait"] is not None for row in rows)
        assert rows[1]["load_wait"] > 0  # the first request waited for alpha to load


@pytest.mark.daemon
async def test_store_stays_within_its_bound_under_load_and_filters_and_csv_work() -> None:
    settings_ = ActivitySettings(max_rows=50)
    async with running_daemon(_config(scheduler="fifo"), activity=settings_) as daemon:
        base = f"http://127.0.0.1:{daemon.port}"
        async with aiohttp.ClientSession() as http:
            assert await _chat(http, base, "alpha") == 200
            queue: asyncio.Queue[int] = asyncio.Queue()
            for i in range(300):
                queue.put_nowait(i)

            async def worker() -> list[int]:
                got = []
                while not queue.empty():
                    i = queue.get_nowait()
                    got.append(await _chat(http, base, "alpha" if i % 3 else "nope"))
                return got

            statuses = [
                s for part in await asyncio.gather(*[worker() for _ in range(8)]) for s in part
            ]
            assert sorted(set(statuses)) == [200, 404]
            await _flush(daemon)
            assert daemon.operator.store.count() <= 50
            async with http.get(base + "/api/activity", params={"status": "4xx"}) as r:
                data = await r.json()
            assert data["rows"] and {row["status"] for row in data["rows"]} == {404}
            assert data["stats"]["requests"] == len(data["rows"])
            async with http.get(
                base + "/api/activity", params={"model": "alpha", "format": "csv"}
            ) as r:
                assert r.headers["Content-Type"].startswith("text/csv")
                table = list(csv.DictReader(io.StringIO(await r.text())))
            assert table and {row["model"] for row in table} == {"alpha"}
            assert len(table) + len(data["rows"]) == 50
            async with http.get(base + "/api/activity", params={"status": "abc"}) as r:
                assert r.status == 400
                assert "status: expected" in (await r.json())["error"]["message"]


@pytest.mark.daemon
async def test_captures_are_off_by_default_and_size_capped_without_keys_when_on() -> None:
    async with (
        running_daemon(_config(apiKeys=[KEY])) as daemon,
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {KEY}"}) as http,
    ):
        base = f"http://127.0.0.1:{daemon.port}"
        assert await _chat(http, base, "alpha") == 200
        await _flush(daemon)
        async with http.get(base + "/api/captures/1") as r:
            assert r.status == 404
        async with http.get(base + "/api/activity") as r:
            assert (await r.json())["rows"][0]["key_name"] == "key-1"
    settings_ = ActivitySettings(capture_bytes=40)
    async with (
        running_daemon(_config(apiKeys=[KEY]), activity=settings_) as daemon,
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {KEY}"}) as http,
    ):
        base = f"http://127.0.0.1:{daemon.port}"
        assert await _chat(http, base, "alpha") == 200
        await _flush(daemon)
        async with http.get(base + "/api/captures/1") as r:
            capture = await r.json()
        request_body = base64.b64decode(capture["req_body"])
        assert len(request_body) == 40 and request_body.startswith(b'{"model": "alpha"')
        assert len(base64.b64decode(capture["resp_body"])) == 40
        headers = {k.lower() for k in capture["req_headers"]}
        assert "authorization" not in headers and "content-type" in headers
        assert KEY not in str(capture)


@pytest.mark.parametrize(
    "body",
    [
        b'{"choices":[],"usage":{"prompt_tokens":12,"completion_tokens":34,"total_tokens":46}}',
        b'data: {"choices":[{"delta":{"content":"a"}}],"usage":null}\n\n'
        b'data: {"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":7,'
        b'"prompt_tokens_details":{"cached_tokens":1}}}\n\ndata: [DONE]\n\n',
        b'{"type":"message","usage":{"input_tokens":3,"output_tokens":9}}',
        b'{"object":"list","data":[],"usage":{"prompt_tokens":8,"total_tokens":8}}',
        b'{"choices":[{"message":{"content":"no usage here"}}]}',
        b'data: {"usage":null}\n\n',
    ],
)
def test_the_fast_usage_scan_agrees_with_the_json_parse(body: bytes) -> None:
    from llamaswap.daemon.facts import usage_counts
    from llamaswap.record.usage import usage_of

    assert usage_counts(body) == usage_of(body)


def test_a_file_that_is_not_a_store_is_one_clear_error(tmp_path: Path) -> None:
    from llamaswap.daemon.activity import ActivityStoreError

    bad = tmp_path / "notes.sqlite"
    bad.write_text("not a database")
    with pytest.raises(
        ActivityStoreError, match=r"activity store .*notes\.sqlite: file is not a database"
    ):
        ActivityStore(ActivitySettings(path=str(bad)))
