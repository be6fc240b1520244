"""The relay's framed fast path: chunk frames forwarded verbatim must still be exact chunked
encoding of the same body, however the upstream's bytes are split, with extensions, odd size
lines, trailers or a client that refuses writes mixed in (those go through the de-chunking path)."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from llamaswap.daemon.upstream_client import _Conn, _whole_frames


def dechunk(stream: bytes) -> tuple[bytes, bytes]:
    """(body, rest): a strict decoder for what the client receives."""
    body = b""
    pos = 0
    while True:
        eol = stream.index(b"\r\n", pos)
        line = stream[pos:eol]
        assert line and all(c in b"0123456789abcdefABCDEF" for c in line), line
        size = int(line, 16)
        start = eol + 2
        if size == 0:
            return body, stream[stream.index(b"\r\n\r\n", eol) + 4 :]
        body += stream[start : start + size]
        assert stream[start + size : start + size + 2] == b"\r\n"
        pos = start + size + 2


class Client:
    """Collects what the relay writes to the client, chunk-framed as ``forward`` does."""

    def __init__(self, refusals: list[bool]) -> None:
        self.out = b""
        self._refusals = itertools.cycle(refusals or [False])
        self.framed_calls = 0

    def sink(self, data: bytes) -> bool:
        if next(self._refusals):
            return False
        self.out += b"%x\r\n%b\r\n" % (len(data), data)
        return True

    def framed(self, frames: bytes) -> bool:
        if next(self._refusals):
            return False
        self.framed_calls += 1
        self.out += frames
        return True


def chunked_conn(refusals: list[bool]) -> tuple[_Conn, Client]:
    """A connection as after a response head with ``Transfer-Encoding: chunked``, feeding a client."""
    conn = _Conn()
    conn._state = "chunked"
    client = Client(refusals)
    conn.sink, conn.framed_sink = client.sink, client.framed
    return conn, client


def feed(payloads: list[bytes], upstream: bytes, cuts: list[int], refusals: list[bool]) -> None:
    conn, client = chunked_conn(refusals)
    points = sorted({c % (len(upstream) + 1) for c in cuts} | {0, len(upstream)})
    for a, b in itertools.pairwise(points):
        if b > a:
            conn.data_received(upstream[a:b])
    queued = b"".join(conn._body)  # what the relay task would write (framed by aiohttp)
    relayed = client.out + (b"%x\r\n%b\r\n" % (len(queued), queued) if queued else b"")
    body, rest = dechunk(relayed + b"0\r\n\r\n")
    assert body == b"".join(payloads) and rest == b""
    assert conn._state == "done"


size_lines = st.sampled_from(["%x", "%X", "%x;ext=1", "%04x"])


@settings(max_examples=300, deadline=None)
@given(
    payloads=st.lists(st.binary(min_size=1, max_size=40), max_size=8),
    formats=st.lists(size_lines, min_size=8, max_size=8),
    trailer=st.booleans(),
    cuts=st.lists(st.integers(min_value=0, max_value=600), max_size=10),
    refusals=st.lists(st.booleans(), max_size=4),
)
def test_framed_relay_is_exact_for_any_split(
    payloads: list[bytes],
    formats: list[str],
    trailer: bool,
    cuts: list[int],
    refusals: list[bool],
) -> None:
    upstream = b"".join(
        (fmt % len(p)).encode() + b"\r\n" + p + b"\r\n"
        for p, fmt in zip(payloads, formats, strict=False)
    )
    upstream += b"0\r\nX-T: 1\r\n\r\n" if trailer else b"0\r\n\r\n"
    feed(payloads, upstream, cuts, refusals)


def test_one_event_per_read_takes_the_framed_path() -> None:
    event = b"data: {}\n\n"
    frame = b"%x\r\n%b\r\n" % (len(event), event)
    conn, client = chunked_conn([])
    for _ in range(5):
        conn.data_received(frame)
    assert client.out == frame * 5 and client.framed_calls == 5


def test_whole_frames_is_strict() -> None:
    assert _whole_frames(b"3\r\nabc\r\n4\r\nde") == 8
    assert _whole_frames(b"3\r\nabc\r\n0\r\n\r\n") == 8  # the final chunk is never forwarded
    assert _whole_frames(b"3;x=1\r\nabc\r\n") == 0  # extensions: de-chunked instead
    assert _whole_frames(b"3\r\nabcX\r\n") == 0  # no CRLF after the data
    assert _whole_frames(b"g\r\n") == 0 and _whole_frames(b" 3\r\nabc\r\n") == 0
    assert _whole_frames(b"\r\n") == 0 and _whole_frames(b"") == 0


def test_the_last_piece_is_left_to_the_relay_task_with_the_end_of_the_body() -> None:
    """So the relay writes it and the terminating chunk at once (``write_eof(last)``)."""
    event = b"data: {}\n\n"
    frame = b"%x\r\n%b\r\n" % (len(event), event)
    conn, client = chunked_conn([])
    conn.data_received(frame)
    conn.data_received(frame + frame + b"0\r\n\r\n")
    assert client.out == frame  # the first read went straight out
    assert list(conn._body) == [event + event] and conn._state == "done"
