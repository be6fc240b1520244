"""Report files: summary.json, per-scheduler requests.csv and swaps.csv, plots, report.md."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sim.expect import Outcome
from sim.host import STATUS_NAMES, SimRecord
from sim.plots import write_plots
from sim.trace import Trace

TABLE_COLUMNS = (
    ("completed", "completed"),
    ("errors", "errors"),
    ("rejected", "rejected"),
    ("cancelled", "cancelled"),
    ("swaps", "swaps"),
    ("swaps/1k", "swaps_per_1k"),
    ("lat p50", "latency.p50"),
    ("lat p99", "latency.p99"),
    ("wait p99", "wait.p99"),
    ("order viol.", "order_violations"),
    ("max resident", "max_resident_models"),
    ("max in flight", "max_in_flight"),
    ("serving", "busy_fraction.serving"),
    ("loading", "busy_fraction.loading"),
    ("jain", "jain_fairness"),
)


def metric(result: Mapping[str, Any], path: str) -> Any:
    node: Any = result
    for part in path.split("."):
        node = node.get(part) if isinstance(node, Mapping) else None
    return node


def fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


COMPACT_COLUMNS = (
    ("done", "completed"),
    ("swaps", "swaps"),
    ("p50", "latency.p50"),
    ("p99", "latency.p99"),
    ("wait99", "wait.p99"),
    ("viol.", "order_violations"),
    ("err", "errors"),
)
"""The terminal's default table: what decides between schedulers, in 80 columns (``--wide`` and
report.md show every column). :data:`COMPACT_LEGEND` spells the short headers out."""
COMPACT_LEGEND = (
    "done = completed requests; p50/p99 = latency and wait99 = p99 wait, in s; "
    "viol. = order violations; err = errors. Every column: --wide or report.md"
)


def table_rows(
    summary: Mapping[str, Any], columns: Sequence[tuple[str, str]] = TABLE_COLUMNS
) -> tuple[list[str], list[list[str]]]:
    header = ["scheduler", *(label for label, _ in columns)]
    rows = [
        [name, *(fmt(metric(result, path)) for _, path in columns)]
        for name, result in summary["results"].items()
    ]
    return header, rows


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n")


def _f(value: float) -> str:
    return "" if math.isnan(value) else f"{value:.6f}"


def _csv_field(text: str) -> str:
    if any(c in text for c in ',"\n\r'):
        return '"' + text.replace('"', '""') + '"'
    return text


def write_requests_csv(path: Path, record: SimRecord, trace: Trace) -> None:
    ids = [_csv_field(i) for i in trace.request_ids()]
    names = trace.models
    with path.open("w") as handle:
        handle.write("id,model,arrival,start,end,status,error\n")
        lines = []
        error = record.error
        for i, (a, m, s, e, st) in enumerate(
            zip(
                trace.arrival.tolist(),
                trace.model.tolist(),
                record.start,
                record.end,
                record.status,
                strict=True,
            )
        ):
            status = STATUS_NAMES.get(st, "error")
            lines.append(
                f"{ids[i]},{names[m]},{a:.6f},{_f(s)},{e:.6f},{status},{error.get(i, '')}\n"
            )
            if len(lines) >= 65536:
                handle.writelines(lines)
                lines = []
        handle.writelines(lines)


def write_swaps_csv(path: Path, record: SimRecord) -> None:
    with path.open("w") as handle:
        handle.write("start,end,model,evicted,ok\n")
        for start, end, model, evicted, ok in record.swaps:
            handle.write(f"{start:.6f},{_f(end)},{model},{evicted},{ok}\n")


def write_report(
    out: Path,
    summary: Mapping[str, Any],
    records: Mapping[str, SimRecord],
    trace: Trace,
    outcomes: Sequence[Outcome] = (),
) -> Path:
    """Write every report file under ``out``; returns the path of report.md."""
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "summary.json", summary)
    for name, record in records.items():
        (out / name).mkdir(exist_ok=True)
        write_requests_csv(out / name / "requests.csv", record, trace)
        write_swaps_csv(out / name / "swaps.csv", record)
    plots = write_plots(records, trace, summary, out)
    report = out / "report.md"
    report.write_text(render_markdown(summary, plots, outcomes, trace_notes(trace)))
    return report


def trace_notes(trace: Trace) -> list[str]:
    """What the trace asks of clients that the stats do not show: who gives up, and when."""
    import numpy as np

    after = trace.cancel_after[~np.isnan(trace.cancel_after)]
    if not len(after):
        return []
    share = len(after) / max(1, len(trace))
    values = sorted({round(float(v), 3) for v in after.tolist()})
    when = f"{values[0]:g} s" if len(values) == 1 else f"{values[0]:g}-{values[-1]:g} s"
    return [
        f"- {100 * share:.0f}% of the clients give up if they have not been served after {when} "
        "(`cancel_after`): those requests count as `cancelled` and have no latency"
    ]


def tradeoff(summary: Mapping[str, Any]) -> list[str]:
    """The serial-vs-fifo trade-off in one sentence, with this run's numbers."""
    results = summary["results"]
    serial, fifo = results.get("serial"), results.get("fifo")
    if not serial or not fifo:
        return []
    return [
        f"In one sentence: `serial` serves in strict arrival order, one request at a time "
        f"({fmt(serial['order_violations'])} order violations, latency p50 "
        f"{fmt(metric(serial, 'latency.p50'))} s, {fmt(serial['swaps'])} swaps), while `fifo` "
        f"batches requests for the loaded model and serves several at once (latency p50 "
        f"{fmt(metric(fifo, 'latency.p50'))} s, {fmt(fifo['swaps'])} swaps) at the price of "
        f"reordering ({fmt(fifo['order_violations'])} order violations).",
        "",
    ]


def per_model_table(summary: Mapping[str, Any]) -> list[str]:
    """Per model and scheduler: requests, completed, loads, p99 wait and latency."""
    lines = [
        "### Per model",
        "",
        "| model | scheduler | requests | completed | loads | wait p99 | latency p99 |",
        "|---|---|---|---|---|---|---|",
    ]
    models = sorted({m for r in summary["results"].values() for m in r.get("per_model", {})})
    for model in models:
        for name, result in summary["results"].items():
            row = result.get("per_model", {}).get(model)
            if row is None:
                continue
            cells = [
                row["requests"],
                row["completed"],
                row["swaps"],
                row["wait_p99"],
                row["latency_p99"],
            ]
            lines.append(f"| {model} | {name} | " + " | ".join(fmt(c) for c in cells) + " |")
    return [*lines, ""]


def render_markdown(
    summary: Mapping[str, Any],
    plots: Mapping[str, str],
    outcomes: Sequence[Outcome],
    notes: Sequence[str] = (),
) -> str:
    t = summary["trace"]
    end = max((r.get("makespan") or 0.0 for r in summary["results"].values()), default=0.0)
    header, rows = table_rows(summary)
    lines = [
        f"# Simulation report: {summary['scenario']}",
        "",
        summary.get("description") or "",
        "",
        f"Seed {summary['seed']}. Every scheduler replayed the identical trace through the real "
        "llamaswap scheduling core (sans-IO) inside a SimPy discrete-event simulation.",
        "",
        *(
            f"- `{label}` is `{v['use']}` with settings `{v['settings']}`"
            for label, v in (summary.get("variants") or {}).items()
        ),
        *([""] if summary.get("variants") else []),
        "## Trace",
        "",
        f"- source: `{t['source']}`"
        + (f" (transforms: {'; '.join(t['transforms'])})" if t.get("transforms") else ""),
        f"- {t['requests']} requests arriving over {t['duration']:.1f} s ({t['rate']:.3g} req/s), "
        f"{t['models']} models; the simulation ran until {end:.1f} s (the last request done)",
        *notes,
        f"- model-switch ratio of consecutive requests: {t['switch_ratio']:.3f}; burstiness "
        f"(CV of inter-arrivals): {t['burstiness_cv']:.3f}",
        "- requests per model: "
        + ", ".join(f"{m} {c}" for m, c in list(t["requests_per_model"].items())[:12]),
        "",
        "## Results",
        "",
        *tradeoff(summary),
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(row) + " |" for row in rows),
        "",
        "Times in seconds. `serving`/`loading` are fractions of the run: some request in service, "
        "else some model starting or stopping (swap overhead), else idle.",
        "",
        *per_model_table(summary),
    ]
    if outcomes:
        lines += ["## Expectations", ""]
        lines += [f"- {'PASS' if o.passed else 'FAIL'}: `{o.text}` ({o.detail})" for o in outcomes]
        lines.append("")
    titles = {
        "latency_cdf": "Latency CDF (all schedulers)",
        "swaps": "Cumulative swaps over time",
        "timeline": "Loaded model over time, with the queue length beneath",
        "wait_by_model": "p99 wait per model",
    }
    lines += ["## Plots", ""]
    for key, file in plots.items():
        lines += [f"### {titles[key]}", "", f"![{titles[key]}]({file})", ""]
    lines += [
        "## Definitions",
        "",
        "- latency = end - arrival (completed requests); wait = start of service - arrival.",
        "- cancelled = the client gave up (its `cancel_after` passed) before its request was "
        "served; rejected = refused by the scheduler (unknown model, over the concurrency "
        "limit); errors = failed while loading or serving. None of these has a latency: the "
        "latency CDF is over all requests, so its curves end below 1 by their share.",
        "- a swap = one model load started; `swaps/1k` = swaps per 1000 requests.",
        "- order violations = served requests r for which another served request arrived earlier "
        "but started service later.",
        "- max resident = most models simultaneously loading, loaded or stopping.",
        "- max in flight = most requests granted to model servers at once.",
        "- jain = Jain's fairness index over per-model mean waits (1 = perfectly even).",
        "",
        "## Files",
        "",
        "- `summary.json`: every metric, per scheduler (`sim_wall_seconds` is wall-clock and varies).",
        "- `<scheduler>/requests.csv`: `id, model, arrival, start, end, status, error`.",
        "- `<scheduler>/swaps.csv`: `start, end, model, evicted, ok`.",
        "",
    ]
    return "\n".join(lines)
