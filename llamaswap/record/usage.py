"""Read token counts and the first-byte time off a relayed response, without buffering it.

The daemon's relay calls :meth:`UsageTap.chunk` for every chunk it writes to the client. The tap
records the first byte once, and keeps only a bounded tail of the body: the OpenAI ``usage`` object
is in the JSON body (non-streaming) or the last SSE events (streaming, llama-server and vLLM send it
in the final chunk), so a few KiB of tail are enough and memory stays bounded per request.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

TAIL_BYTES = 16 * 1024


class UsageTap:
    __slots__ = ("_first", "_on_first", "_tail", "bytes")

    def __init__(self, on_first: Callable[[], None] | None = None) -> None:
        self._on_first = on_first
        self._first = False
        self._tail = b""
        self.bytes = 0

    def chunk(self, data: bytes) -> None:
        if not data:
            return
        if not self._first:
            self._first = True
            if self._on_first is not None:
                self._on_first()
        self.bytes += len(data)
        tail = self._tail + data
        self._tail = tail[-TAIL_BYTES:] if len(tail) > TAIL_BYTES else tail

    @property
    def tail(self) -> bytes:
        """The last :data:`TAIL_BYTES` relayed."""
        return self._tail

    @property
    def started(self) -> bool:
        return self._first

    def usage(self) -> tuple[int | None, int | None]:
        """``(prompt_tokens, completion_tokens)`` from the last ``usage`` seen, or Nones."""
        return usage_of(self._tail)


def usage_of(body: bytes) -> tuple[int | None, int | None]:
    if b'"usage"' not in body:
        return None, None
    candidates: list[bytes] = []
    stripped = body.strip()
    if stripped.startswith(b"{"):
        candidates.append(stripped)
    for event in reversed(body.split(b"\n\n")):
        line = event.strip()
        if line.startswith(b"data:") and b'"usage"' in line:
            candidates.append(line[5:].strip())
    for raw in candidates:
        try:
            doc: Any = json.loads(raw)
        except ValueError:
            continue
        usage = doc.get("usage") if isinstance(doc, dict) else None
        if isinstance(usage, dict):
            prompt = usage.get("prompt_tokens", usage.get("input_tokens"))
            output = usage.get("completion_tokens", usage.get("output_tokens"))
            return _int(prompt), _int(output)
    return None, None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
