"""``/upstream/<model>/<rest>``: the rest of the path, normalised so it cannot climb out.

Dot segments reached the upstream as sent (``../``, ``%2e%2e``, ``..%2f``), so a request could
climb out of a ``proxy: http://host/prefix`` path prefix. Each segment is percent-decoded to see
what the upstream will make of it; a path with no dot segments is forwarded byte for byte, one
with them is resolved (RFC 3986 section 5.2.4) and re-encoded, and one that climbs above the
model's root is refused.
"""

from __future__ import annotations

from urllib.parse import quote, unquote


class ClimbsOutError(ValueError):
    """The path climbs above the model's root (becomes a 400)."""


def upstream_rest(segments: list[str]) -> str:
    """``/`` + the segments, with dot segments resolved; raises :class:`ClimbsOutError`."""
    decoded = unquote("/".join(segments)).replace("\\", "/").split("/")
    if not any(part in (".", "..") for part in decoded):
        return "/" + "/".join(segments)
    out: list[str] = []
    for part in decoded:
        if part == "..":
            if not out:
                raise ClimbsOutError("the path climbs above the model's root with '..'")
            out.pop()
        elif part not in (".", ""):
            out.append(part)
    joined = "/".join(quote(part, safe="!$&'()*+,;=:@~") for part in out)
    trailing = "/" if joined and decoded[-1] in (".", "..", "") else ""
    return "/" + joined + trailing
