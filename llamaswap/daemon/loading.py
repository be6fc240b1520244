"""``sendLoadingState``: progress for a streaming chat request while its model loads (§2.8, §2.9).

The 200 and SSE headers go out at once; while the request waits the client receives OpenAI
chunk-shaped events whose ``delta.reasoning_content`` carries a banner, the queue position whenever
it changes, an occasional remark and a dot per 750 ms tick. When the request is granted a "Done!"
line follows and the upstream's own events are appended to the same response. If it fails, an
error event in the llama-swap envelope ends the stream (the 200 cannot be taken back: reference §8
item 8). Unlike llama-swap, text is not "typed" out character by character.
"""

from __future__ import annotations

import asyncio
import json
import time

from aiohttp import web

from llamaswap.core.errors import RequestError
from llamaswap.daemon.errors import status_of
from llamaswap.daemon.forward import sse_error
from llamaswap.daemon.host import Ticket

TICK = 0.75
REMARK_EVERY = 7.5
_RULE = "\u2501" * 20 + "\n"
_REMARKS = (
    "Copying weights into memory, one tensor at a time",
    "Warming up the attention heads",
    "Asking the GPU nicely",
    "Reticulating embeddings",
    "Counting parameters (there are a lot)",
)


def _event(model: str, text: str) -> bytes:
    chunk = {
        "id": "llamaswap-loading",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "delta": {"reasoning_content": text}, "finish_reason": None}],
    }
    return b"data: " + json.dumps(chunk).encode() + b"\n\n"


async def wait_with_loading_state(
    request: web.Request, ticket: Ticket, model: str
) -> tuple[web.StreamResponse, RequestError | None]:
    """Stream loading progress until the ticket is granted or rejected."""
    response = web.StreamResponse(
        status=200,
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
        },
    )
    await response.prepare(request)
    started = time.monotonic()
    positions: list[int] = []
    ticket.on_position = positions.append
    if ticket.position:
        positions.append(ticket.position)
    await response.write(_event(model, _RULE + f"llamaswap loading model: {model}\n"))
    remark_at = started
    remark = 0
    while True:
        done, _ = await asyncio.wait({ticket.future}, timeout=TICK)
        if done:
            break
        now = time.monotonic()
        if positions:
            text = f"\nQueue position: #{positions[-1]} "
            positions.clear()
            remark_at = now + REMARK_EVERY
        elif now >= remark_at:
            text = f"\n{_REMARKS[remark % len(_REMARKS)]} "
            remark += 1
            remark_at = now + REMARK_EVERY
        else:
            text = "."
        await response.write(_event(model, text))
    ticket.on_position = None
    error = ticket.future.result()
    if error is not None:
        await response.write(sse_error(status_of(error.kind), error.message))
        await response.write_eof()
        return response, error
    elapsed = time.monotonic() - started
    await response.write(_event(model, f"\nDone! ({elapsed:.1f}s)\n" + _RULE + " \n"))
    return response, None
