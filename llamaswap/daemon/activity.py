"""The activity store: every finished model request as one SQLite row (stdlib ``sqlite3``).

Written off the request path: :meth:`ActivityStore.add` assigns the row id and appends the row to
a batch; every :data:`WRITE_EVERY` seconds a writer thread inserts the batch in one transaction and, in the same transaction,
deletes past the row bound (and, every minute, past the age bound), so the file stays bounded
however long the daemon runs.
The queue itself is bounded too (:data:`MAX_PENDING`): if the disk stalls, rows are dropped and
counted rather than memory growing. A file path survives a restart (ids continue where they
stopped); without one the store lives in memory.

Captures (request and response bodies, size-capped, off by default) live in their own table and
are pruned with their rows. Keys are never stored: only the configured key's name.
"""

from __future__ import annotations

import csv
import functools
import io
import math
import sqlite3
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

COLUMNS: tuple[tuple[str, str], ...] = (
    ("ts", "REAL"),
    ("model", "TEXT"),
    ("scheduler", "TEXT"),
    ("method", "TEXT"),
    ("path", "TEXT"),
    ("status", "INTEGER"),
    ("stream", "INTEGER"),
    ("queue_wait", "REAL"),
    ("load_wait", "REAL"),
    ("ttfb", "REAL"),
    ("total", "REAL"),
    ("prompt_tokens", "INTEGER"),
    ("completion_tokens", "INTEGER"),
    ("tokens_per_s", "REAL"),
    ("bytes", "INTEGER"),
    ("key_name", "TEXT"),
    ("request_id", "TEXT"),
)
NAMES = tuple(name for name, _ in COLUMNS)
INSERT_ROWS = 256
"""Most rows per INSERT statement (x 18 parameters, under SQLite's 32766). Chunks are powers of
two: sqlite3 caches a prepared statement per distinct SQL text, and one per batch length grew the
daemon by ~15 MB a minute under load."""
_ROW_MARKS = "(" + ", ".join("?" * (len(NAMES) + 1)) + ")"


@functools.lru_cache(maxsize=16)
def _insert_sql(rows: int) -> str:
    return f"INSERT OR REPLACE INTO activity (id, {', '.join(NAMES)}) VALUES " + ", ".join(
        [_ROW_MARKS] * rows
    )


MAX_PENDING = 10_000
WRITE_EVERY = 0.25
"""Seconds between the writer's batches (rows wait at most this long in memory)."""
AGE_PRUNE_EVERY = 60.0
"""Seconds between age prunes (the row bound is enforced on every batch)."""
MAX_LIMIT = 10_000
HISTOGRAM_EDGES = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
"""Seconds; the latency histogram's bucket upper bounds (the last bucket is open)."""


class ActivityStoreError(Exception):
    """The store's file cannot be opened or is not an activity store: one line for the operator."""


_Row = tuple[int, Sequence[Any], Sequence[Any] | None]
_Item = _Row | threading.Event | None


@dataclass(frozen=True)
class ActivitySettings:
    path: str | None = None
    """SQLite file; None keeps the store in memory (lost on restart)."""
    max_rows: int = 100_000
    max_age: float = 7 * 86400.0
    """Seconds a row is kept."""
    capture_bytes: int = 0
    """Per body (request and response); 0 turns captures off."""
    enabled: bool = True
    """False: no store at all (``--activity-db none``): the Activity page stays empty."""


@dataclass(frozen=True)
class Filters:
    """``GET /api/activity`` query parameters, validated."""

    model: str | None = None
    status: str | None = None
    """An exact code (``404``) or a class (``4xx``)."""
    key: str | None = None
    since: float | None = None
    until: float | None = None
    before: int | None = None
    """Only rows with a smaller id (paging back through history)."""
    limit: int = 200

    @classmethod
    def parse(cls, query: Mapping[str, str]) -> Filters:
        """Raises ValueError naming the bad parameter."""

        def number(name: str) -> float | None:
            text = query.get(name)
            if text in (None, ""):
                return None
            try:
                value = float(text)
            except ValueError:
                raise ValueError(f"{name}: expected a number, got {text!r}") from None
            if not math.isfinite(value):
                raise ValueError(f"{name}: expected a finite number, got {text!r}")
            return value

        status = query.get("status") or None
        if status is not None and not (
            (len(status) == 3 and status.isdigit())
            or (len(status) == 3 and status[0] in "12345" and status[1:].lower() == "xx")
        ):
            raise ValueError(
                f"status: expected a code like 404 or a class like 4xx, got {status!r}"
            )
        limit = number("limit")
        before = number("before")
        if limit is not None and not 1 <= limit <= MAX_LIMIT:
            raise ValueError(f"limit: expected 1..{MAX_LIMIT}, got {query.get('limit')!r}")
        return cls(
            model=query.get("model") or None,
            status=status,
            key=query.get("key") or None,
            since=number("since"),
            until=number("until"),
            before=None if before is None else int(before),
            limit=200 if limit is None else int(limit),
        )

    def where(self, with_before: bool = True) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        args: list[Any] = []
        if self.model is not None:
            clauses.append("model = ?")
            args.append(self.model)
        if self.status is not None:
            if self.status.lower().endswith("xx"):
                low = int(self.status[0]) * 100
                clauses.append("status >= ? AND status < ?")
                args += [low, low + 100]
            else:
                clauses.append("status = ?")
                args.append(int(self.status))
        if self.key is not None:
            clauses.append("key_name = ?")
            args.append(self.key)
        if self.since is not None:
            clauses.append("ts >= ?")
            args.append(self.since)
        if self.until is not None:
            clauses.append("ts < ?")
            args.append(self.until)
        if with_before and self.before is not None:
            clauses.append("id < ?")
            args.append(self.before)
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", args


class ActivityStore:
    def __init__(self, settings: ActivitySettings | None = None) -> None:
        self.settings = settings or ActivitySettings()
        try:
            self._open()
        except (OSError, sqlite3.Error) as exc:
            raise ActivityStoreError(
                f"activity store {self.settings.path or ':memory:'}: {exc}"
            ) from None

    def _open(self) -> None:
        target = self.settings.path
        if target is not None:
            Path(target).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(target or ":memory:", check_same_thread=False)
        self._lock = threading.Lock()
        with self._lock:
            if target is not None:
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA busy_timeout=5000")
            columns = ", ".join(f"{name} {kind}" for name, kind in COLUMNS)
            self._db.execute(
                f"CREATE TABLE IF NOT EXISTS activity (id INTEGER PRIMARY KEY, {columns})"
            )
            self._db.execute("CREATE INDEX IF NOT EXISTS activity_ts ON activity (ts)")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS captures (id INTEGER PRIMARY KEY, "
                "req_path TEXT, req_headers TEXT, req_body BLOB, resp_headers TEXT, resp_body BLOB)"
            )
            self._db.commit()
            (last,) = self._db.execute("SELECT COALESCE(MAX(id), 0) FROM activity").fetchone()
        self._next_id = int(last) + 1
        self.dropped = 0
        self._batch: list[_Item] = []
        self._batch_lock = threading.Lock()
        self._wake = threading.Event()
        self._count = self.count()
        self._pruned_at = 0.0
        self._thread = threading.Thread(target=self._drain, name="llamaswap-activity", daemon=True)
        self._thread.start()
        with self._lock:
            self._prune(time.time())

    # ------------------------------------------------------------------ writing (loop thread)

    def add(self, row: Sequence[Any], capture: Sequence[Any] | None = None) -> int | None:
        """Queue one row (values in :data:`NAMES` order); its id, or None if dropped.

        Never wakes the writer for one row: waking a thread per request costs the loop a GIL
        hand-off (measured: ~75 us a request, more than the rest of the row's cost together).
        """
        with self._batch_lock:
            if len(self._batch) >= MAX_PENDING:
                self.dropped += 1
                return None
            row_id = self._next_id
            self._next_id += 1
            self._batch.append((row_id, row, capture))
        return row_id

    def _send(self, item: _Item) -> None:
        with self._batch_lock:
            self._batch.append(item)
        self._wake.set()

    def flush(self, timeout: float = 30.0) -> None:
        """Block until every row queued so far is written (tests; call it off the loop)."""
        done = threading.Event()
        self._send(done)
        done.wait(timeout)

    def close(self) -> None:
        """Write what is queued, then close (blocking: call it off the loop)."""
        self._send(None)
        self._thread.join(timeout=30)
        with self._lock:
            self._db.close()

    # ------------------------------------------------------------------ writer thread

    def _drain(self) -> None:
        while True:
            self._wake.wait(WRITE_EVERY)
            self._wake.clear()
            with self._batch_lock:
                batch, self._batch = self._batch, []
            rows = [b for b in batch if isinstance(b, tuple)]
            if rows:
                self._insert(rows)
            for item in batch:
                if isinstance(item, threading.Event):
                    item.set()
            if None in batch:
                return

    def _insert(self, rows: list[_Row]) -> None:
        """Multi-row INSERTs of up to :data:`INSERT_ROWS` rows, not ``executemany``.

        ``executemany`` releases and retakes the GIL around every row's ``sqlite3_step``, and each
        retake waits on the event loop's thread: measured, that cost the proxy ~65 us of CPU per
        request under load. One statement per chunk hands the GIL over once per chunk.
        """
        with self._lock:
            start = 0
            while start < len(rows):
                size = INSERT_ROWS  # power-of-two chunks: at most 9 distinct statements cached
                while size > len(rows) - start:
                    size //= 2
                chunk = rows[start : start + size]
                start += size
                self._db.execute(
                    _insert_sql(size),
                    [value for row_id, values, _ in chunk for value in (row_id, *values)],
                )
            captures = [(row_id, *c) for row_id, _, c in rows if c is not None]
            if captures:
                self._db.executemany(
                    "INSERT OR REPLACE INTO captures VALUES (?, ?, ?, ?, ?, ?)", captures
                )
            self._count += len(rows)
            self._prune(time.time(), rows[-1][0])
            self._db.commit()

    def _prune(self, now: float, newest: int | None = None) -> None:
        """Delete past the bounds (row count, age) and orphaned captures; caller holds the lock.

        Ids are dense (one per row, in order), so the row bound is one primary-key range delete:
        no scan, however large the table.
        """
        s = self.settings
        db = self._db
        if now - self._pruned_at > AGE_PRUNE_EVERY:
            self._pruned_at = now
            self._count -= db.execute(
                "DELETE FROM activity WHERE ts < ?", (now - s.max_age,)
            ).rowcount
        if self._count > s.max_rows:
            if newest is None:
                (newest,) = db.execute("SELECT COALESCE(MAX(id), 0) FROM activity").fetchone()
            gone = db.execute("DELETE FROM activity WHERE id <= ?", (newest - s.max_rows,)).rowcount
            self._count -= gone
            if self._count > s.max_rows:  # ids with gaps (an age prune): count precisely
                db.execute(
                    "DELETE FROM activity WHERE id <= "
                    "(SELECT id FROM activity ORDER BY id DESC LIMIT 1 OFFSET ?)",
                    (s.max_rows,),
                )
                (self._count,) = db.execute("SELECT COUNT(*) FROM activity").fetchone()
        db.execute("DELETE FROM captures WHERE id < (SELECT COALESCE(MIN(id), 0) FROM activity)")
        db.commit()

    # ------------------------------------------------------------------ reading (executor thread)

    def count(self) -> int:
        with self._lock:
            (n,) = self._db.execute("SELECT COUNT(*) FROM activity").fetchone()
        return int(n)

    def rows(self, filters: Filters) -> list[dict[str, Any]]:
        where, args = filters.where()
        sql = f"SELECT id, {', '.join(NAMES)} FROM activity{where} ORDER BY id DESC LIMIT ?"
        with self._lock:
            cursor = self._db.execute(sql, [*args, filters.limit])
            names = [d[0] for d in cursor.description]
            return [dict(zip(names, r, strict=True)) for r in cursor.fetchall()]

    def stats(self, filters: Filters) -> dict[str, Any]:
        """Totals, token stats and the latency histogram over every row the filters match."""
        where, args = filters.where(with_before=False)
        with self._lock:
            (n, prompt, completion, tps, errors) = self._db.execute(
                "SELECT COUNT(*), SUM(prompt_tokens), SUM(completion_tokens), "
                "AVG(tokens_per_s), SUM(status >= 400) FROM activity" + where,
                args,
            ).fetchone()
            totals = [
                t
                for (t,) in self._db.execute(
                    "SELECT total FROM activity"
                    + where
                    + (" AND" if where else " WHERE")
                    + " status < 400 AND total IS NOT NULL ORDER BY total",
                    args,
                )
            ]
        counts = [0] * (len(HISTOGRAM_EDGES) + 1)
        edge = 0
        for value in totals:  # sorted: one pass
            while edge < len(HISTOGRAM_EDGES) and value > HISTOGRAM_EDGES[edge]:
                edge += 1
            counts[edge] += 1
        return {
            "requests": n,
            "errors": errors or 0,
            "prompt_tokens": prompt or 0,
            "completion_tokens": completion or 0,
            "mean_tokens_per_s": None if tps is None else round(tps, 2),
            "latency_p50": _quantile(totals, 0.5),
            "latency_p95": _quantile(totals, 0.95),
            "histogram": {"edges": list(HISTOGRAM_EDGES), "counts": counts},
        }

    def capture(self, row_id: int) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM captures WHERE id = ?", (row_id,)).fetchone()
        if row is None:
            return None
        return dict(
            zip(
                ("id", "req_path", "req_headers", "req_body", "resp_headers", "resp_body"),
                row,
                strict=True,
            )
        )


def _quantile(sorted_values: Sequence[float], q: float) -> float | None:
    if not sorted_values:
        return None
    return round(sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))], 6)


def values(row: Mapping[str, Any]) -> tuple[Any, ...]:
    """A row given by column name, in :data:`NAMES` order (what :meth:`ActivityStore.add` takes)."""
    return tuple(row.get(name) for name in NAMES)


def to_csv(rows: Iterable[Mapping[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(("id", *NAMES))
    for row in rows:
        writer.writerow([row.get("id"), *(row.get(n) for n in NAMES)])
    return out.getvalue()
