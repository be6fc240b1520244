"""The sweep's output directory: one result file per run key, and the tidy table built from them.

    DIR/runs/<key>.json     spec + status + error + metrics (+ wall_seconds, worker: not in the table)
    DIR/results.parquet     one row per run of the sweep file, in expansion order
    DIR/results.csv         the same rows
    DIR/figures/*.png

Rows hold the axis values and every metric flattened with dots (``latency.p99``,
``per_model.MODEL.wait_p99``, ``slo.latency_le_30s``); columns are the axis columns, then every
metric column any row has, sorted, so the table depends only on the runs, never on which worker
finished first.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from sim.sweep.spec import Run

HEAD = ("run", "key", "base", "slice", "timing", "load_kind", "load", "scheduler", "use",
        "settings", "seed", "status", "error")  # fmt: skip


class Store:
    def __init__(self, out: Path) -> None:
        self.out = out
        self.runs = out / "runs"

    def existing(self) -> dict[str, dict[str, Any]]:
        """Results already in DIR, by key (unreadable files are ignored: the run is redone)."""
        found = {}
        if self.runs.is_dir():
            for path in sorted(self.runs.glob("*.json")):
                try:
                    found[path.stem] = json.loads(path.read_text())
                except (OSError, ValueError):
                    continue
        return found

    def save(self, run: Run, result: Mapping[str, Any]) -> dict[str, Any]:
        self.runs.mkdir(parents=True, exist_ok=True)
        doc = {"key": run.key, "spec": run.spec, **result}
        tmp = self.runs / f".{run.key}.tmp"
        tmp.write_text(json.dumps(doc, sort_keys=True, indent=1) + "\n")
        os.replace(tmp, self.runs / f"{run.key}.json")
        return doc


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: value}


def rows(runs: Sequence[Run], results: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per run (runs without a result are left out), all with the same columns."""
    body = []
    for run in runs:
        result = results.get(run.key)
        if result is None:
            continue
        head = {"run": run.index, "key": run.key, **run.axes}
        head.update(status=result["status"], error=result.get("error"))
        body.append((head, flatten(result.get("metrics") or {})))
    metric_columns = sorted({c for _, m in body for c in m})
    return [{**h, **{c: m.get(c) for c in metric_columns}} for h, m in body]


def write_table(table: Sequence[Mapping[str, Any]], out: Path) -> list[Path]:
    """``results.parquet`` (pyarrow) and ``results.csv``; same rows in, same bytes out."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out.mkdir(parents=True, exist_ok=True)
    columns = list(table[0]) if table else list(HEAD)
    arrays = {}
    for c in columns:
        values = [r.get(c) for r in table]
        kind = _type(values)
        if kind == pa.string():
            values = [None if v is None else _cell(v) for v in values]
        arrays[c] = pa.array(values, type=kind)
    parquet, text = out / "results.parquet", out / "results.csv"
    pq.write_table(pa.table(arrays), parquet, compression="zstd")
    with text.open("w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(columns)
        for r in table:
            writer.writerow(["" if r.get(c) is None else _cell(r.get(c)) for c in columns])
    return [parquet, text]


def _type(values: Iterable[Any]) -> Any:
    """One Arrow type per column: strings, else ints (no float seen), else doubles."""
    import pyarrow as pa

    kinds = {type(v) for v in values if v is not None}
    if not kinds:
        return pa.string()
    if kinds <= {str}:
        return pa.string()
    if kinds <= {bool}:
        return pa.bool_()
    if kinds <= {int}:
        return pa.int64()
    if kinds <= {int, float}:
        return pa.float64()
    return pa.string()


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return repr(value)
    return str(value)
