"""``llamaswap fake-upstream``: a real HTTP server that behaves like llama-server, in time.

Used by tests, demos and fidelity runs. Its timing comes from :class:`llamaswap.timing.TimingProfile`,
the same model the simulator uses, so a workload has the same expected timing in both worlds:
``/health`` answers 503 until the load time has passed, then 200; a generation takes
``ttft_overhead + prompt_tokens/prefill_tps`` to the first token and ``1/decode_tps`` per token after.
At most ``--parallel`` generations run at once (llama-server's slots); the rest wait. The first
generation after the load pays ``--first-request-overhead`` more (llama.cpp's warm-up, as the
simulator and the log calibration model it).

Fault knobs: ``--fail-start`` (exit 1 once the load time has passed, never healthy),
``--crash-after N`` (the process dies abruptly during request N+1, after its first token),
``--ignore-sigterm`` (only SIGKILL stops it).

``/v1/responses`` answers in the Responses API's shape, streaming its events too
(:mod:`llamaswap.daemon.fake_responses`), so the openai SDK's ``client.responses.create`` works.
A client that disconnects mid-answer costs one log line, not a traceback.

Besides the OpenAI endpoints, any other path answers a JSON echo of what it received (method, path,
query, content type, body size and SHA-256), ``GET /debug/last-request`` returns the last JSON body
and headers seen, ``GET /debug/receiving`` the body bytes received so far by echo requests still
uploading, and ``GET /debug/concurrency`` how many generation requests it holds now and held at
most: this lets tests check what the proxy actually forwarded, and when.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import math
import os
import signal
import sys
import time
from collections.abc import Sequence
from typing import Any

from aiohttp import web

from llamaswap.daemon import fake_responses
from llamaswap.timing import Distribution, TimingProfile

_WORDS = ("lorem", "ipsum", "dolor", "sit", "amet", "consectetur", "adipiscing", "elit")


def prompt_tokens_of(body: dict[str, Any]) -> int:
    """Rough token count of the prompt: about 4 characters per token, like most tokenizers."""
    text = ""
    messages = body.get("messages")
    if isinstance(messages, list):
        for message in messages:
            if isinstance(message, dict):
                content = message.get("content")
                text += content if isinstance(content, str) else json.dumps(content)
    for key in ("prompt", "input"):
        value = body.get(key)
        if value is not None:
            text += value if isinstance(value, str) else json.dumps(value)
    return max(1, math.ceil(len(text) / 4))


def output_tokens_of(body: dict[str, Any], default: int) -> int:
    for key in ("max_tokens", "max_completion_tokens", "n_predict"):
        value = body.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
    return default


class FakeUpstream:
    def __init__(
        self,
        model: str,
        profile: TimingProfile,
        *,
        fail_start: bool = False,
        crash_after: int | None = None,
        quiet: bool = False,
    ) -> None:
        self.model = model
        self.profile = profile
        self.fail_start = fail_start
        self.crash_after = crash_after
        self.quiet = quiet
        self.started = time.monotonic()
        self.load_time = profile.load_time.value
        self.served = 0
        self.slots = asyncio.Semaphore(max(1, profile.parallel))
        self.last_request: dict[str, Any] = {}
        self.warmed = False
        """True once a generation has started: only the first pays ``first_request_overhead``."""
        self.receiving: dict[int, int] = {}
        """Body bytes received so far by each echo request still reading its body."""
        self._echo_ids = 0
        self.active = 0
        """Generation requests received and not yet answered (in a slot or waiting for one)."""
        self.peak_active = 0

    # ------------------------------------------------------------------ helpers

    def log(self, message: str) -> None:
        if not self.quiet:
            print(f"fake-upstream[{self.model}]: {message}", flush=True)

    def loaded(self) -> bool:
        if self.fail_start:
            return False  # it exits at load time instead of ever answering 200
        return time.monotonic() - self.started >= self.load_time

    def _count_request(self) -> bool:
        """Count a generation; True when this one must crash the process."""
        self.served += 1
        return self.crash_after is not None and self.served > self.crash_after

    def _crash(self) -> None:
        print(f"fake-upstream[{self.model}]: crashing on purpose (--crash-after)", flush=True)
        os._exit(3)

    async def _json_body(self, request: web.Request) -> dict[str, Any]:
        raw = await request.read()
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            raise web.HTTPBadRequest(
                text=json.dumps({"error": {"message": "invalid JSON body", "code": 400}}),
                content_type="application/json",
            ) from None
        if not isinstance(body, dict):
            raise web.HTTPBadRequest(
                text=json.dumps({"error": {"message": "body must be an object", "code": 400}}),
                content_type="application/json",
            )
        self.last_request = {"path": request.path, "body": body, "headers": dict(request.headers)}
        return body

    # ------------------------------------------------------------------ routes

    async def health(self, request: web.Request) -> web.Response:
        if not self.loaded():
            return web.json_response(
                {"error": {"code": 503, "message": "Loading model", "type": "unavailable_error"}},
                status=503,
            )
        return web.json_response({"status": "ok"})

    async def models(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "object": "list",
                "data": [{"id": self.model, "object": "model", "owned_by": "fake-upstream"}],
            }
        )

    async def last(self, request: web.Request) -> web.Response:
        return web.json_response(self.last_request)

    async def receiving_now(self, request: web.Request) -> web.Response:
        """Body bytes received by echo requests still uploading: shows a proxy streams bodies."""
        return web.json_response({"bytes": sum(self.receiving.values())})

    async def concurrency(self, request: web.Request) -> web.Response:
        """Generation requests at this upstream now and at most so far: shows how many requests a
        proxy hands over at once (exact, where polling the proxy's own gauge could miss a peak)."""
        return web.json_response({"active": self.active, "peak": self.peak_active})

    async def echo(self, request: web.Request) -> web.Response:
        self._echo_ids += 1
        key = self._echo_ids
        digest = hashlib.sha256()
        size = 0
        self.receiving[key] = 0
        try:
            while chunk := await request.content.readany():
                digest.update(chunk)
                size += len(chunk)
                self.receiving[key] = size
        finally:
            del self.receiving[key]
        return web.json_response(
            {
                "model": self.model,
                "method": request.method,
                "path": request.path,
                "query": request.query_string,
                "content_type": request.headers.get("Content-Type", ""),
                "content_length": request.headers.get("Content-Length"),
                "body_bytes": size,
                "body_sha256": digest.hexdigest(),
            }
        )

    async def chat(self, request: web.Request) -> web.StreamResponse:
        return await self._generate(request, chat=True)

    async def completions(self, request: web.Request) -> web.StreamResponse:
        return await self._generate(request, chat=False)

    async def responses(self, request: web.Request) -> web.StreamResponse:
        """The Responses API (``client.responses.create``), timed like a chat completion."""
        return await self._generate(request, chat=True, responses=True)

    async def embeddings(self, request: web.Request) -> web.Response:
        body = await self._json_body(request)
        inputs = body.get("input", "")
        items = inputs if isinstance(inputs, list) else [inputs]
        prompt = prompt_tokens_of(body)
        async with self.slots:
            if self._count_request():
                self._crash()
            await asyncio.sleep(self.profile.time_to_first_token(prompt))
        data = [
            {
                "object": "embedding",
                "index": i,
                "embedding": [round(((i + 1) * (k + 3) % 17) / 17.0, 6) for k in range(8)],
            }
            for i, _ in enumerate(items)
        ]
        return web.json_response(
            {
                "object": "list",
                "model": body.get("model", self.model),
                "data": data,
                "usage": {"prompt_tokens": prompt, "total_tokens": prompt},
            }
        )

    async def _generate(
        self, request: web.Request, *, chat: bool, responses: bool = False
    ) -> web.StreamResponse:
        self.active += 1
        self.peak_active = max(self.peak_active, self.active)
        try:
            return await self._generate_counted(request, chat=chat, responses=responses)
        except ConnectionResetError:
            # The client went away mid-answer (aiohttp's ClientConnectionResetError is one):
            # a fact worth one log line, not a traceback in the proxy's /logs.
            self.log(f"{request.path}: client disconnected")
            return web.Response(status=499)
        finally:
            self.active -= 1

    async def _generate_counted(
        self, request: web.Request, *, chat: bool, responses: bool = False
    ) -> web.StreamResponse:
        body = await self._json_body(request)
        if not self.loaded():
            return web.json_response(
                {"error": {"code": 503, "message": "Loading model"}}, status=503
            )
        prompt = prompt_tokens_of(body)
        output = output_tokens_of(body, self.profile.default_output_tokens)
        if responses:
            output = fake_responses.output_tokens(body, self.profile.default_output_tokens)
        stream = body.get("stream") is True
        model = body.get("model", self.model)
        self.log(f"{request.path} prompt={prompt} output={output} stream={stream}")
        async with self.slots:
            crash = self._count_request()
            start = time.monotonic()
            first_on_process = not self.warmed
            self.warmed = True
            first = start + self.profile.time_to_first_token(prompt, first_on_process)
            interval = self.profile.token_interval()
            if stream and responses:
                return await self._stream_responses(
                    request, model, prompt, output, first, interval, crash
                )
            if stream:
                return await self._stream(
                    request, chat, model, prompt, output, first, interval, crash
                )
            if crash:
                await asyncio.sleep(max(0.0, first - time.monotonic()))
                self._crash()
            end = first + output * interval
            await asyncio.sleep(max(0.0, end - time.monotonic()))
            text = "".join(_WORDS[i % len(_WORDS)] + " " for i in range(output))
            if responses:
                return web.json_response(
                    fake_responses.response_object(
                        f"fake-{self.served}", model, text, prompt, output
                    )
                )
            usage = {
                "prompt_tokens": prompt,
                "completion_tokens": output,
                "total_tokens": prompt + output,
            }
            if chat:
                choice: dict[str, Any] = {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "length",
                }
            else:
                choice = {"index": 0, "text": text, "finish_reason": "length"}
            return web.json_response(
                {
                    "id": f"fake-{self.served}",
                    "object": "chat.completion" if chat else "text_completion",
                    "created": int(time.time()),
                    "model": model,
                    "choices": [choice],
                    "usage": usage,
                }
            )

    async def _stream(
        self,
        request: web.Request,
        chat: bool,
        model: str,
        prompt: int,
        output: int,
        first: float,
        interval: float,
        crash: bool,
    ) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        ident = f"fake-{self.served}"
        created = int(time.time())
        kind = "chat.completion.chunk" if chat else "text_completion"
        for i in range(output):
            due = first + i * interval
            delay = due - time.monotonic()
            if delay > 0.0005:
                await asyncio.sleep(delay)
            word = _WORDS[i % len(_WORDS)] + " "
            if chat:
                delta: dict[str, Any] = {"content": word}
                if i == 0:
                    delta["role"] = "assistant"
                choice: dict[str, Any] = {"index": 0, "delta": delta, "finish_reason": None}
            else:
                choice = {"index": 0, "text": word, "finish_reason": None}
            event = {"id": ident, "object": kind, "created": created, "model": model}
            event["choices"] = [choice]
            await response.write(b"data: " + json.dumps(event).encode() + b"\n\n")
            if crash:
                self._crash()
        final: dict[str, Any] = {"id": ident, "object": kind, "created": created, "model": model}
        final["choices"] = [
            {"index": 0, "delta": {}, "finish_reason": "length"}
            if chat
            else {"index": 0, "text": "", "finish_reason": "length"}
        ]
        final["usage"] = {
            "prompt_tokens": prompt,
            "completion_tokens": output,
            "total_tokens": prompt + output,
        }
        await response.write(b"data: " + json.dumps(final).encode() + b"\n\ndata: [DONE]\n\n")
        await response.write_eof()
        return response

    async def _stream_responses(
        self,
        request: web.Request,
        model: str,
        prompt: int,
        output: int,
        first: float,
        interval: float,
        crash: bool,
    ) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        ident = f"fake-{self.served}"
        for chunk in fake_responses.stream_head(ident, model, prompt):
            await response.write(chunk)
        text = ""
        for i in range(output):
            delay = first + i * interval - time.monotonic()
            if delay > 0.0005:
                await asyncio.sleep(delay)
            word = _WORDS[i % len(_WORDS)] + " "
            text += word
            await response.write(fake_responses.stream_delta(ident, i, word))
            if crash:
                self._crash()
        for chunk in fake_responses.stream_tail(ident, model, text, prompt, output):
            await response.write(chunk)
        await response.write_eof()
        return response

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_get("/health", self.health)
        app.router.add_get("/v1/models", self.models)
        app.router.add_get("/models", self.models)
        app.router.add_get("/debug/last-request", self.last)
        app.router.add_get("/debug/receiving", self.receiving_now)
        app.router.add_get("/debug/concurrency", self.concurrency)
        app.router.add_post("/v1/chat/completions", self.chat)
        app.router.add_post("/chat/completions", self.chat)
        app.router.add_post("/v1/completions", self.completions)
        app.router.add_post("/completion", self.completions)
        app.router.add_post("/v1/embeddings", self.embeddings)
        app.router.add_post("/v1/responses", self.responses)
        app.router.add_post("/responses", self.responses)
        app.router.add_route("*", "/{tail:.*}", self.echo)
        return app


async def _serve(args: argparse.Namespace, upstream: FakeUpstream) -> None:
    runner = web.AppRunner(upstream.app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, args.host, args.port, reuse_address=True)
    await site.start()
    # Always printed (even with --quiet): benchmarks read the moment it could first answer 200.
    # time.monotonic() is CLOCK_MONOTONIC, shared by every process on the machine.
    print(
        f"fake-upstream[{args.model}]: listening on http://{args.host}:{args.port}, "
        f"loading for {args.load_time:g}s, healthy_at_monotonic={upstream.started + upstream.load_time:.6f}",
        flush=True,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    if not args.ignore_sigterm:
        loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    if args.fail_start:
        await asyncio.sleep(args.load_time)
        print(
            f"fake-upstream[{args.model}]: error: failed to load model (--fail-start)", flush=True
        )
        os._exit(1)
    await stop.wait()
    upstream.log("stopping")
    await runner.cleanup()


def process_start_monotonic() -> float:
    """When this process was created, on the monotonic clock (falls back to now).

    A real server starts loading its model the moment it is exec'd; this one only gets to its
    clock after Python has imported aiohttp (0.15-0.4 s, more on a busy box). Counting the load from
    process creation (``/proc/self/stat``, 10 ms resolution) makes a load take spawn + load time,
    as the simulator's timing model says, instead of adding interpreter start-up noise.
    """
    now = time.monotonic()
    try:
        with open("/proc/self/stat", "rb") as handle:
            fields = handle.read().rsplit(b")", 1)[1].split()
        started_boot = int(fields[19]) / os.sysconf("SC_CLK_TCK")
        age = time.clock_gettime(time.CLOCK_BOOTTIME) - started_boot
    except (OSError, ValueError, IndexError, AttributeError):
        return now
    return now - age if 0.0 <= age < 60.0 else now


def run(args: argparse.Namespace) -> int:
    if args.ignore_sigterm:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    profile = TimingProfile(
        load_time=Distribution("constant", args.load_time),
        parallel=args.parallel,
        ttft_overhead=args.ttft_overhead,
        first_request_overhead=args.first_request_overhead,
        prefill_tps=args.prefill_tps,
        decode_tps=args.decode_tps,
        default_output_tokens=args.default_output_tokens,
    )
    upstream = FakeUpstream(
        args.model,
        profile,
        fail_start=args.fail_start,
        crash_after=args.crash_after,
        quiet=args.quiet,
    )
    upstream.started = process_start_monotonic()
    try:
        asyncio.run(_serve(args, upstream))
    except OSError as exc:  # the port is taken, or not ours to bind
        print(f"fake-upstream: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    # Exit without interpreter teardown once the server has closed: a stop then costs
    # milliseconds, like a real server's, instead of 30-100 ms of Python finalisation.
    sys.stdout.flush()
    os._exit(0)


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _port(text: str) -> int:
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"expected a TCP port 0-65535, got {text!r}")
    return int(text)


def _non_negative(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=_port, required=True, help="TCP port to listen on")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--model", default="fake", help="model name it reports")
    parser.add_argument(
        "--load-time", type=_non_negative, default=2.0, help="seconds until healthy"
    )
    parser.add_argument("--prefill-tps", type=_positive, default=2000.0, help="prompt tokens/s")
    parser.add_argument("--decode-tps", type=_positive, default=50.0, help="output tokens/s")
    parser.add_argument("--ttft-overhead", type=_non_negative, default=0.0, help="fixed seconds")
    parser.add_argument(
        "--first-request-overhead",
        type=_non_negative,
        default=0.0,
        help="extra seconds for the first generation after a load (llama.cpp's warm-up)",
    )
    parser.add_argument("--parallel", type=int, default=1, help="concurrent generations (slots)")
    parser.add_argument(
        "--default-output-tokens", type=int, default=128, help="output when max_tokens is absent"
    )
    parser.add_argument("--fail-start", action="store_true", help="exit 1 instead of loading")
    parser.add_argument(
        "--crash-after", type=int, default=None, metavar="N", help="die during request N+1"
    )
    parser.add_argument("--ignore-sigterm", action="store_true", help="only SIGKILL stops it")
    parser.add_argument("--quiet", action="store_true", help="no per-request log lines")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "fake-upstream",
        help="run a fake llama-server (for tests and demos)",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    add_arguments(parser)
    parser.set_defaults(func=run)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="llamaswap fake-upstream")
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
