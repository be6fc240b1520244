"""Which model a request is for, and the body rewrites applied before forwarding (reference §2.4/2.5).

Pure functions over bytes, so they are cheap to fuzz. The model name comes from, in order:
a JSON object body's ``model`` (when the content type says JSON, or the body looks like a JSON
object), a ``multipart/form-data`` field ``model``, an url-encoded form field, then ``?model=``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs


class BadRequestError(ValueError):
    """The request cannot be routed: the message says why (becomes a 400)."""


@dataclass
class Extracted:
    model: str | None
    stream: bool
    json_body: dict[str, Any] | None = None
    """The parsed JSON object, when the body is one (filters rewrite it)."""


_BOUNDARY = re.compile(r'boundary="?([^";]+)"?', re.IGNORECASE)
_MODEL_PART = re.compile(
    rb'content-disposition:[^\r\n]*\bname="?model"?(?:[;\s]|$)', re.IGNORECASE | re.MULTILINE
)


_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
"""A JSON string (unrolled, so it runs in linear time)."""


def containers(body: bytes, limit: int) -> int:
    """Objects plus arrays in a JSON text, counted without parsing it (0 when within ``limit``).

    ``json.loads`` of 17M empty objects took 1.3 GB and 3 s of the event loop: counting the
    brackets first costs a scan at C speed. The plain count is an upper bound (brackets inside
    strings count too); only when it is over the limit are the strings taken out and the rest
    counted again, so prompts full of code are not refused for the braces they quote.
    """
    rough = body.count(b"{") + body.count(b"[")
    if rough <= limit:
        return 0
    bare = _JSON_STRING.sub(b"", body)
    exact = bare.count(b"{") + bare.count(b"[")
    return exact if exact > limit else 0


def extract(
    content_type: str,
    body: bytes,
    query: Mapping[str, str],
    *,
    query_first: bool = False,
    max_containers: int | None = None,
) -> Extracted:
    """Find the model name and the ``stream`` flag.

    ``max_containers``: refuse (400) a JSON body with more objects and arrays than this before
    building it (``limits.maxJsonContainers``)."""
    query_model = query.get("model") or None
    query_stream = query.get("stream") == "true"
    if query_first:
        return Extracted(query_model, query_stream)
    lowered = content_type.lower()
    if "json" in lowered or body.lstrip()[:1] == b"{":
        if max_containers is not None and (count := containers(body, max_containers)):
            raise BadRequestError(
                f"JSON body has {count} objects and arrays, more than {max_containers} "
                "(limits.maxJsonContainers)"
            )
        try:
            parsed = json.loads(body)
        except (ValueError, RecursionError) as exc:
            if "json" in lowered:
                raise BadRequestError(f"malformed JSON body: {exc}") from None
        else:
            if not isinstance(parsed, dict):
                if "json" in lowered:
                    raise BadRequestError(
                        f"JSON body must be an object, got {type(parsed).__name__}"
                    )
            else:
                model = parsed.get("model")
                if model is not None and not isinstance(model, str):
                    raise BadRequestError(f"'model' must be a string, got {type(model).__name__}")
                return Extracted(model or query_model, parsed.get("stream") is True, parsed)
    if lowered.startswith("multipart/form-data"):
        field = multipart_field(content_type, body, "model")
        stream = multipart_field(content_type, body, "stream") == "true"
        return Extracted(field or query_model, stream or query_stream)
    if lowered.startswith("application/x-www-form-urlencoded"):
        try:
            form = parse_qs(body.decode("utf-8"), keep_blank_values=True)
        except UnicodeDecodeError:
            form = {}
        model = (form.get("model") or [""])[0]
        stream = (form.get("stream") or [""])[0] == "true"
        return Extracted(model or query_model, stream or query_stream)
    return Extracted(query_model, query_stream)


def _parts(content_type: str, body: bytes) -> tuple[bytes, list[tuple[int, int, bytes]]]:
    """(delimiter, [(value start, value end, headers)]) of each multipart part."""
    match = _BOUNDARY.search(content_type)
    if not match:
        return b"", []
    delimiter = b"--" + match.group(1).strip().encode("latin-1", "replace")
    parts: list[tuple[int, int, bytes]] = []
    pos = body.find(delimiter)
    while pos != -1:
        start = pos + len(delimiter)
        if body[start : start + 2] == b"--":
            break
        head_end = body.find(b"\r\n\r\n", start)
        nxt = body.find(b"\r\n" + delimiter, start)
        if head_end == -1 or nxt == -1 or head_end > nxt:
            break
        parts.append((head_end + 4, nxt, body[start:head_end]))
        pos = nxt + 2
    return delimiter, parts


def multipart_field(content_type: str, body: bytes, name: str) -> str | None:
    """A small text field of a multipart form, without parsing (or copying) the file parts."""
    pattern = re.compile(
        rb'content-disposition:[^\r\n]*\bname="?' + re.escape(name.encode()) + rb'"?(?:[;\s]|$)',
        re.IGNORECASE | re.MULTILINE,
    )
    for start, end, headers in _parts(content_type, body)[1]:
        if pattern.search(headers):
            return body[start:end].decode("utf-8", "replace")
    return None


def replace_multipart_model(content_type: str, body: bytes, model: str) -> bytes:
    """The body with its ``model`` field's value replaced (``useModelName`` for multipart)."""
    for start, end, headers in _parts(content_type, body)[1]:
        if _MODEL_PART.search(headers):
            return body[:start] + model.encode() + body[end:]
    return body


def apply_filters(
    body: dict[str, Any],
    use_model_name: str,
    strip_params: Sequence[str],
    set_params: Mapping[str, Any],
) -> bool:
    """useModelName -> stripParams (never ``model``) -> setParams, in place; True if changed."""
    changed = False
    if use_model_name and body.get("model") != use_model_name:
        body["model"] = use_model_name
        changed = True
    for key in sorted(strip_params):
        if key != "model" and key in body:
            del body[key]
            changed = True
    for key in sorted(set_params):
        body[key] = set_params[key]
        changed = True
    return changed
