"""Issue 19, the smaller breaks: reloads that failed queued requests, dot segments in /upstream
paths, log injection, the 499 counter, and configs (macro bombs, invisible characters in ids)."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import aiohttp
import pytest
from yarl import URL

from llamaswap.config import ConfigError, load_config
from llamaswap.daemon.testing import fake_cmd, make_config, running_daemon

pytestmark = pytest.mark.daemon

CHAT = "/v1/chat/completions"
BOUND = 30.0


async def _until(predicate: object) -> None:
    async def poll() -> None:
        while not predicate():  # type: ignore[operator]
            await asyncio.sleep(0.02)

    await asyncio.wait_for(poll(), BOUND)


@pytest.mark.parametrize("change", [False, True])
async def test_a_reload_during_a_load_never_fails_queued_requests(change: bool) -> None:
    config = make_config({"m": {"cmd": fake_cmd(load_time=1.0)}, "n": {"cmd": fake_cmd()}})
    # The reloaded config: the same (an unchanged file), or one with a model fewer.
    fresh = dataclasses.replace(
        config, models={"m": config.models["m"]} if change else dict(config.models)
    )
    async with (
        running_daemon(config, loader=lambda: fresh) as daemon,
        aiohttp.ClientSession() as http,
    ):
        base = f"http://127.0.0.1:{daemon.port}"

        async def ask() -> int:
            async with http.post(base + CHAT, json={"model": "m", "max_tokens": 1}) as r:
                return r.status

        asking = [asyncio.create_task(ask()) for _ in range(10)]
        await _until(lambda: daemon.runtime.host.waiting() == 10)
        assert await daemon.reload()
        assert await asyncio.wait_for(asyncio.gather(*asking), BOUND) == [200] * 10


async def test_client_disconnects_mid_stream_are_all_counted_as_499() -> None:
    config = make_config({"m": {"cmd": fake_cmd(decode_tps=50, parallel=8)}})
    async with running_daemon(config) as daemon, aiohttp.ClientSession() as http:
        base = f"http://127.0.0.1:{daemon.port}"
        for _ in range(6):
            async with http.post(
                base + CHAT, json={"model": "m", "stream": True, "max_tokens": 500}
            ) as r:
                await r.content.readuntil(b"\n\n")  # one event, then hang up
        await _until(lambda: daemon.active == 0)
        async with http.get(base + "/metrics") as r:
            text = await r.text()
    assert 'llamaswap_requests_total{model="m",status="499"} 6.0' in text
    assert 'status="502"' not in text


async def test_dot_segments_in_upstream_paths_are_resolved_or_refused() -> None:
    config = make_config({"m": {"cmd": fake_cmd()}})
    async with running_daemon(config) as daemon, aiohttp.ClientSession() as http:
        base = f"http://127.0.0.1:{daemon.port}/upstream/m"
        for climb in ("/..%2f..%2fetc", "/%2e%2e/x", "/a/../../x"):
            async with http.get(URL(base + climb, encoded=True)) as r:
                assert r.status == 400, climb
                assert "climbs above" in (await r.json())["error"]["message"]
        async with http.get(URL(base + "/a/%2e%2e/b/./c", encoded=True)) as r:
            assert r.status == 200 and (await r.json())["path"] == "/b/c"
        async with http.get(
            URL(base + "/plain/x%2Fy", encoded=True)
        ) as r:  # no dot segments: forwarded as sent
            assert r.status == 200 and (await r.json())["path"] == "/plain/x/y"


async def test_control_characters_in_request_paths_are_escaped_in_the_logs() -> None:
    config = make_config({"m": {"cmd": fake_cmd()}})
    async with running_daemon(config) as daemon:
        reader, writer = await asyncio.open_connection("127.0.0.1", daemon.port)
        # A CR and an ANSI colour code (a LF never matches a route, so it is answered 404).
        writer.write(b"GET /upstream/m/x%0d%1b%5b31mFORGED HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), BOUND)
        writer.close()
        await _until(lambda: b"FORGED" in daemon.logs.proxy.history())
        history = daemon.logs.proxy.history()
    assert b"\x1b" not in history and b"\r" not in history
    assert b"/upstream/m/x\\r\\x1b[31mFORGED" in history


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def test_a_macro_bomb_is_refused_naming_the_macro(tmp_path: Path) -> None:
    levels = ["  a: 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx'"]
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
        levels.append(f"  {name}: '" + f"${{{prev}}}" * 10 + "'")
    path = _write(
        tmp_path,
        "macros:\n" + "\n".join(levels) + "\nmodels:\n  m:\n    cmd: 'run ${i} ${PORT}'\n",
    )
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    message = str(info.value)
    assert message.startswith("macros.d: expands to about 67040 characters, more than 65536")
    assert "(through macro '${c}')" in message


@pytest.mark.parametrize("bad", ["\u202e", "\u200b", "\x00", "\x1b"])
def test_control_and_invisible_characters_are_refused_in_config_ids(
    tmp_path: Path, bad: str
) -> None:
    for text in (
        f'models:\n  "m{bad}x":\n    cmd: "run ${{PORT}}"\n',
        f'models:\n  m:\n    cmd: "run ${{PORT}}"\n    aliases: ["a{bad}"]\n',
        f'models:\n  m:\n    cmd: "run ${{PORT}}"\ngroups:\n  "g{bad}": {{members: [m]}}\n',
    ):
        path = tmp_path / "c.yaml"
        path.write_text(text.encode("unicode_escape").decode("ascii").replace("\\n", "\n"))
        with pytest.raises(ConfigError) as info:
            load_config(path, env={})
        assert f"U+{ord(bad):04X}" in str(info.value) and "ids must be visible text" in str(
            info.value
        )
