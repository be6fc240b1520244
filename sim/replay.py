"""Replay a recorded event log: ``llamaswap trace from-log`` and ``llamaswap sim --from-log``.

A daemon log (``serve --record``) carries everything a replay needs: the arrivals with their ids
and token counts, the routing config (meta record), and the timing evidence (load durations,
grant -> done service times) that :func:`llamaswap.record.calibrate.calibrate` turns into a
calibrated profile. The replay then runs any scheduler on those arrivals and puts the recorded
run's own metrics next to the simulated ones, computed the same way from the same log format.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from llamaswap.core.spec import RoutingSpec
from llamaswap.record import read_log
from llamaswap.record.calibrate import Calibration, calibrate, collect_requests
from llamaswap.record.meta import spec_from_meta
from llamaswap.timing import TimingProfile
from sim.trace import Trace


def observed_parallel(records: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """Most requests each model served at once (grant..done overlap): the upstream's slots, at least."""
    requests, _, _, _ = collect_requests(records)
    edges: dict[str, list[tuple[float, int]]] = defaultdict(list)
    for r in requests:
        if r.grant is not None and r.done is not None:
            edges[r.model] += [(r.grant, 1), (r.done, -1)]
    out: dict[str, int] = {}
    for model, points in edges.items():
        level = peak = 0
        for _, step in sorted(points, key=lambda p: (p[0], p[1])):
            level += step
            peak = max(peak, level)
        out[model] = max(1, peak)
    return out


def calibrated_profiles(
    calibration: Calibration, parallel: Mapping[str, int]
) -> dict[str, TimingProfile]:
    raw = calibration.timing(parallel)
    return {m: TimingProfile.parse(p, f"calibrated timing.{m}") for m, p in raw.items()}


def log_trace(
    calibration: Calibration,
    rows: Sequence[Mapping[str, Any]] | None = None,
    *,
    cancels: bool = True,
    source: str = "recorded log",
) -> Trace:
    """The log's requests as a trace with the log's ids: arrivals, token counts, cancels (unless
    ``cancels`` is False) and, where ``rows`` give one, each request's own service time."""
    rows = calibration.trace_rows() if rows is None else rows
    nan = math.nan
    return Trace.build(
        [r["arrival"] for r in rows],
        [r["model"] for r in rows],
        prompt_tokens=[-1 if r["prompt_tokens"] is None else r["prompt_tokens"] for r in rows],
        output_tokens=[-1 if r["output_tokens"] is None else r["output_tokens"] for r in rows],
        service_time=[nan if r.get("service_time") is None else r["service_time"] for r in rows],
        cancel_after=[
            nan if r["cancel_after"] is None or not cancels else r["cancel_after"] for r in rows
        ],
        ids=[r["id"] for r in rows],
        source=source,
    )


def parse_slots(values: Sequence[str] | None, models: Sequence[str]) -> dict[str, int]:
    """``--slots`` values (``K`` for every model, ``MODEL=K`` for one) -> {model: K}."""
    slots: dict[str, int] = {}
    for value in values or []:
        name, _, count = value.rpartition("=")
        try:
            k = int(count)
        except ValueError:
            raise ValueError(
                f"--slots {value!r}: expected K or MODEL=K with an integer K"
            ) from None
        if k < 1:
            raise ValueError(f"--slots {value!r}: K must be >= 1")
        if not name:
            slots.update(dict.fromkeys(models, k))
        elif name not in models:
            raise ValueError(
                f"--slots {value!r}: the log has no model {name!r} (models: {', '.join(models)})"
            )
        else:
            slots[name] = k
    return slots


def replay_inputs(
    path: str | Path, slot_args: Sequence[str] | None = None
) -> tuple[RoutingSpec, Trace, dict[str, TimingProfile], Calibration, list[dict[str, Any]]]:
    records = read_log(path)
    requests, _, _, _ = collect_requests(records)
    slots = parse_slots(slot_args, sorted({r.model for r in requests}))
    calibration = calibrate(records, slots)
    if not calibration.requests:
        raise ValueError(f"{path}: the log has no request arrivals to replay")
    spec = spec_from_meta(calibration.meta, str(path))
    trace = log_trace(calibration)
    profiles = calibrated_profiles(calibration, {**observed_parallel(records), **slots})
    return spec, trace, profiles, calibration, records


def log_metrics(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The same summary for a real or a simulated log: counts, swaps, latency and wait."""
    requests, _, _, _ = collect_requests(records)
    ok = [r for r in requests if r.ok]
    loads = sum(1 for r in records if r["ev"] == "process" and r.get("to") == "starting")
    return {
        "requests": len(requests),
        "completed": len(ok),
        "cancelled": sum(1 for r in requests if r.cancelled is not None and r.grant is None),
        "failed": sum(1 for r in requests if r.done is not None and not r.ok),
        "swaps": loads,
        "latency": _stats([r.done - r.arrival for r in ok if r.done is not None]),
        "wait": _stats([r.grant - r.arrival for r in ok if r.grant is not None]),
    }


def _stats(values: list[float]) -> dict[str, float]:
    if not values:
        return {k: math.nan for k in ("mean", "p50", "p90", "p99", "max")}
    a = np.asarray(values, dtype=float)
    return {
        "mean": round(float(a.mean()), 6),
        "p50": round(float(np.percentile(a, 50)), 6),
        "p90": round(float(np.percentile(a, 90)), 6),
        "p99": round(float(np.percentile(a, 99)), 6),
        "max": round(float(a.max()), 6),
    }


def fit_lines(calibration: Calibration) -> list[str]:
    lines = []
    for model, fit in sorted(calibration.fits.items()):
        loads = fit.load_samples
        load = f"{len(loads)} loads, median {float(np.median(loads)):.3f}s" if loads else "no loads"
        mape = "n/a" if math.isnan(fit.mape) else f"{100 * fit.mape:.2f}%"
        warm = (
            f" first_request_overhead={fit.first_request_overhead:.4f}s"
            f" ({fit.first_samples} first on their process)"
            if fit.first_request_overhead > 0
            else ""
        )
        lines.append(
            f"{model}: {fit.samples} requests fitted: ttft_overhead={fit.ttft_overhead:.4f}s "
            f"prefill_tps={fit.prefill_tps:.1f} decode_tps={fit.decode_tps:.2f}{warm} "
            f"(fit error MAPE {mape}); {load}"
        )
    return lines


def replayed_loads(
    profiles: Mapping[str, TimingProfile], calibration: Calibration
) -> dict[str, TimingProfile]:
    """Each model's n-th simulated load takes as long as its n-th recorded one (fresh counters
    per run), so a serial log replayed under serial gives its own run back instead of a run whose
    loads were drawn at random from the same samples (latency p50 spread +37-78% over seeds)."""
    import dataclasses

    from sim.eventlog import ReplayedDurations

    out = dict(profiles)
    for model, profile in profiles.items():
        fit = calibration.fits.get(model)
        if fit is not None and fit.load_samples:
            replay = ReplayedDurations(fit.load_samples)
            out[model] = dataclasses.replace(profile, load_time=replay)  # type: ignore[arg-type]
    return out


def load_note(calibration: Calibration, in_order: bool) -> str:
    """How the replay's loads were timed, and how much the recorded ones varied."""
    loads = [s for fit in calibration.fits.values() for s in fit.load_samples]
    if not loads:
        return "no loads recorded: loads take the profile's default"
    spread = f"{len(loads)} recorded loads, {min(loads):.3f}-{max(loads):.3f} s"
    if in_order:
        return f"loads replayed in recorded order per model ({spread})"
    return (
        f"loads drawn at random from the recorded ones ({spread}): latency varies with --seed "
        "by about that spread per swap"
    )


def write_replay_report(
    out: Path,
    log: Path,
    seed: int,
    trace: Trace,
    records: Mapping[str, Any],
    in_order: bool,
) -> Path:
    """The same report.md, plots and CSVs as ``llamaswap sim`` writes, for the replayed runs."""
    from sim.metrics import summarize
    from sim.report import write_report
    from sim.trace import trace_stats

    stats = trace_stats(trace)
    stats["source"] = f"recorded log {log}"
    stats["transforms"] = []
    loads = "in recorded order" if in_order else "drawn at random from the recorded ones"
    summary = {
        "scenario": f"replay-{Path(log).stem}",
        "description": f"Replay of the event log {log} with its calibrated timing (loads {loads}).",
        "seed": seed,
        "trace": stats,
        "results": {name: summarize(rec, trace, 0.0) for name, rec in records.items()},
        "variants": {},
    }
    return write_report(out, summary, dict(records), trace)


# ---------------------------------------------------------------------- commands


def cmd_trace_from_log(args: Any) -> int:
    import sys

    from llamaswap.record.meta import MetaError

    try:
        records = read_log(args.file)
        requests, _, _, _ = collect_requests(records)
        slots = parse_slots(getattr(args, "slots", None), sorted({r.model for r in requests}))
        calibration = calibrate(records, slots)
        parallel = {**observed_parallel(records), **slots}
    except (OSError, ValueError, MetaError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not calibration.requests:
        print(f"error: {args.file}: no request arrivals in the log", file=sys.stderr)
        return 2
    out_trace = args.out_trace or Path(args.file).with_suffix(".trace.csv")
    out_profile = args.out_profile or Path(args.file).with_suffix(".timing.yaml")
    calibration.write_trace(out_trace)
    profile_doc = {"timing": calibration.timing(parallel)}
    Path(out_profile).write_text(
        "# Calibrated from "
        + str(args.file)
        + " by llamaswap trace from-log\n"
        + yaml.safe_dump(profile_doc, sort_keys=True)
    )
    print(f"wrote {out_trace}: {len(calibration.requests)} requests")
    print(f"wrote {out_profile}: calibrated timing for {len(calibration.fits)} models")
    for line in fit_lines(calibration):
        print("  " + line)
    return 0


def cmd_sim_from_log(args: Any) -> int:
    import sys

    from rich.console import Console
    from rich.table import Table

    from llamaswap.core.policies import scheduler_names
    from llamaswap.record.meta import MetaError
    from sim.eventlog import simulate_recorded

    try:
        spec, trace, profiles, calibration, records = replay_inputs(
            args.from_log, getattr(args, "slots", None)
        )
    except (OSError, ValueError, MetaError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    schedulers = args.schedulers or [spec.scheduler]
    bad = [s for s in schedulers if s not in scheduler_names()]
    if bad:
        print(
            f"error: --scheduler: unknown {bad} (valid: {', '.join(scheduler_names())})",
            file=sys.stderr,
        )
        return 2
    out = args.out or Path("reports") / ("replay-" + Path(args.from_log).stem)
    seed = 0 if args.seed is None else args.seed
    recorded_name = str(calibration.meta.get("routing", {}).get("scheduler", "?"))
    results: dict[str, Any] = {f"recorded ({recorded_name})": log_metrics(records)}
    sim_records = {}
    in_order = not getattr(args, "draw_loads", False)
    for name in schedulers:
        path = out / name / "events.jsonl"
        run_profiles = replayed_loads(profiles, calibration) if in_order else profiles
        sim_records[name] = simulate_recorded(
            spec, name, trace, run_profiles, seed, path, {"replay_of": str(args.from_log)}
        )
        results[name] = log_metrics(read_log(path))
    report = write_replay_report(out, args.from_log, seed, trace, sim_records, in_order)
    summary = {
        "log": str(args.from_log),
        "requests": len(trace),
        "calibration": fit_lines(calibration),
        "timing": calibration.timing(observed_parallel(records)),
        "results": results,
        "loads": load_note(calibration, in_order),
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "replay.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    if not args.quiet:
        console = Console(width=None if sys.stdout.isatty() else 200)
        for line in fit_lines(calibration):
            console.print(line, highlight=False)
        table = Table(title=f"replay of {args.from_log}: {len(trace)} requests")
        for column in (
            "run",
            "completed",
            "failed",
            "swaps",
            "lat p50",
            "lat p90",
            "lat p99",
            "wait p50",
            "wait p99",
        ):
            table.add_column(column, justify="left" if column == "run" else "right")
        for name, m in results.items():
            lat, wait = m["latency"], m["wait"]
            table.add_row(
                name,
                str(m["completed"]),
                str(m["failed"]),
                str(m["swaps"]),
                f"{lat['p50']:.3f}",
                f"{lat['p90']:.3f}",
                f"{lat['p99']:.3f}",
                f"{wait['p50']:.3f}",
                f"{wait['p99']:.3f}",
            )
        console.print(table)
        console.print(load_note(calibration, in_order), highlight=False)
        console.print(
            f"wrote {out / 'replay.json'}, {report} (with plots) and per-scheduler event logs "
            f"under {out}/"
        )
    return 0
