"""A size-capped, rotated JSONL event log written off the hot path.

``EventLog.write(record)`` only appends a dict to an in-memory batch; a background thread takes the
whole batch every ``FLUSH_EVERY`` seconds (or as soon as ``BATCH`` records wait), encodes and writes
it, so a slow disk never stalls request handling. Handing over batches rather than single records
matters in CPython: a thread woken per record costs a GIL hand-off and a write syscall each time,
which cut the proxy's throughput by a third in ``bench/fidelity_record_overhead.py``. When the file
exceeds ``max_bytes`` it is rotated to ``<path>.1`` (older backups shift up to ``backups``).
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

LOG_VERSION = 1
BATCH = 512
"""Records that wake the writer thread early."""
FLUSH_EVERY = 0.25
"""Seconds a record may wait in memory before it is written."""
_encode = json.JSONEncoder(separators=(",", ":"), sort_keys=True).encode


class EventLog:
    def __init__(
        self,
        path: str | Path,
        *,
        max_bytes: int = 256 * 1024 * 1024,
        backups: int = 3,
        threaded: bool = True,
    ) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.backups = backups
        self.dropped = 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("a", encoding="utf-8")
        self._size = self._file.tell()
        self._batch: list[Mapping[str, Any]] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None
        if threaded:
            self._thread = threading.Thread(
                target=self._drain, name="llamaswap-record", daemon=True
            )
            self._thread.start()

    def write(self, record: Mapping[str, Any]) -> None:
        if self._thread is None:
            self._write_line(record)
            return
        with self._lock:
            self._batch.append(record)
            full = len(self._batch) >= BATCH
        if full:
            self._wake.set()

    def flush(self) -> None:
        """Make what was written so far readable by another process (the UI's what-if replay)."""
        if self._thread is None:
            if not self._file.closed:
                self._file.flush()
        else:
            self._wake.set()  # the writer thread writes and flushes its batch now

    def close(self) -> None:
        if self._thread is not None:
            self._stopping = True
            self._wake.set()
            self._thread.join(timeout=10)
            self._thread = None
        if not self._file.closed:
            self._write_batch(self._take())
            self._file.flush()
            self._file.close()

    def __enter__(self) -> EventLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _take(self) -> list[Mapping[str, Any]]:
        with self._lock:
            batch, self._batch = self._batch, []
        return batch

    def _drain(self) -> None:
        while not self._stopping:
            self._wake.wait(FLUSH_EVERY)
            self._wake.clear()
            batch = self._take()
            if batch:
                self._write_batch(batch)
                with contextlib.suppress(OSError):
                    self._file.flush()

    def _write_batch(self, batch: list[Mapping[str, Any]]) -> None:
        for record in batch:
            try:
                self._write_line(record)
            except OSError:
                self.dropped += 1

    def _write_line(self, record: Mapping[str, Any]) -> None:
        line = _encode(record) + "\n"
        if self._size + len(line) > self.max_bytes and self._size > 0:
            self._rotate()
        self._file.write(line)
        self._size += len(line)

    def _rotate(self) -> None:
        self._file.close()
        for index in range(self.backups, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{index}")
            newer = (
                self.path if index == 1 else self.path.with_name(f"{self.path.name}.{index - 1}")
            )
            if newer.exists():
                if index == self.backups and older.exists():
                    older.unlink()
                os.replace(newer, older)
        self._file = self.path.open("a", encoding="utf-8")
        self._size = 0


REQUIRED: dict[str, tuple[str, ...]] = {"arrival": ("id", "model"), "process": ("model", "to")}
"""Keys a reader of the log relies on, per record kind (a log missing them is refused, by line)."""


class LogReader:
    """Iterate records of a log (and its rotated backups, oldest first)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def files(self) -> list[Path]:
        backups = sorted(
            (p for p in self.path.parent.glob(self.path.name + ".*") if p.suffix[1:].isdigit()),
            key=lambda p: -int(p.suffix[1:]),
        )
        return [*backups, self.path] if self.path.exists() else backups

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for file in self.files():
            with file.open(encoding="utf-8") as handle:
                for number, line in enumerate(handle, 1):
                    line = line.strip()
                    if not line:
                        continue
                    try:
                        record = json.loads(line)
                    except json.JSONDecodeError as exc:
                        raise ValueError(f"{file}:{number}: not a JSON line ({exc.msg})") from None
                    if not isinstance(record, dict) or "ev" not in record:
                        raise ValueError(
                            f"{file}:{number}: not an event record (needs an 'ev' key)"
                        )
                    missing = [k for k in REQUIRED.get(record["ev"], ()) if k not in record]
                    if missing:
                        raise ValueError(
                            f"{file}:{number}: a {record['ev']!r} record needs "
                            + ", ".join(repr(k) for k in missing)
                        )
                    yield record


def read_log(path: str | Path) -> list[dict[str, Any]]:
    return list(LogReader(path))
