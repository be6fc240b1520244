"""``llamaswap serve``: run the daemon until SIGINT/SIGTERM; SIGHUP reloads the config."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import signal
import sys
from pathlib import Path
from typing import Any

from llamaswap import __version__
from llamaswap.config import Config, ConfigError, load_config
from llamaswap.daemon.access_log import FORMATS, AccessLog
from llamaswap.daemon.activity import ActivitySettings, ActivityStoreError
from llamaswap.daemon.server import DEFAULT_DRAIN_TIMEOUT, DEFAULT_MAX_BODY, Daemon

DEFAULT_LISTEN = "127.0.0.1:8080"


def default_activity_db() -> str:
    """``$XDG_STATE_HOME/llamaswap/activity.sqlite`` (``~/.local/state`` when unset)."""
    import os

    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return str(Path(base) / "llamaswap" / "activity.sqlite")


def _activity(args: argparse.Namespace) -> ActivitySettings:
    path = default_activity_db() if args.activity_db is None else args.activity_db
    return ActivitySettings(
        enabled=path != "none",
        path=None if path in ("", ":memory:", "none") else path,
        max_rows=args.activity_max_rows,
        max_age=args.activity_max_days * 86400.0,
        capture_bytes=int(args.capture_kb * 1024),
    )


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT``, ``:PORT`` (all interfaces) or ``[v6]:PORT``."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise argparse.ArgumentTypeError(f"--listen: expected HOST:PORT, got {text!r}")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port_text)


def _configure_logging() -> None:
    logger = logging.getLogger("llamaswap")
    if not any(
        isinstance(h, logging.StreamHandler) and not hasattr(h, "monitor") for h in logger.handlers
    ):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s [%(levelname)s] %(message)s"))
        logger.addHandler(handler)


def _loader(args: argparse.Namespace) -> Config:
    config = load_config(args.config, args.config_dir)
    if args.health_check_timeout is not None:
        config = dataclasses.replace(config, health_check_timeout=args.health_check_timeout)
    return config


def _recorder(args: argparse.Namespace, config: Config) -> Any:
    """``--record FILE`` or the config's ``record.path``: the JSONL event log (routing config in
    its meta record). The flag wins over the config key."""
    path = args.record or config.record_path
    if not path:
        return None
    import time

    from llamaswap.record import EventLog, Recorder
    from llamaswap.record.meta import spec_meta

    max_bytes = (
        int(args.record_max_mb * 1024 * 1024)
        if args.record_max_mb is not None
        else config.record_max_bytes
    )
    log = EventLog(path, max_bytes=max_bytes)
    meta = {
        "host": "daemon",
        "version": __version__,
        "started_unix": round(time.time(), 3),
        "config": [str(p) for p in config.sources],
        **spec_meta(config.routing_spec()),
    }
    return Recorder(log, asyncio.get_running_loop().time, meta)


async def _serve(args: argparse.Namespace, config: Config) -> int:
    host, port = args.listen
    try:
        recorder = _recorder(args, config)
    except OSError as exc:
        print(f"llamaswap: cannot open the event log: {exc}", file=sys.stderr)
        return 1
    daemon = Daemon(
        config,
        loader=lambda: _loader(args),
        max_body=args.max_body_mb * 1024 * 1024,
        drain_timeout=args.drain_timeout,
        recorder=recorder,
        access_log=AccessLog(args.access_log),
        activity=_activity(args),
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    reloads: set[asyncio.Task[bool]] = set()

    def on_hup() -> None:
        task = loop.create_task(daemon.reload())
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    loop.add_signal_handler(signal.SIGHUP, on_hup)
    try:
        await daemon.start(host, port)
    except ActivityStoreError as exc:
        print(f"llamaswap: --activity-db: {exc}", file=sys.stderr)
        await daemon.stop()
        return 1
    except OSError as exc:
        print(f"llamaswap: cannot listen on {host}:{port}: {exc}", file=sys.stderr)
        await daemon.stop()
        if recorder is not None:
            recorder.close()
        return 1
    if args.watch_config:
        daemon.watch(
            [Path(p) for p in config.sources if Path(p).is_file()],
            Path(args.config_dir) if args.config_dir else None,
        )
    await stop.wait()
    await daemon.stop()
    if recorder is not None:
        recorder.close()
    return 0


def run(args: argparse.Namespace) -> int:
    if args.version:
        print(f"llamaswap {__version__}")
        return 0
    if not args.config and not args.config_dir:
        print("llamaswap serve: --config FILE or --config-dir DIR is required", file=sys.stderr)
        return 1
    try:
        config = _loader(args)
    except ConfigError as exc:
        for error in exc.errors:  # every problem, each on its own line
            print(f"llamaswap: invalid config: {error}", file=sys.stderr)
        return 1
    _configure_logging()
    if args.loop != "asyncio":
        try:
            import uvloop
        except ImportError:
            if args.loop == "uvloop":
                print("llamaswap: --loop uvloop: uvloop is not installed", file=sys.stderr)
                return 1
        else:
            return int(uvloop.run(_serve(args, config)))
    return asyncio.run(_serve(args, config))


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
    return value


def _non_negative(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="run the model-swapping proxy",
        description="Serve an OpenAI-compatible endpoint that starts and swaps upstream model servers.",
    )
    parser.add_argument("--config", help="llama-swap style config.yaml")
    parser.add_argument("--config-dir", help="directory of *.yml/*.yaml merged after --config")
    parser.add_argument(
        "--listen",
        type=parse_listen,
        default=parse_listen(DEFAULT_LISTEN),
        help=f"HOST:PORT to listen on (default {DEFAULT_LISTEN}; use 0.0.0.0:PORT to expose it)",
    )
    parser.add_argument(
        "--watch-config", action="store_true", help="reload when the config changes"
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    parser.add_argument(
        "--max-body-mb",
        type=int,
        default=DEFAULT_MAX_BODY // (1024 * 1024),
        help="request body limit (413 above)",
    )
    parser.add_argument(
        "--drain-timeout",
        type=_positive,
        default=DEFAULT_DRAIN_TIMEOUT,
        help="seconds to let in-flight requests finish on shutdown",
    )
    parser.add_argument(
        "--health-check-timeout",
        type=_positive,
        default=None,
        help="override healthCheckTimeout, below llama-swap's 15 s floor too (for tests)",
    )
    parser.add_argument(
        "--loop",
        choices=("auto", "uvloop", "asyncio"),
        default="auto",
        help="event loop: uvloop when installed (auto), or the standard asyncio loop",
    )
    parser.add_argument(
        "--record",
        metavar="FILE",
        help="append a JSONL event log (arrivals, grants, swaps, completions; no bodies or keys) "
        "for 'llamaswap trace from-log' and 'llamaswap sim --from-log'",
    )
    parser.add_argument(
        "--record-max-mb",
        type=_positive,
        default=None,
        help="rotate the event log past this size (3 backups kept; default: the config's "
        "record.maxBytes, else 256)",
    )
    parser.add_argument(
        "--access-log",
        choices=FORMATS,
        default="text",
        help="one line per request on stdout: text (default), json, or off",
    )
    parser.add_argument(
        "--activity-db",
        metavar="FILE",
        default=None,
        help="SQLite activity store behind the UI's Activity page (default: "
        "$XDG_STATE_HOME/llamaswap/activity.sqlite; '' keeps it in memory, 'none' turns it off)",
    )
    parser.add_argument(
        "--activity-max-rows",
        type=_positive_int,
        default=100_000,
        help="activity rows kept (oldest deleted first; default 100000)",
    )
    parser.add_argument(
        "--activity-max-days",
        type=_positive,
        default=7.0,
        help="days an activity row is kept (default 7)",
    )
    parser.add_argument(
        "--capture-kb",
        type=_non_negative,
        default=0.0,
        help="keep request and response bodies up to this size with each activity row "
        "(GET /api/captures/ID; default 0 = off: bodies are never stored)",
    )
    parser.set_defaults(func=run)
