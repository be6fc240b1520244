"""A lean HTTP/1.1 client for the hot path to local upstreams (plain ``http://`` only).

Why not aiohttp's client: profiling the relay showed its per-request object building and, for
event streams, its per-chunk bookkeeping (one StreamReader feed, flow-control check and waiter per
SSE event) were the largest costs of the request path. This client is a single asyncio Protocol
per keep-alive connection: it parses the response head once, de-chunks the body itself and hands
the consumer *everything received so far* in one piece, so a burst of events costs one wake-up.

Scope, on purpose: requests with a ``bytes`` body (or none) to ``http://host:port``; responses
framed by Content-Length, chunked encoding, or connection close. Anything else (https, streamed
request bodies) stays on aiohttp. A request that fails on a reused keep-alive connection before any
response byte arrived is retried once on a fresh connection (the upstream may have closed it idle).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections import deque
from collections.abc import Callable, Iterable
from urllib.parse import urlsplit

from multidict import CIMultiDict

HIGH_WATER = 1 << 20
CONNECT_TIMEOUT = 10.0
MAX_HEAD = 64 * 1024


class UpstreamError(ConnectionError):
    """The upstream connection failed or the response was malformed."""


class _Conn(asyncio.Protocol):
    """One keep-alive connection; at most one request at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.reused = False
        self._buf = b""
        self._state = "idle"  # idle | head | length | chunked | close | done
        self._left = 0
        self._chunk_size = -1  # chunked: -1 = expecting a size line
        self._body: deque[bytes] = deque()
        self._buffered = 0
        self._waiter: asyncio.Future[None] | None = None
        self._error: Exception | None = None
        self._paused = False
        self.status = 0
        self.reason = ""
        self.headers: CIMultiDict[str] = CIMultiDict()
        self.keep_alive = True
        self.got_bytes = False
        self.content_length: int | None = None
        self.sink: Callable[[bytes], bool] | None = None
        """Optional fast path: called with body data as it arrives (only while nothing is queued);
        returns False to refuse (the data is then queued for ``read_chunk`` as usual)."""
        self.framed_sink: Callable[[bytes], bool] | None = None
        """Faster path for chunked bodies relayed as chunked: complete, well-formed chunk frames
        exactly as the upstream sent them (no de-chunking and re-framing); False refuses."""
        self._head_waiting = False

    # ------------------------------------------------------------------ protocol callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._state == "close":
            self._state = "done"
        elif self._state not in ("idle", "done") and self._error is None:
            self._error = UpstreamError(
                f"upstream closed the connection{' mid-response' if self.got_bytes else ''}"
                + (f": {exc}" if exc else "")
            )
        self._wake()

    def data_received(self, data: bytes) -> None:
        framed = self.framed_sink
        if (  # the relay's hot path: whole chunk frames, forwarded as they are
            framed is not None
            and not self._buf
            and self._chunk_size < 0
            and not self._body
            and self._state == "chunked"
            and _whole_frames(data) == len(data)
            and framed(data)
        ):
            return
        if self._state in ("idle", "done"):
            self.closed = True  # unsolicited bytes: this connection cannot be trusted any more
            if self.transport is not None:
                self.transport.close()
            return
        self.got_bytes = True
        self._buf = self._buf + data if self._buf else data
        try:
            self._parse()
        except (ValueError, IndexError) as exc:
            self._error = UpstreamError(f"malformed response from upstream: {exc}")
            self.closed = True
            if self.transport is not None:
                self.transport.close()
        if (
            self._body
            or self._state == "done"
            or self._error is not None
            or (self._head_waiting and self._state != "head")
        ):
            self._wake()

    def pause_writing(self) -> None:  # pragma: no cover - request bodies are small
        pass

    def resume_writing(self) -> None:  # pragma: no cover
        pass

    # ------------------------------------------------------------------ parsing

    def _parse(self) -> None:
        buf = self._buf
        if self._state == "head":
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > MAX_HEAD:
                    raise ValueError("response head too large")
                return
            lines = buf[:end].decode("latin-1").split("\r\n")
            buf = self._buf = buf[end + 4 :]
            version, _, rest = lines[0].partition(" ")
            code, _, self.reason = rest.partition(" ")
            self.status = int(code)
            if self.status < 200:  # 1xx: skip it, the real head follows
                return self._parse() if buf else None
            headers: CIMultiDict[str] = CIMultiDict()
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers.add(name.strip(), value.strip())
            self.headers = headers
            connection = headers.get("Connection", "").lower()
            self.keep_alive = version == "HTTP/1.1" and "close" not in connection
            if "chunked" in headers.get("Transfer-Encoding", "").lower():
                self._state = "chunked"
            elif "Content-Length" in headers:
                self.content_length = self._left = int(headers["Content-Length"])
                self._state = "length" if self._left else "done"
            elif self.status in (204, 304) or self._head_request:
                self._state = "done"
            else:
                self._state = "close"
                self.keep_alive = False
        if not buf:
            return
        if self._state == "length":
            take = buf[: self._left]
            buf = self._buf = buf[len(take) :]
            self._left -= len(take)
            self._push(take)
            if self._left == 0:
                self._state = "done"
        elif self._state == "close":
            self._push(buf)
            buf = self._buf = b""
        elif self._state == "chunked":
            out = []
            pos = 0
            size = self._chunk_size
            framed = self.framed_sink
            if framed is not None and size < 0 and not self._body:
                pos = _whole_frames(buf)
                if buf.startswith(b"0", pos):
                    pos = 0  # the body ends here: its last piece goes out with the terminator
                elif pos and not framed(buf if pos == len(buf) else buf[:pos]):
                    pos = 0  # refused: de-chunk it and queue it for the relay task
            while True:
                if size < 0:
                    eol = buf.find(b"\r\n", pos)
                    if eol < 0:
                        break
                    size_line = buf[pos:eol]
                    if b";" in size_line:  # chunk extensions: ignored
                        size_line = size_line.split(b";", 1)[0]
                    size = int(size_line, 16)
                    if size == 0:
                        end = buf.find(b"\r\n\r\n", eol)  # after optional trailers
                        if end < 0:
                            size = -1
                            break
                        pos = end + 4
                        self._state = "done"
                        break
                    pos = eol + 2
                if len(buf) - pos < size + 2:
                    break
                out.append(buf[pos : pos + size])
                pos += size + 2
                size = -1
            self._chunk_size = size
            buf = self._buf = buf[pos:] if pos else buf
            if out:
                self._push(b"".join(out) if len(out) > 1 else out[0])
        if self._state == "done" and buf:
            self.keep_alive = False  # bytes beyond the response: do not reuse this connection
            self._buf = b""

    _head_request = False

    def _push(self, data: bytes) -> None:
        sink = self.sink
        if sink is not None and not self._body and self._state != "done" and sink(data):
            return  # delivered straight from this callback: no task wake-up for this piece
        # (The last piece of a body is left to the relay task, which writes it together with
        # the end of the response: one write and one wake-up of the client fewer per stream.)
        self._body.append(data)
        self._buffered += len(data)
        if self._buffered > HIGH_WATER and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _wait(self) -> None:
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    # ------------------------------------------------------------------ request side

    def start(self, request: bytes, head_request: bool) -> None:
        self._state = "head"
        self.sink = None
        self.framed_sink = None
        self._buf = b""
        self._head_request = head_request
        self._chunk_size = -1
        self._body.clear()
        self._buffered = 0
        self._error = None
        self.got_bytes = False
        self.content_length = None
        self.status = 0
        assert self.transport is not None
        self.transport.write(request)

    async def read_head(self) -> None:
        self._head_waiting = True
        try:
            while self._state == "head":
                if self._error is not None:
                    raise self._error
                await self._wait()
        finally:
            self._head_waiting = False
        if self._error is not None and not self.status:
            raise self._error

    async def read_chunk(self) -> bytes:
        """Everything received since the last call; b"" at the end of the body."""
        while not self._body:
            if self._state == "done":
                return b""
            if self._error is not None:
                raise self._error
            await self._wait()
        data = self._body.popleft() if len(self._body) == 1 else b"".join(self._body)
        self._body.clear()
        self._buffered = 0
        if self._paused and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()
        return data

    @property
    def finished(self) -> bool:
        return self._state == "done" and not self._body


def _whole_frames(buf: bytes) -> int:
    """Length of the complete, strictly well-formed, non-final chunk frames at the start of ``buf``.

    Strict (hex size without extensions, CRLF after the data) because these bytes are forwarded
    verbatim; anything else is left to the lenient de-chunking parser.
    """
    pos = 0
    end_of_buf = len(buf)
    while pos < end_of_buf:
        eol = buf.find(b"\r\n", pos, pos + 18)
        if eol <= pos:
            return pos
        line = buf[pos:eol]
        if not line.isalnum():
            return pos
        try:
            size = int(line, 16)
        except ValueError:
            return pos
        end = eol + 2 + size
        if size == 0 or end + 2 > end_of_buf or buf[end : end + 2] != b"\r\n":
            return pos
        pos = end + 2
    return pos


class UpstreamResponse:
    def __init__(self, client: LeanClient, key: tuple[str, int], conn: _Conn) -> None:
        self._client = client
        self._key = key
        self._conn = conn
        self.status = conn.status
        self.reason = conn.reason
        self.headers = conn.headers
        self.content_length = conn.content_length
        self._released = False

    async def read_chunk(self) -> bytes:
        return await self._conn.read_chunk()

    @property
    def finished(self) -> bool:
        """The whole body has been read (the last ``read_chunk`` returned its last piece)."""
        return self._conn.finished

    def set_sink(
        self,
        sink: Callable[[bytes], bool] | None,
        framed: Callable[[bytes], bool] | None = None,
    ) -> None:
        """Deliver body data straight from the socket callback while ``sink`` accepts it.

        ``framed``, for a chunked body: gets whole chunk frames as received instead (see
        ``_Conn.framed_sink``); pieces it refuses or that are not whole frames go to ``sink``.
        """
        self._conn.sink = sink
        self._conn.framed_sink = framed

    async def read(self) -> bytes:
        parts = []
        while chunk := await self._conn.read_chunk():
            parts.append(chunk)
        return b"".join(parts)

    def close(self) -> None:
        """Abort: drop the connection (used on errors, cancellation and ``abort_serving``)."""
        if not self._released:
            self._released = True
            if self._conn.transport is not None:
                self._conn.transport.close()

    def release(self) -> None:
        """Done with the response: pool the connection if it is clean, else drop it."""
        if self._released:
            return
        self._released = True
        conn = self._conn
        if conn.finished and conn.keep_alive and not conn.closed:
            conn._state = "idle"
            self._client._pool.setdefault(self._key, []).append(conn)
        elif conn.transport is not None:
            conn.transport.close()


@functools.lru_cache(maxsize=4096)
def _split(url: str) -> tuple[tuple[str, int], str, str]:
    """((host, port), netloc, request target) of a URL; cached: a few URLs repeat endlessly."""
    parts = urlsplit(url)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return (parts.hostname or "127.0.0.1", parts.port or 80), parts.netloc, target


class LeanClient:
    def __init__(self) -> None:
        self._pool: dict[tuple[str, int], list[_Conn]] = {}

    @staticmethod
    def supports(url: str) -> bool:
        return url.startswith("http://")

    async def _connect(self, key: tuple[str, int], timeout: float = CONNECT_TIMEOUT) -> _Conn:
        loop = asyncio.get_running_loop()
        try:  # asyncio.timeout, not wait_for: no extra task and loop turn per new connection
            async with asyncio.timeout(timeout or None):
                _, conn = await loop.create_connection(_Conn, key[0], key[1])
        except (OSError, TimeoutError) as exc:
            raise UpstreamError(f"cannot connect to {key[0]}:{key[1]}: {exc}") from None
        return conn

    def _idle(self, key: tuple[str, int]) -> _Conn | None:
        pool = self._pool.get(key)
        while pool:
            conn = pool.pop()
            if not conn.closed and conn.transport is not None and not conn.transport.is_closing():
                conn.reused = True
                return conn
        return None

    async def request(
        self,
        method: str,
        url: str,
        headers: Iterable[tuple[str, str]],
        body: bytes | None,
        *,
        connect_timeout: float = CONNECT_TIMEOUT,
    ) -> UpstreamResponse:
        """``connect_timeout``: the model's ``timeouts.connect`` (0 = none)."""
        key, netloc, target = _split(url)
        lines = [f"{method} {target} HTTP/1.1", f"Host: {netloc}"]
        lines += [f"{name}: {value}" for name, value in headers]
        payload = body or b""
        if payload or method in ("POST", "PUT", "PATCH"):
            lines.append(f"Content-Length: {len(payload)}")
        raw = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace") + payload
        for attempt in (0, 1):
            conn = self._idle(key) if attempt == 0 else None
            if conn is None:
                conn = await self._connect(key, connect_timeout)
            try:
                conn.start(raw, method == "HEAD")
                await conn.read_head()
            except UpstreamError:
                if conn.transport is not None:
                    conn.transport.close()
                if conn.reused and not conn.got_bytes and attempt == 0:
                    continue  # a stale keep-alive connection: retry once on a fresh one
                raise
            except BaseException:
                if conn.transport is not None:
                    conn.transport.close()
                raise
            return UpstreamResponse(self, key, conn)
        raise UpstreamError("unreachable")  # pragma: no cover

    def close(self) -> None:
        for pool in self._pool.values():
            for conn in pool:
                if conn.transport is not None:
                    with contextlib.suppress(Exception):
                        conn.transport.close()
        self._pool.clear()
