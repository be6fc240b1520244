"""``llamaswap check-config``: validate a config without starting anything.

Operators run it before a reload (or in CI) to see what the daemon would run: argv, ports, groups,
the scheduler, and every warning about ignored keys. ``--strict`` turns warnings into failure.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, TextIO

from llamaswap.config.federation import federation_lines, federation_summary
from llamaswap.config.model import Config, ConfigError


def summary(config: Config) -> dict[str, Any]:
    """A JSON-ready view of the effective config (defaults applied, macros expanded)."""
    group_of = {m: g.name for g in config.groups for m in g.members}
    return {
        "sources": list(config.sources),
        "scheduler": config.scheduler,
        # Parsed settings are also mappings of their plain form: that is what JSON shows.
        "scheduler_settings": {n: dict(v) for n, v in config.scheduler_settings.items()},
        "health_check_timeout": config.health_check_timeout,
        "preload": list(config.preload),
        "groups": [g.as_json() for g in config.groups],
        "models": {
            mid: {
                "cmd": list(m.cmd),
                "cmd_stop": m.cmd_stop,
                "proxy": m.proxy,
                "port": m.port,
                "health_check_url": m.health_check_url,
                "aliases": list(m.aliases),
                "ttl": m.ttl,
                "unload_timeout": m.unload_timeout,
                "concurrency_limit": m.concurrency_limit,
                "group": group_of.get(mid, "(default)"),
            }
            for mid, m in config.models.items()
        },
        **federation_summary(config),
        "warnings": list(config.warnings),
    }


def _print_text(config: Config, out: TextIO) -> None:
    info = summary(config)
    print(
        f"scheduler: {config.scheduler}   healthCheckTimeout: {config.health_check_timeout:g}s",
        file=out,
    )
    for mid, m in info["models"].items():
        ttl = "never" if m["ttl"] == 0 else f"{m['ttl']:g}s"
        print(
            f"model {mid}  [group {m['group']}]  ttl {ttl}  limit {m['concurrency_limit']}",
            file=out,
        )
        print(f"  cmd:   {' '.join(m['cmd']) or '-'}", file=out)
        print(f"  proxy: {m['proxy'] or '-'}", file=out)
        if m["aliases"]:
            print(f"  aliases: {', '.join(m['aliases'])}", file=out)
    for line in federation_lines(config):
        print(line, file=out)
    if config.preload:
        print(f"preload: {', '.join(config.preload)}", file=out)


def run(args: argparse.Namespace) -> int:
    from llamaswap.config import load_config
    from llamaswap.config.advice import advice

    if not args.config and not args.config_dir:
        print(
            "llamaswap check-config: --config FILE or --config-dir DIR is required", file=sys.stderr
        )
        return 2
    try:
        config = load_config(args.config, args.config_dir)
    except ConfigError as exc:
        # Everything at once: each error and each warning on its own line, with its key path.
        for error in exc.errors:
            print(f"invalid config: {error}", file=sys.stderr)
        for warning in exc.warnings:
            print(f"warning: {warning}", file=sys.stderr)
        if len(exc.errors) > 1:
            print(f"{len(exc.errors)} errors", file=sys.stderr)
        return 1
    warnings = [*config.warnings, *advice(config)]
    if args.json:
        info = summary(config)
        info["warnings"] = warnings
        json.dump(info, sys.stdout, indent=2, sort_keys=False)
        print()
    else:
        _print_text(config, sys.stdout)
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if args.strict and warnings:
        print(f"{len(warnings)} warning(s) and --strict given", file=sys.stderr)
        return 2
    return 0


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "check-config",
        help="validate a llama-swap style config and show what would run",
        description="Load and validate the config exactly as 'serve' does, print the effective "
        "models (argv, ports, groups) and every error and warning at once, each with its key "
        "path (also: a cmd whose program is not installed, a batch-aging maxWait below two load "
        "times). Exit 1 if it is invalid, 2 on a usage error or, with --strict, on warnings.",
    )
    parser.add_argument("--config", help="llama-swap style config.yaml")
    parser.add_argument("--config-dir", help="directory of *.yml/*.yaml merged after --config")
    parser.add_argument("--json", action="store_true", help="print the effective config as JSON")
    parser.add_argument("--strict", action="store_true", help="exit 2 when there are warnings")
    parser.set_defaults(func=run)
