"""Peers, selectors and profiles: the same requests to llama-swap and to llamaswap, diffed.

    .venv/bin/python bench/vs_llamaswap_peers.py [--binary PATH] [--json OUT]

Setup (all on 127.0.0.1): one "box" (``llamaswap serve`` with fake-upstream models ``m1``, ``m2``,
``shared``); then the same front config twice (only ``startPort`` differs), once under the real
llama-swap binary (/work/shared/peers/llama-swap/llama-swap, or ``--binary``), once under
``llamaswap serve``: a local model, ``peers`` (the box, with an ``apiKey``, and a peer whose port is
closed), ``selectors`` (pin, spillover) and ``profiles``. The script sends each request of
``CASES`` to both fronts and prints, per request, the status, the model the upstream saw and the
error message of each, marking every difference. Skipped (exit 0) when the binary is absent.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from llamaswap.daemon.testing import fake_cmd, free_port_block, serve_argv  # noqa: E402

BINARY = Path("/work/shared/peers/llama-swap/llama-swap")

Case = tuple[str, str, str, Any]  # label, method, path, JSON body (None: no body)


def chat(model: str) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}


CASES: list[Case] = [
    ("local model", "POST", "/v1/chat/completions", chat("local")),
    ("bare peer name", "POST", "/v1/chat/completions", chat("m1")),
    ("fully qualified", "POST", "/v1/chat/completions", chat("box/m2")),
    ("bare name two peers list", "POST", "/v1/chat/completions", chat("shared")),
    ("qualified shared", "POST", "/v1/chat/completions", chat("box/shared")),
    ("peer down", "POST", "/v1/chat/completions", chat("down/gone")),
    ("unknown model", "POST", "/v1/chat/completions", chat("nope")),
    ("pin selector", "POST", "/v1/chat/completions", chat("pinned")),
    ("spillover selector", "POST", "/v1/chat/completions", chat("pool")),
    ("embeddings via peer", "POST", "/v1/embeddings", {"model": "box/m1", "input": ["x"]}),
    ("profiles before", "GET", "/api/profiles", None),
    ("pinned name, none active", "POST", "/v1/chat/completions", chat("public")),
    ("activate missing", "PUT", "/api/profiles/active", {"name": "missing"}),
    ("activate bad type", "PUT", "/api/profiles/active", {"name": 3}),
    ("activate coding", "PUT", "/api/profiles/active", {"name": "coding"}),
    ("pinned name", "POST", "/v1/chat/completions", chat("public")),
    ("pinned to a peer", "POST", "/v1/chat/completions", chat("local")),
    ("disabled by profile", "POST", "/v1/chat/completions", chat("m1")),
    ("pinned to a selector", "POST", "/v1/chat/completions", chat("tosel")),
    ("models listing", "GET", "/v1/models", None),
    ("deactivate", "PUT", "/api/profiles/active", {"name": None}),
]


def front_config(start_port: int, box: int, dead: int) -> dict[str, Any]:
    return {
        "startPort": start_port,
        "healthCheckTimeout": 30,
        "models": {
            "local": {"cmd": fake_cmd(load_time=0.05), "proxy": "http://127.0.0.1:${PORT}"},
        },
        "peers": {
            "box": {
                "proxy": f"http://127.0.0.1:{box}",
                "models": ["m1", "m2", "shared"],
                "apiKey": "sk-box",
            },
            "down": {"proxy": f"http://127.0.0.1:{dead}", "models": ["gone", "shared"]},
        },
        "selectors": {
            "pinned": {"strategy": "pin", "targets": ["box/m2", "local"]},
            "pool": {"strategy": "spillover", "targets": ["local", "box/m1"]},
        },
        "profiles": {
            "coding": {
                "description": "compare",
                "pins": {"public": "box/m1", "local": "m2", "m1": None, "tosel": "pinned"},
            }
        },
    }


def request(base: str, method: str, path: str, body: Any) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, _decode(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, _decode(exc.read())


def _decode(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode(errors="replace").strip()


def summary(path: str, body: Any) -> tuple[str, str]:
    """(model routed to or listing summary, error message) from one answer."""
    if isinstance(body, dict):
        if path == "/v1/models":
            return ",".join(sorted(m["id"] for m in body.get("data", []))), ""
        if "profiles" in body or "active" in body:
            return json.dumps({"active": body.get("active")}), ""
        error = body.get("error")
        if isinstance(error, dict):
            return "", str(error.get("message", ""))
        if isinstance(error, str):
            return "", error
        return str(body.get("model", "")), ""
    return "", str(body)


def wait_healthy(base: str, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(base + "/health", timeout=2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise SystemExit(f"{what} did not come up at {base}") from None
            time.sleep(0.1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--binary", type=Path, default=BINARY)
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()
    if not args.binary.exists():
        print(f"skipped: llama-swap binary not found at {args.binary}")
        return 0
    base_port = free_port_block(12)
    box_port, dead_port, ours_port, theirs_port = range(base_port, base_port + 4)
    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory() as tmp:
        box_cfg = Path(tmp) / "box.yaml"
        box_cfg.write_text(
            yaml.safe_dump(
                {
                    "startPort": base_port + 4,
                    "apiKeys": ["sk-box"],
                    "routing": {"scheduler": {"use": "fifo"}},
                    "models": {
                        m: {"cmd": fake_cmd(load_time=0.05), "proxy": "http://127.0.0.1:${PORT}"}
                        for m in ("m1", "m2", "shared")
                    },
                }
            )
        )
        ours_cfg, theirs_cfg = Path(tmp) / "ours.yaml", Path(tmp) / "theirs.yaml"
        ours_cfg.write_text(yaml.safe_dump(front_config(base_port + 8, box_port, dead_port)))
        theirs_cfg.write_text(yaml.safe_dump(front_config(base_port + 10, box_port, dead_port)))
        log = open(Path(tmp) / "logs.txt", "wb")  # noqa: SIM115 (closed with the processes)
        try:
            procs.append(subprocess.Popen(serve_argv(box_cfg, box_port), stdout=log, stderr=log))
            procs.append(subprocess.Popen(serve_argv(ours_cfg, ours_port), stdout=log, stderr=log))
            procs.append(
                subprocess.Popen(
                    [
                        str(args.binary),
                        "-config",
                        str(theirs_cfg),
                        "-listen",
                        f"127.0.0.1:{theirs_port}",
                    ],
                    stdout=log,
                    stderr=log,
                )
            )
            ours, theirs = f"http://127.0.0.1:{ours_port}", f"http://127.0.0.1:{theirs_port}"
            wait_healthy(f"http://127.0.0.1:{box_port}", "the box")
            wait_healthy(ours, "llamaswap")
            wait_healthy(theirs, "llama-swap")
            rows = []
            for label, method, path, body in CASES:
                a_status, a_body = request(theirs, method, path, body)
                b_status, b_body = request(ours, method, path, body)
                rows.append(
                    {
                        "case": label,
                        "llama-swap": [a_status, *summary(path, a_body)],
                        "llamaswap": [b_status, *summary(path, b_body)],
                    }
                )
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            log.close()
    differ = 0
    for row in rows:
        a, b = row["llama-swap"], row["llamaswap"]
        marks = ["" if x == y else "*" for x, y in zip(a, b, strict=True)]
        differ += any(marks)
        print(f"{'*' if any(marks) else ' '} {row['case']}")
        print(f"    status  {a[0]:>4}{marks[0]:1} {b[0]:>4}")
        print(
            f"    routed  llama-swap: {a[1] or '-'}{marks[1]}\n            llamaswap:  {b[1] or '-'}"
        )
        if a[2] or b[2]:
            print(
                f"    error   llama-swap: {a[2] or '-'}{marks[2]}\n            llamaswap:  {b[2] or '-'}"
            )
    print(f"\n{len(rows)} requests, {differ} with a difference (marked *)")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
