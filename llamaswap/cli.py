"""``llamaswap`` command line: one entry point, a sub-command per job.

Each sub-command lives in the module that does the work; this file only wires them together.
A module provides ``register(subparsers)`` which adds its parser and sets ``func``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from llamaswap import __version__

COMMAND_MODULES = (
    "llamaswap.daemon.cli",  # serve
    "llamaswap.daemon.fake_upstream",  # fake-upstream
    "llamaswap.config.cli",  # check-config
    "sim.cli",  # sim, trace
    "llamaswap.fidelity.cli",  # fidelity
    "sim.sweep.cli",  # sweep (imports Dask only when it runs)
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="llamaswap",
        description="Model-swapping proxy for local LLM servers, and a simulator for its schedulers.",
    )
    parser.add_argument("--version", action="version", version=f"llamaswap {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name is None or not name.startswith(exc.name):
                raise
            continue  # that part of the product is not installed in this build
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    result = args.func(args)
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
