"""The canonical trace: columnar request arrivals, read/written as CSV or JSONL.

Columns: ``arrival`` (seconds from start), ``model``, optional ``prompt_tokens``, ``output_tokens``,
``service_time``, ``cancel_after``, ``id``. Stored as numpy columns (not one object per request) so a
million-request trace costs tens of MB, and transforms are vectorised.
Missing integers are -1, missing floats NaN.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


class TraceError(ValueError):
    """A trace file or trace spec is malformed; the message names the file/row/key."""


OPTIONAL_COLUMNS = ("prompt_tokens", "output_tokens", "service_time", "cancel_after")


@dataclass
class Trace:
    """Requests sorted by arrival. ``model`` holds indices into ``models``."""

    arrival: np.ndarray
    model: np.ndarray
    models: list[str]
    prompt_tokens: np.ndarray
    output_tokens: np.ndarray
    service_time: np.ndarray
    cancel_after: np.ndarray
    ids: list[str] | None = None
    source: str = ""
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.arrival)

    @classmethod
    def build(
        cls,
        arrival: Sequence[float] | np.ndarray,
        model_names: Sequence[str] | np.ndarray,
        *,
        prompt_tokens: Any = None,
        output_tokens: Any = None,
        service_time: Any = None,
        cancel_after: Any = None,
        ids: Sequence[str] | None = None,
        source: str = "",
    ) -> Trace:
        """Build from per-request columns (model given by name); sorts by arrival, stably."""
        arr = np.asarray(arrival, dtype=np.float64)
        n = len(arr)
        names = np.asarray(model_names, dtype=object) if n else np.asarray([], dtype=object)
        if len(names) != n:
            raise TraceError(f"{source or 'trace'}: {len(names)} model names for {n} arrivals")
        models = sorted({str(m) for m in names})
        index = {m: i for i, m in enumerate(models)}
        model = np.fromiter((index[str(m)] for m in names), dtype=np.int32, count=n)
        trace = cls(
            arrival=arr,
            model=model,
            models=models,
            prompt_tokens=_int_column(prompt_tokens, n),
            output_tokens=_int_column(output_tokens, n),
            service_time=_float_column(service_time, n),
            cancel_after=_float_column(cancel_after, n),
            ids=list(ids) if ids is not None else None,
            source=source,
        )
        return trace.sorted()

    @classmethod
    def empty(cls, models: Sequence[str] = ()) -> Trace:
        return cls.build([], [], source="empty").with_models(models)

    def with_models(self, models: Sequence[str]) -> Trace:
        """Re-index onto ``models`` (a superset of the current names), keeping order of requests."""
        index = {m: i for i, m in enumerate(models)}
        missing = [m for m in self.models if m not in index]
        if missing:
            raise TraceError(f"models {missing} are not in the target model list")
        mapping = np.array([index[m] for m in self.models], dtype=np.int32)
        model = mapping[self.model] if len(self.model) else self.model
        return self.replace(model=model, models=list(models))

    def replace(self, **changes: Any) -> Trace:
        data: dict[str, Any] = {
            "arrival": self.arrival,
            "model": self.model,
            "models": self.models,
            "prompt_tokens": self.prompt_tokens,
            "output_tokens": self.output_tokens,
            "service_time": self.service_time,
            "cancel_after": self.cancel_after,
            "ids": self.ids,
            "source": self.source,
            "notes": list(self.notes),
        }
        data.update(changes)
        return Trace(**data)

    def take(self, index: np.ndarray) -> Trace:
        """Rows selected by an index or boolean mask (order as given)."""
        ids = None
        if self.ids is not None:
            positions = np.arange(len(self))[index]
            ids = [self.ids[i] for i in positions.tolist()]
        return self.replace(
            arrival=self.arrival[index],
            model=self.model[index],
            prompt_tokens=self.prompt_tokens[index],
            output_tokens=self.output_tokens[index],
            service_time=self.service_time[index],
            cancel_after=self.cancel_after[index],
            ids=ids,
        )

    def sorted(self) -> Trace:
        if len(self) < 2 or bool(np.all(np.diff(self.arrival) >= 0)):
            return self
        return self.take(np.argsort(self.arrival, kind="stable"))

    def drop_unused_models(self) -> Trace:
        used = np.unique(self.model)
        if len(used) == len(self.models):
            return self
        remap = np.full(len(self.models), -1, dtype=np.int32)
        remap[used] = np.arange(len(used), dtype=np.int32)
        return self.replace(model=remap[self.model], models=[self.models[i] for i in used.tolist()])

    def model_names(self) -> list[str]:
        return [self.models[i] for i in self.model.tolist()]

    def request_ids(self) -> list[str]:
        return self.ids if self.ids is not None else [str(i) for i in range(len(self))]

    def has(self, column: str) -> bool:
        values = getattr(self, column)
        if values.dtype.kind == "f":
            return bool(np.any(~np.isnan(values)))
        return bool(np.any(values >= 0))


def _int_column(values: Any, n: int) -> np.ndarray:
    if values is None:
        return np.full(n, -1, dtype=np.int64)
    out = np.asarray(values, dtype=np.float64)
    if len(out) != n:
        raise TraceError(f"column has {len(out)} values for {n} requests")
    out = np.where(np.isnan(out), -1, out)
    return out.astype(np.int64)


def _float_column(values: Any, n: int) -> np.ndarray:
    if values is None:
        return np.full(n, np.nan, dtype=np.float64)
    out = np.asarray(values, dtype=np.float64)
    if len(out) != n:
        raise TraceError(f"column has {len(out)} values for {n} requests")
    return out


# ---------------------------------------------------------------------- canonical files


def read_trace(path: str | Path) -> Trace:
    """Read a canonical trace (``.csv`` or ``.jsonl``)."""
    path = Path(path)
    if not path.exists():
        raise TraceError(f"{path}: no such trace file")
    if path.is_dir():
        raise TraceError(f"{path}: is a directory, not a trace file" + _import_hint(path))
    if path.suffix in (".jsonl", ".ndjson"):
        rows: Iterable[dict[str, Any]] = _jsonl_rows(path)
    else:
        rows = _csv_rows(path)
    try:
        return _from_rows(rows, str(path))
    except UnicodeDecodeError:
        raise TraceError(f"{path}: not a text file" + _import_hint(path)) from None
    except TraceError as exc:
        raise TraceError(str(exc) + _import_hint(path)) from None


def _import_hint(path: Path) -> str:
    """When the file is a raw public trace, say how to convert it (it is not canonical)."""
    from sim.importers import guess_format

    fmt = guess_format(path)
    if fmt is None:
        return ""
    return (
        f"; it looks like a raw {fmt} trace: convert it first with "
        f"'llamaswap trace import --format {fmt} {path} -o TRACE.csv'"
    )


def _csv_rows(path: Path) -> Iterable[dict[str, Any]]:
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        fields = reader.fieldnames or []
        for needed in ("arrival", "model"):
            if needed not in fields:
                raise TraceError(f"{path}: missing column {needed!r} (header: {fields})")
        yield from reader


def _jsonl_rows(path: Path) -> Iterable[dict[str, Any]]:
    with path.open() as handle:
        for lineno, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise TraceError(f"{path}:{lineno}: not JSON: {exc.msg}") from None
            if not isinstance(row, dict):
                raise TraceError(f"{path}:{lineno}: expected a JSON object per line")
            yield row


def _from_rows(rows: Iterable[dict[str, Any]], source: str) -> Trace:
    arrival: list[float] = []
    models: list[str] = []
    optional: dict[str, list[float]] = {c: [] for c in OPTIONAL_COLUMNS}
    ids: list[str] = []
    any_id = False
    for n, row in enumerate(rows, 1):
        where = f"{source}: row {n}"
        if row.get("model") in (None, ""):
            raise TraceError(f"{where}: 'model' is empty")
        arrival.append(_num(row.get("arrival"), f"{where}: 'arrival'"))
        models.append(str(row["model"]))
        for column in OPTIONAL_COLUMNS:
            value = row.get(column)
            optional[column].append(
                math.nan if value in (None, "") else _num(value, f"{where}: {column!r}")
            )
        rid = row.get("id")
        any_id = any_id or rid not in (None, "")
        ids.append("" if rid is None else str(rid))
    return Trace.build(
        arrival,
        models,
        ids=ids if any_id else None,
        source=source,
        **{c: optional[c] for c in OPTIONAL_COLUMNS},
    )


def _num(value: Any, where: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise TraceError(f"{where} is not a number: {value!r}") from None
    if math.isnan(number) or number < 0:
        raise TraceError(f"{where} must be a non-negative number, got {value!r}")
    return number


def write_trace(trace: Trace, path: str | Path) -> None:
    """Write canonical CSV or JSONL (by suffix); optional columns only when present."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    present = [c for c in OPTIONAL_COLUMNS if trace.has(c)]
    names = trace.models
    columns: list[list[Any]] = [trace.arrival.tolist(), trace.model.tolist()]
    columns += [getattr(trace, c).tolist() for c in present]
    ids = trace.ids
    header = ["arrival", "model", *present] + (["id"] if ids is not None else [])
    jsonl = path.suffix in (".jsonl", ".ndjson")
    with path.open("w", newline="") as handle:
        if not jsonl:
            handle.write(",".join(header) + "\n")
        for i, row in enumerate(zip(*columns, strict=True)):
            values: list[Any] = [round(row[0], 6), names[row[1]]]
            for column, value in zip(present, row[2:], strict=True):
                if column in ("prompt_tokens", "output_tokens"):
                    values.append(None if value < 0 else int(value))
                else:
                    values.append(None if math.isnan(value) else round(value, 6))
            if ids is not None:
                values.append(ids[i])
            if jsonl:
                record = {k: v for k, v in zip(header, values, strict=True) if v is not None}
                handle.write(json.dumps(record) + "\n")
            else:
                handle.write(",".join("" if v is None else str(v) for v in values) + "\n")


# ---------------------------------------------------------------------- statistics


def trace_stats(trace: Trace) -> dict[str, Any]:
    """Request count, models, rate, model-switch ratio, burstiness (CV of inter-arrivals)."""
    n = len(trace)
    duration = float(trace.arrival[-1] - trace.arrival[0]) if n > 1 else 0.0
    counts = np.bincount(trace.model, minlength=len(trace.models)) if n else np.zeros(0, int)
    per_model = {m: int(c) for m, c in zip(trace.models, counts.tolist(), strict=True) if c}
    switches = int(np.count_nonzero(np.diff(trace.model))) if n > 1 else 0
    return {
        "requests": n,
        "models": len(per_model),
        "requests_per_model": dict(sorted(per_model.items(), key=lambda kv: (-kv[1], kv[0]))),
        "duration": round(duration, 6),
        "rate": round(n / duration, 6) if duration > 0 else 0.0,
        "switch_ratio": round(switches / (n - 1), 6) if n > 1 else 0.0,
        "burstiness_cv": round(_cv(np.diff(trace.arrival)), 6) if n > 2 else 0.0,
        "has_service_time": trace.has("service_time"),
        "has_tokens": trace.has("prompt_tokens") or trace.has("output_tokens"),
        "has_cancel_after": trace.has("cancel_after"),
    }


def _cv(values: np.ndarray) -> float:
    mean = float(values.mean()) if len(values) else 0.0
    return float(values.std() / mean) if mean > 0 else 0.0
