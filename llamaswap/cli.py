"""``llamaswap`` command line: one entry point, a sub-command per job.

Each sub-command lives in the module that does the work; this file only wires them together.
A module provides ``register(subparsers)`` which adds its parser and sets ``func``.

Only the module of the sub-command being run is imported: the simulator pulls in numpy,
matplotlib and SimPy, and every ``fake-upstream`` process of a test or fidelity run would otherwise
pay seconds of CPU for them before it can even bind its port (``bench/startup.py`` measures this).
The top-level ``--help`` lists the commands from :data:`COMMANDS` without importing any of them.

Whatever a command raises, the user sees one line and an exit status, never a traceback:
``BrokenPipeError`` (``... | head``) exits quietly, Ctrl-C exits 130, and an exception no command
handled is reported as an internal error (``LLAMASWAP_TRACEBACK=1`` shows the traceback).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from typing import Any, NamedTuple

from llamaswap import __version__


class Command(NamedTuple):
    module: str
    help: str


COMMANDS: dict[str, Command] = {
    "serve": Command("llamaswap.daemon.cli", "run the model-swapping proxy"),
    "fake-upstream": Command(
        "llamaswap.daemon.fake_upstream", "run a fake llama-server (for tests and demos)"
    ),
    "check-config": Command(
        "llamaswap.config.cli", "validate a llama-swap style config and show what would run"
    ),
    "sim": Command(
        "sim.cli",
        "replay a trace through the real schedulers in a SimPy simulation and write a report",
    ),
    "trace": Command("sim.cli", "import, generate and inspect request traces"),
    "fidelity": Command(
        "llamaswap.fidelity.cli",
        "run a scenario on the real daemon and in the simulator and compare them",
    ),
    "sweep": Command(
        "sim.sweep.cli", "run a grid of simulations on Dask and collect one result table"
    ),
}
INTERNAL_ERROR = "internal error"
"""Marks a failure no command handled; the CLI fuzz test asserts it never appears."""


def _top_parser() -> tuple[argparse.ArgumentParser, Any]:
    parser = argparse.ArgumentParser(
        prog="llamaswap",
        description="Model-swapping proxy for local LLM servers, and a simulator for its schedulers.",
    )
    parser.add_argument("--version", action="version", version=f"llamaswap {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    return parser, subparsers


def _command_of(argv: Sequence[str]) -> str | None:
    """The sub-command named in ``argv`` (its first word that is not an option)."""
    for word in argv:
        if not word.startswith("-"):
            return word if word in COMMANDS else None
    return None


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser for ``argv``: the named command's real parser, every other one as a stub.

    With ``argv=None`` every command module is imported (the full parser, for tests and docs).
    """
    parser, subparsers = _top_parser()
    wanted = None if argv is None else _command_of(argv)
    modules = dict.fromkeys(
        c.module for name, c in COMMANDS.items() if argv is None or name == wanted
    )
    for module_name in modules:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name is None or not module_name.startswith(exc.name):
                raise
            continue  # that part of the product is not installed in this build
        module.register(subparsers)
    for name, command in COMMANDS.items():
        if name not in subparsers.choices:
            subparsers.add_parser(name, help=command.help)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except BrokenPipeError:
        # The reader went away (``| head``): stop quietly, and keep Python from complaining again
        # when it flushes stdout at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except KeyboardInterrupt:
        print("llamaswap: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # deliberately total: the user gets one line, not a traceback
        if os.environ.get("LLAMASWAP_TRACEBACK"):
            raise
        print(
            f"llamaswap {args.command}: {INTERNAL_ERROR} ({type(exc).__name__}: {exc}); "
            "set LLAMASWAP_TRACEBACK=1 to see where",
            file=sys.stderr,
        )
        return 2


if __name__ == "__main__":
    sys.exit(main())
