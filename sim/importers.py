"""Importers for the real public traces in ``../shared/traces/raw/`` (read in place, never copied).

Each returns a canonical :class:`~sim.trace.Trace` with arrivals shifted to start at 0. Schemas are
described in each folder's ``ATTRIBUTION.md``.
"""

from __future__ import annotations

import calendar
import csv
import json
import math
import re
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from sim.import_options import OptionError, check_options
from sim.trace import Trace, TraceError, read_trace

FORMATS = ("canonical", "azure", "mooncake", "alibaba", "servegen")


def import_trace(fmt: str, paths: Sequence[str | Path], **options: Any) -> Trace:
    """Dispatch on ``fmt``; ``options`` are the format's keyword arguments."""
    importers: dict[str, Callable[..., Trace]] = {
        "canonical": _canonical,
        "azure": import_azure,
        "mooncake": import_mooncake,
        "alibaba": import_alibaba,
        "servegen": import_servegen,
    }
    if fmt not in importers:
        raise TraceError(f"unknown trace format {fmt!r} (valid: {', '.join(FORMATS)})")
    if not paths:
        raise TraceError(f"format {fmt!r}: no input file given")
    for path in paths:
        if not Path(path).exists():
            raise TraceError(f"{path}: no such file or directory")
    try:
        checked = check_options(fmt, options)
    except OptionError as exc:
        raise TraceError(str(exc)) from None
    return importers[fmt](paths, **checked)


RAW_SIGNATURES: tuple[tuple[str, str], ...] = (
    ("TIMESTAMP,ContextTokens,GeneratedTokens", "azure"),
    ("gmt_create", "alibaba"),
    ('"input_length"', "mooncake"),
)
"""Text in a raw public trace's first line, and the format that imports it."""


def guess_format(path: str | Path) -> str | None:
    """The public format a file looks like (for the hint when it is used as a canonical trace)."""
    try:
        with Path(path).open(errors="replace") as handle:
            first = handle.readline(4096)
    except OSError:
        return None
    for text, fmt in RAW_SIGNATURES:
        if text in first:
            return fmt
    if _CHUNK.search(Path(path).name) or Path(path).is_dir():
        return "servegen"
    return None


def _canonical(paths: Sequence[str | Path]) -> Trace:
    if len(paths) != 1:
        raise TraceError("canonical format takes exactly one file")
    return read_trace(paths[0])


def _shift(arrival: np.ndarray) -> np.ndarray:
    return arrival - arrival.min() if len(arrival) else arrival


# ---------------------------------------------------------------------- Azure LLM 2023

_AZURE_TS = re.compile(r"^(\d{4})-(\d\d)-(\d\d) (\d\d):(\d\d):(\d\d)(?:\.(\d+))?$")


def _azure_time(text: str, where: str) -> float:
    match = _AZURE_TS.match(text.strip())
    if not match:
        raise TraceError(f"{where}: TIMESTAMP {text!r} is not 'YYYY-MM-DD HH:MM:SS.fffffff'")
    y, mo, d, h, mi, s, frac = match.groups()
    whole = calendar.timegm((int(y), int(mo), int(d), int(h), int(mi), int(s), 0, 0, 0))
    return whole + (float("0." + frac) if frac else 0.0)


def import_azure(paths: Sequence[str | Path], models: Sequence[str] | None = None) -> Trace:
    """Each file is one model (named after the file's last ``_`` part, e.g. ``code``, ``conv``).

    Files are superposed on one shared time base (the earliest timestamp of all files).
    """
    if models is not None and len(models) != len(paths):
        raise TraceError(f"azure: {len(models)} model names for {len(paths)} files")
    arrival: list[float] = []
    names: list[str] = []
    prompt: list[int] = []
    output: list[int] = []
    for k, path in enumerate(paths):
        path = Path(path)
        name = models[k] if models is not None else path.stem.rsplit("_", 1)[-1]
        with path.open(newline="") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if header != ["TIMESTAMP", "ContextTokens", "GeneratedTokens"]:
                raise TraceError(
                    f"{path}: expected header TIMESTAMP,ContextTokens,GeneratedTokens, got {header}"
                )
            for lineno, row in enumerate(reader, 2):
                where = f"{path}:{lineno}"
                if len(row) != 3:
                    raise TraceError(f"{where}: expected 3 fields, got {len(row)}")
                arrival.append(_azure_time(row[0], where))
                names.append(name)
                prompt.append(int(row[1]))
                output.append(int(row[2]))
    return Trace.build(
        _shift(np.asarray(arrival)),
        names,
        prompt_tokens=prompt,
        output_tokens=output,
        source="azure:" + ",".join(Path(p).name for p in paths),
    )


# ---------------------------------------------------------------------- Mooncake FAST'25


def import_mooncake(
    paths: Sequence[str | Path], models: int = 1, assign: str = "session", prefix: str = "kimi"
) -> Trace:
    """One model in the original; ``models: N`` spreads it over N models.

    ``assign: session`` keeps requests sharing their first two prefix blocks (a conversation) on
    one model; ``assign: stripe`` sends request i to model i mod N.
    """
    if models < 1:
        raise TraceError(f"mooncake: models must be >= 1, got {models}")
    if assign not in ("session", "stripe"):
        raise TraceError(f"mooncake: assign must be 'session' or 'stripe', got {assign!r}")
    arrival: list[float] = []
    which: list[int] = []
    prompt: list[int] = []
    output: list[int] = []
    for path in paths:
        with Path(path).open() as handle:
            for lineno, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                    arrival.append(float(row["timestamp"]) / 1000.0)
                    prompt.append(int(row["input_length"]))
                    output.append(int(row["output_length"]))
                    blocks = row.get("hash_ids") or [0]
                except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                    raise TraceError(f"{path}:{lineno}: bad Mooncake record ({exc})") from None
                if assign == "stripe":
                    which.append(len(which) % models)
                else:
                    key = int(blocks[0]) * 1_000_003 + int(blocks[1] if len(blocks) > 1 else 0)
                    which.append(key % models)
    names = [f"{prefix}-{i}" if models > 1 else prefix for i in which]
    return Trace.build(
        _shift(np.asarray(arrival)),
        names,
        prompt_tokens=prompt,
        output_tokens=output,
        source="mooncake:" + ",".join(Path(p).name for p in paths),
    )


# ---------------------------------------------------------------------- Alibaba GenTD26


def import_alibaba(paths: Sequence[str | Path], succeeded_only: bool = False) -> Trace:
    """``lora_request_trace.csv``: model = ``checkpoint_model_version_id``, service = exec time."""
    arrival: list[float] = []
    names: list[str] = []
    service: list[float] = []
    for path in paths:
        with Path(path).open(newline="") as handle:
            reader = csv.DictReader(handle)
            needed = ("gmt_create", "exec_time_seconds", "checkpoint_model_version_id")
            missing = [c for c in needed if c not in (reader.fieldnames or [])]
            if missing:
                raise TraceError(f"{path}: missing columns {missing} (is this lora_request_trace?)")
            for lineno, row in enumerate(reader, 2):
                if succeeded_only and row.get("predict_status") != "SUCCEED":
                    continue
                where = f"{path}:{lineno}"
                arrival.append(_azure_time(row["gmt_create"], where))
                names.append(row["checkpoint_model_version_id"] or "unknown")
                try:
                    service.append(float(row["exec_time_seconds"]))
                except ValueError:
                    raise TraceError(
                        f"{where}: exec_time_seconds {row['exec_time_seconds']!r} is not a number"
                    ) from None
    return Trace.build(
        _shift(np.asarray(arrival)),
        names,
        service_time=service,
        source="alibaba:" + ",".join(Path(p).name for p in paths),
    )


# ---------------------------------------------------------------------- ServeGen

_CHUNK = re.compile(r"chunk-(\d+)-trace\.csv$")
WINDOW_SECONDS = 600.0


def import_servegen(
    paths: Sequence[str | Path],
    models: int = 3,
    assign: str = "stripe",
    start: float = 0.0,
    duration: float = 3600.0,
    rate_scale: float = 1.0,
    max_clients: int | None = None,
    seed: int = 0,
    prefix: str = "",
) -> Trace:
    """Synthesise per-request arrivals from ServeGen per-client window parameters.

    ``paths`` are model directories (``.../language/m-large``) or chunk files. Clients (chunk
    files, in chunk-number order) map to models AlpaServe-style: ``stripe`` = client i -> model
    i mod N. Inter-arrivals are drawn from each window's Gamma/Weibull and rescaled to the window's
    rate, as ServeGen's generator does. Only windows overlapping ``[start, start+duration)`` are used.
    """
    if assign != "stripe":
        raise TraceError(f"servegen: only assign: stripe is supported, got {assign!r}")
    if models < 1 or duration <= 0 or rate_scale <= 0:
        raise TraceError("servegen: models >= 1, duration > 0 and rate_scale > 0 are required")
    files: list[Path] = []
    for path in paths:
        path = Path(path)
        chunks = sorted(path.glob("chunk-*-trace.csv")) if path.is_dir() else [path]
        files += sorted(
            chunks, key=lambda p: int(m.group(1)) if (m := _CHUNK.search(p.name)) else 0
        )
    if max_clients is not None:
        files = files[:max_clients]
    if not files:
        raise TraceError(f"servegen: no chunk-*-trace.csv files under {list(map(str, paths))}")
    rng = np.random.default_rng(seed)
    end = start + duration
    arrivals: list[np.ndarray] = []
    which: list[np.ndarray] = []
    for client, path in enumerate(files):
        times = _servegen_client(path, start, end, rate_scale, rng)
        arrivals.append(times)
        which.append(np.full(len(times), client % models, dtype=np.int32))
    arrival = np.concatenate(arrivals) - start if arrivals else np.zeros(0)
    index = np.concatenate(which) if which else np.zeros(0, dtype=np.int32)
    label = prefix or Path(paths[0]).name
    names = np.array([f"{label}-{i}" for i in range(models)], dtype=object)[index]
    return Trace.build(
        arrival, names, source=f"servegen:{label}[{start:g}+{duration:g}s]x{rate_scale:g}"
    )


def _servegen_client(
    path: Path, start: float, end: float, rate_scale: float, rng: np.random.Generator
) -> np.ndarray:
    out: list[np.ndarray] = []
    with path.open(newline="") as handle:
        for lineno, row in enumerate(csv.reader(handle), 1):
            if not row:
                continue
            if len(row) != 6:
                raise TraceError(f"{path}:{lineno}: expected 6 fields, got {len(row)}")
            try:
                w_start, rate = float(row[0]), float(row[1]) * rate_scale
                shape, scale = float(row[4] or 0), float(row[5] or 0)
            except ValueError:
                raise TraceError(f"{path}:{lineno}: non-numeric field in {row}") from None
            w_end = w_start + WINDOW_SECONDS
            if rate <= 0 or w_end <= start or w_start >= end:
                continue
            pattern = row[3]
            draw: Callable[[int], np.ndarray]
            if pattern == "Gamma" and shape > 0 and scale > 0:
                mean = shape * scale
                draw = partial(_gamma, rng, shape, scale)
            elif pattern == "Weibull" and shape > 0 and scale > 0:
                mean = scale * math.gamma(1 + 1 / shape)
                draw = partial(_weibull, rng, shape, scale)
            else:  # unknown or degenerate parameters: Poisson at the window's rate
                mean = 1.0
                draw = partial(_exponential, rng)
            factor = (1.0 / rate) / mean if mean > 0 else 1.0
            expected = int(rate * WINDOW_SECONDS * 1.5) + 16
            gaps = draw(expected) * factor
            times = w_start + np.cumsum(gaps)
            while times[-1] < w_end:
                more = times[-1] + np.cumsum(draw(expected) * factor)
                times = np.concatenate([times, more])
            times = times[times < w_end]
            out.append(times[(times >= start) & (times < end)])
    return np.concatenate(out) if out else np.zeros(0)


def _weibull(rng: np.random.Generator, shape: float, scale: float, k: int) -> np.ndarray:
    return scale * rng.weibull(shape, k)


def _gamma(rng: np.random.Generator, shape: float, scale: float, k: int) -> np.ndarray:
    return rng.gamma(shape, scale, k)


def _exponential(rng: np.random.Generator, k: int) -> np.ndarray:
    return rng.exponential(1.0, k)
