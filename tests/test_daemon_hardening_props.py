"""Issue 19: properties of the pure pieces of the hardening (hypothesis)."""

from __future__ import annotations

import json
import unicodedata
from typing import Any
from urllib.parse import unquote

from hypothesis import given
from hypothesis import strategies as st

from llamaswap.daemon.extract import containers
from llamaswap.daemon.logsafe import printable
from llamaswap.daemon.paths import ClimbsOutError, upstream_rest

segment = st.sampled_from(["a", "b", ".", "..", "%2e", "%2E%2e", "..%2f", "x%2Fy", "", "%5c.."])


@given(st.lists(segment, min_size=1, max_size=8))
def test_upstream_paths_never_climb_above_the_model_root(segments: list[str]) -> None:
    try:
        rest = upstream_rest(segments)
    except ClimbsOutError:
        return
    assert rest.startswith("/")
    decoded = unquote(rest).replace("\\", "/").split("/")
    if any(part in (".", "..") for part in decoded):  # only a path sent as is may keep them:
        assert rest == "/" + "/".join(segments)  # and then none of them decodes to a dot segment
        raise AssertionError(f"dot segment forwarded: {segments} -> {rest}")


@given(st.text(max_size=300))
def test_printable_output_has_no_control_or_invisible_characters(text: str) -> None:
    out = printable(text)
    assert "\r" not in out and "\n" not in out and "\x1b" not in out
    assert not any(unicodedata.category(ch) == "Cc" for ch in out)
    assert not any(0x200B <= ord(ch) <= 0x200F or 0x202A <= ord(ch) <= 0x202E for ch in out)


json_values: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(alphabet='{}[]"\\ab,:', max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=3), inner, max_size=4)
    ),
    max_leaves=30,
)


def _count(value: Any) -> int:
    if isinstance(value, list):
        return 1 + sum(_count(v) for v in value)
    if isinstance(value, dict):
        return 1 + sum(_count(v) for v in value.values())
    return 0


@given(json_values, st.integers(min_value=0, max_value=40))
def test_container_count_matches_the_parsed_structure(value: Any, limit: int) -> None:
    body = json.dumps(value).encode()
    exact = _count(value)
    assert containers(body, limit) == (exact if exact > limit else 0)
