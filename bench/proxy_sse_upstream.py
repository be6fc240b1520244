"""A minimal paced SSE upstream for the relay benchmark (raw asyncio, no framework).

Every request gets ``--events`` OpenAI-shaped chunks, one per ``1/--rate`` seconds, then
``data: [DONE]``. One shared ticker writes to every open stream per tick, so the upstream itself
stays cheap and the proxy in front is what gets measured. ``GET /health`` answers 200.

    python bench/proxy_sse_upstream.py --port 19011 --events 100 --rate 50
"""

from __future__ import annotations

import argparse
import asyncio
import json

_EVENT = (
    b"data: "
    + json.dumps(
        {
            "id": "bench",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "sse",
            "choices": [{"index": 0, "delta": {"content": "lorem "}, "finish_reason": None}],
        }
    ).encode()
    + b"\n\n"
)
_CHUNK = b"%x\r\n" % len(_EVENT) + _EVENT + b"\r\n"
_DONE = b"data: [DONE]\n\n"
_END = b"%x\r\n" % len(_DONE) + _DONE + b"\r\n0\r\n\r\n"
_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n"
)
_HEALTH = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nOK"


class Streams:
    def __init__(self, events: int) -> None:
        self.events = events
        self.open: dict[SSEProtocol, int] = {}

    def tick(self) -> None:
        finished = []
        for proto, left in self.open.items():
            if proto.transport is None or proto.transport.is_closing():
                finished.append(proto)
                continue
            proto.transport.write(_CHUNK)
            if left <= 1:
                proto.transport.write(_END)
                finished.append(proto)
            else:
                self.open[proto] = left - 1
        for proto in finished:
            self.open.pop(proto, None)


class SSEProtocol(asyncio.Protocol):
    def __init__(self, streams: Streams) -> None:
        self.streams = streams
        self.transport: asyncio.Transport | None = None
        self.buffer = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end].decode("latin-1")
            length = 0
            for line in head.split("\r\n")[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value.strip())
            if len(self.buffer) < end + 4 + length:
                return
            self.buffer = self.buffer[end + 4 + length :]
            assert self.transport is not None
            if head.startswith("GET /health"):
                self.transport.write(_HEALTH)
            else:
                self.transport.write(_HEAD)
                self.streams.open[self] = self.streams.events

    def connection_lost(self, exc: Exception | None) -> None:
        self.streams.open.pop(self, None)
        self.transport = None


async def serve(port: int, events: int, rate: float) -> None:
    loop = asyncio.get_running_loop()
    streams = Streams(events)
    server = await loop.create_server(lambda: SSEProtocol(streams), "127.0.0.1", port, backlog=4096)
    interval = 1.0 / rate
    next_tick = loop.time()
    async with server:
        while True:
            next_tick += interval
            await asyncio.sleep(max(0.0, next_tick - loop.time()))
            streams.tick()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--events", type=int, default=100)
    parser.add_argument("--rate", type=float, default=50.0)
    args = parser.parse_args()
    asyncio.run(serve(args.port, args.events, args.rate))


if __name__ == "__main__":
    main()
