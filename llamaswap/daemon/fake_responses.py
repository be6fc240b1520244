"""The OpenAI Responses API's shapes (``POST /v1/responses``) for the fake upstream.

llama-server answers ``/v1/responses``; so that the openai SDK's ``client.responses.create`` works
against a fake upstream unchanged, it gets a ``response`` object (output message with one
``output_text`` part, usage in input/output tokens) or, streaming, the event sequence the SDK reads:
``response.created``, ``response.output_item.added``, ``response.content_part.added``, one
``response.output_text.delta`` per token, then the matching ``.done`` events and
``response.completed``. Pure functions: timing stays in :mod:`llamaswap.daemon.fake_upstream`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any


def output_tokens(body: dict[str, Any], default: int) -> int:
    value = body.get("max_output_tokens")
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return default


def _message(ident: str, text: str, status: str) -> dict[str, Any]:
    part = {"type": "output_text", "text": text, "annotations": []}
    content = [] if status == "in_progress" else [part]
    return {
        "type": "message",
        "id": f"msg_{ident}",
        "status": status,
        "role": "assistant",
        "content": content,
    }


def response_object(
    ident: str, model: str, text: str, prompt: int, output: int, status: str = "completed"
) -> dict[str, Any]:
    """A whole ``response`` (also the payload of ``response.created``/``.completed``)."""
    done = status == "completed"
    return {
        "id": f"resp_{ident}",
        "object": "response",
        "created_at": int(time.time()),
        "status": status,
        "model": model,
        "output": [_message(ident, text, "completed")] if done else [],
        "parallel_tool_calls": False,
        "tool_choice": "auto",
        "tools": [],
        "error": None,
        "incomplete_details": None,
        "instructions": None,
        "metadata": {},
        "usage": {
            "input_tokens": prompt,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": output,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": prompt + output,
        }
        if done
        else None,
    }


def _event(kind: str, number: int, **fields: Any) -> bytes:
    data = {"type": kind, "sequence_number": number, **fields}
    return f"event: {kind}\ndata: {json.dumps(data)}\n\n".encode()


def stream_head(ident: str, model: str, prompt: int) -> Iterator[bytes]:
    """The events before the first token."""
    yield _event(
        "response.created", 0, response=response_object(ident, model, "", prompt, 0, "in_progress")
    )
    yield _event(
        "response.output_item.added", 1, output_index=0, item=_message(ident, "", "in_progress")
    )
    yield _event(
        "response.content_part.added",
        2,
        item_id=f"msg_{ident}",
        output_index=0,
        content_index=0,
        part={"type": "output_text", "text": "", "annotations": []},
    )


def stream_delta(ident: str, index: int, word: str) -> bytes:
    """Token ``index`` (0-based) of the answer."""
    return _event(
        "response.output_text.delta",
        3 + index,
        item_id=f"msg_{ident}",
        output_index=0,
        content_index=0,
        delta=word,
    )


def stream_tail(ident: str, model: str, text: str, prompt: int, output: int) -> Iterator[bytes]:
    """The events after the last token."""
    n = 3 + output
    part = {"type": "output_text", "text": text, "annotations": []}
    yield _event(
        "response.output_text.done",
        n,
        item_id=f"msg_{ident}",
        output_index=0,
        content_index=0,
        text=text,
    )
    yield _event(
        "response.content_part.done",
        n + 1,
        item_id=f"msg_{ident}",
        output_index=0,
        content_index=0,
        part=part,
    )
    yield _event(
        "response.output_item.done", n + 2, output_index=0, item=_message(ident, text, "completed")
    )
    yield _event(
        "response.completed", n + 3, response=response_object(ident, model, text, prompt, output)
    )
