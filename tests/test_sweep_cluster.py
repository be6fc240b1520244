"""A real ``dask scheduler`` and two ``dask worker`` processes on 127.0.0.1, the sweep sent there with
``llamaswap sweep --cluster``: the same rows as the embedded cluster, then every process stopped."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml

from sim.sweep.engine import Options, run_sweep
from sim.sweep.spec import load_sweep
from sim.synthetic import synthetic_trace
from sim.trace import write_trace

ROOT = Path(__file__).resolve().parents[1]
DASK = [sys.executable, "-m", "dask"]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}

pytestmark = pytest.mark.daemon


def _until(condition: Callable[[], Any], what: str, timeout: float = 120.0) -> Any:
    """Poll ``condition`` until it returns something truthy (a condition wait, not a fixed sleep)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _sweep_file(tmp: Path) -> Path:
    """Two bases: the bundled synthetic scenario, and one replaying a trace file (shipped)."""
    trace = synthetic_trace(
        {"duration": 600, "rate": 0.5, "models": ["a", "b"], "zipf": 1.0}, 3, "test"
    )
    write_trace(trace, tmp / "trace.csv")
    scenario = {
        "name": "from-file",
        "seed": 3,
        "config": {"models": {"a": {}, "b": {}}, "routing": {"scheduler": {"use": "fifo"}}},
        "timing": {"default": {"load_time": 4.0, "parallel": 2}},
        "trace": {"file": str(tmp / "trace.csv")},
    }
    (tmp / "from-file.yaml").write_text(yaml.safe_dump(scenario))
    sweep = {
        "name": "cluster",
        "bases": [str(ROOT / "scenarios" / "default.yaml"), str(tmp / "from-file.yaml")],
        "axes": {
            "scheduler": ["fifo", "batch-aging"],
            "slice": [{"label": "head", "transforms": [{"limit": 200}]}],
            "load": {"offered": [0.4, 0.8]},
            "seed": [5],
        },
    }
    path = tmp / "cluster.sweep.yaml"
    path.write_text(yaml.safe_dump(sweep))
    return path


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[str]:
    """Scheduler + two workers, each in its own session; afterwards no process of theirs is left."""
    logs = tmp_path / "logs"
    logs.mkdir()
    scheduler_file = tmp_path / "scheduler.json"
    started: list[subprocess.Popen[bytes]] = []

    def start(name: str, *args: str) -> None:
        with (logs / f"{name}.log").open("wb") as log:
            started.append(
                subprocess.Popen(
                    [*DASK, *args],
                    env=ENV,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )

    try:
        start("scheduler", "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
              "--scheduler-file", str(scheduler_file))  # fmt: skip
        address = _until(
            lambda: (
                scheduler_file.exists()
                and json.loads(scheduler_file.read_text() or "{}").get("address")
            ),
            "the scheduler file",
        )
        for i in (1, 2):
            start(f"worker{i}", "worker", address, "--nthreads", "1", "--nworkers", "1",
                  "--no-dashboard", "--host", "127.0.0.1", "--name", f"w{i}",
                  "--local-directory", str(tmp_path / "scratch"))  # fmt: skip
        from distributed import Client

        with Client(address, timeout="60s") as client:
            client.wait_for_workers(2, timeout=120)
        yield address
    finally:
        procs = []
        for p in started:
            try:
                procs += [psutil.Process(p.pid), *psutil.Process(p.pid).children(recursive=True)]
            except psutil.NoSuchProcess:
                continue
        for p in reversed(started):  # workers first, then the scheduler
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        _gone, alive = psutil.wait_procs(procs, timeout=60)
        for p in alive:
            p.kill()
        for p in started:
            p.wait(timeout=30)
        assert not alive, f"processes left after SIGTERM: {[p.pid for p in alive]}"


@pytest.mark.slow
def test_sweep_on_a_started_cluster_matches_the_embedded_one(tmp_path: Path, cluster: str) -> None:
    path = _sweep_file(tmp_path)
    out = tmp_path / "on-cluster"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "llamaswap",
            "sweep",
            str(path),
            "--cluster",
            cluster,
            "--out",
            str(out),
            "--quiet",
        ],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "8 runs" in result.stdout and "0 failed" in result.stdout
    docs = [json.loads(p.read_text()) for p in (out / "runs").glob("*.json")]
    assert len(docs) == 8 and all(d["status"] == "done" for d in docs)
    assert len({d["worker"] for d in docs}) == 2  # both workers took runs
    embedded = tmp_path / "embedded"
    run_sweep(load_sweep(path), Options(embedded, workers=1))
    assert (out / "results.csv").read_bytes() == (embedded / "results.csv").read_bytes()
    assert (out / "results.parquet").read_bytes() == (embedded / "results.parquet").read_bytes()
