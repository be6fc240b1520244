"""What the request path learns about one model-dispatched request, for the operator's view.

The handler fills a :class:`RequestFacts` as it goes (model, ticket, first byte, usage tail); the
operator middleware reads it once the response is finished and turns it into an access-log line,
an activity row and events. Keeping it a plain record on the request means the handler makes no
logging decisions and pays nothing but a few attribute writes.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aiohttp import web

from llamaswap.record.usage import UsageTap

if TYPE_CHECKING:
    from llamaswap.daemon.host import Ticket


_COUNT = re.compile(rb'"(prompt_tokens|input_tokens|completion_tokens|output_tokens)"\s*:\s*(\d+)')
_PROMPT = (b"prompt_tokens", b"input_tokens")


def usage_counts(tail: bytes) -> tuple[int | None, int | None]:
    """``(prompt_tokens, completion_tokens)`` of the last ``usage`` object in a body's tail.

    What :func:`llamaswap.record.usage.usage_of` finds, without decoding the JSON: every request
    pays for this, and a regex over the few hundred bytes after the last ``"usage"`` costs a tenth
    of ``json.loads`` on the whole body (OpenAI streams repeat ``"usage":null`` in each chunk; the
    last occurrence is the final chunk's object).
    """
    at = tail.rfind(b'"usage"')
    if at < 0:
        return None, None
    prompt = completion = None
    for match in _COUNT.finditer(tail, at, at + 512):
        if match.group(1) in _PROMPT:
            prompt = int(match.group(2)) if prompt is None else prompt
        elif completion is None:
            completion = int(match.group(2))
    return prompt, completion


class ResponseTap(UsageTap):
    """A :class:`UsageTap` that also keeps the first ``capture`` bytes (captures are opt-in)."""

    __slots__ = ("_capture", "head")

    def __init__(self, on_first: Callable[[], None] | None, capture: int = 0) -> None:
        super().__init__(on_first)
        self._capture = capture
        self.head = bytearray() if capture else None

    def chunk(self, data: bytes) -> None:
        super().chunk(data)
        head = self.head
        if head is not None and len(head) < self._capture:
            head += data[: self._capture - len(head)]


@dataclass(slots=True)
class RequestFacts:
    model: str = ""
    stream: bool = False
    request_id: str = ""
    ticket: Ticket | None = None
    first_byte: float | None = None
    """Loop time of the first response byte relayed."""
    tap: UsageTap | None = None
    status: int | None = None
    """The handler's own verdict (a stream cut by a dying upstream is a 502 sent as a 200)."""
    request_body: bytes | None = None
    """Only with captures on: the head of the request body (size-capped)."""


FACTS = web.RequestKey("llamaswap.facts", RequestFacts)
"""Key of the request's :class:`RequestFacts` (set only on model-dispatched routes)."""


def facts_of(request: web.Request) -> RequestFacts:
    facts = request.get(FACTS)
    if facts is None:
        facts = request[FACTS] = RequestFacts()
    return facts
