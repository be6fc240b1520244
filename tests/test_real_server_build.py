"""The llama-server build/cache module without building anything: the cache key, where the binary
is looked for, its errors (one line, naming the path and the fix), the command line it execs, and
the daemon's reading of ``/props``. The build itself runs in ``make llama-server``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from llamaswap import llamaserver
from llamaswap.daemon.processes import slots_from_props
from llamaswap.realmodel import gguf_path


def test_the_cache_key_covers_the_pin_and_every_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    key = llamaserver.cache_key()
    assert key == llamaserver.cache_key()
    assert llamaserver.cached_binary().parent.name == f"{llamaserver.SDIST_VERSION}-{key}"
    monkeypatch.setattr(llamaserver, "CMAKE_FLAGS", (*llamaserver.CMAKE_FLAGS, ("-DX=1", "why")))
    assert llamaserver.cache_key() != key
    monkeypatch.undo()
    monkeypatch.setattr(llamaserver, "SDIST_SHA256", "0" * 64)
    assert llamaserver.cache_key() != key


def test_the_flags_build_one_portable_static_server_with_nothing_downloaded() -> None:
    flags = {flag for flag, _ in llamaserver.CMAKE_FLAGS}
    for needed in (
        "-DGGML_NATIVE=OFF",
        "-DBUILD_SHARED_LIBS=OFF",
        "-DLLAMA_BUILD_TESTS=OFF",
        "-DLLAMA_BUILD_EXAMPLES=OFF",
        "-DLLAMA_USE_PREBUILT_UI=OFF",
        "-DLLAMA_BUILD_UI=OFF",
    ):
        assert needed in flags
    assert all(why for _, why in llamaserver.CMAKE_FLAGS), "every flag says why"
    assert llamaserver.DEFAULT_JOBS == 2


def test_the_cache_lives_outside_the_repo(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert llamaserver.cached_binary().is_relative_to(tmp_path / "llamaswap" / "llama-server")
    repo = Path(__file__).resolve().parents[1]
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert not llamaserver.cached_binary().is_relative_to(repo)


def test_a_missing_binary_is_one_line_naming_the_path_and_the_fix(tmp_path: Path) -> None:
    env = {"XDG_CACHE_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-m", "llamaswap.llamaserver", "path"],
        capture_output=True,
        text=True,
        env={**env, "PYTHONPATH": ":".join(sys.path)},
    )
    assert out.returncode == 1
    [line] = out.stderr.splitlines()
    assert str(tmp_path) in line and "make llama-server" in line, line


def test_the_override_must_be_an_executable_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fake = tmp_path / "llama-server"
    fake.write_text("#!/bin/sh\n")
    monkeypatch.setenv(llamaserver.ENV_BINARY, str(fake))
    with pytest.raises(llamaserver.LlamaServerError, match=r"LLAMASWAP_LLAMA_SERVER="):
        llamaserver.binary_path()
    fake.chmod(0o755)
    assert llamaserver.binary_path() == fake


def test_serve_adds_the_model_and_a_loopback_host_unless_given(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fake = tmp_path / "llama-server"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    monkeypatch.setenv(llamaserver.ENV_BINARY, str(fake))
    assert llamaserver.server_argv(["--port", "5"]) == [
        str(fake), "-m", str(gguf_path()), "--host", "127.0.0.1", "--port", "5",
    ]  # fmt: skip
    own = llamaserver.server_argv(["--model=/m.gguf", "--host", "::1"])
    assert own == [str(fake), "--model=/m.gguf", "--host", "::1"]


@pytest.mark.parametrize("args", [["build", "-j0"], ["build", "fast"], ["bogus"]])
def test_bad_arguments_exit_2_with_one_clear_line(args: list[str]) -> None:
    assert llamaserver.main(args) == 2


@pytest.mark.parametrize(
    ("body", "slots"),
    [
        ({"total_slots": 4, "model_path": "x.gguf"}, 4),
        ({"total_slots": 1}, 1),
        ({"total_slots": 0}, None),
        ({"total_slots": True}, None),
        ({"total_slots": "4"}, None),
        ({"model": "echo"}, None),
        ([4], None),
        (None, None),
    ],
)
def test_slots_from_props(body: object, slots: int | None) -> None:
    assert slots_from_props(body) == slots
