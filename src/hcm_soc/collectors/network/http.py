"""Clear-text HTTP/1.x metadata from TCP payloads, as ECS ``network.http`` events.

Responsible for buffering each direction of a connection, parsing request and
status lines plus the headers we map, skipping bodies (Content-Length or chunked,
best effort) and pairing requests with responses in order (pipelining). Bytes that
are not HTTP are counted, never raised.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable
from typing import Any

import cython

from hcm_soc.collectors.network.ecs import protocol_event

__all__ = ["HttpTracker"]

_METHODS = frozenset(
    {b"GET", b"POST", b"PUT", b"DELETE", b"HEAD", b"OPTIONS", b"PATCH", b"CONNECT", b"TRACE", b"PROPFIND"}
)
# What the first line of a message must look like; _request_line and _status_line give these
# patterns' match(...).groups() without the regular expression engine.
_REQUEST_LINE = re.compile(rb"^([A-Z]{3,10}) (\S+) HTTP/(\d\.\d)$")
_STATUS_LINE = re.compile(rb"^HTTP/(\d\.\d) (\d{3})(?: (.*))?$")
_WANTED = ("host", "user-agent", "referer", "content-type", "content-length", "transfer-encoding")
# (name in bytes, name) by the name's length: the wanted names' lengths all differ
_WANTED_BY_LENGTH: tuple[tuple[bytes, str] | None, ...] = tuple(
    next(((n.encode(), n) for n in _WANTED if len(n) == length), None)
    for length in range(max(map(len, _WANTED)) + 1)
)
assert sum(w is not None for w in _WANTED_BY_LENGTH) == len(_WANTED)
_MAX_PENDING = 64  # pipelined requests waiting for their responses
_MAX_HEADER = 64 * 1024  # a header block larger than this is not HTTP we want to keep buffering


@cython.no_gc  # holds bytes and strings only
@cython.freelist(16)  # created and freed per connection or message: reuse the memory
@cython.cclass
class _Message:
    __slots__ = ("body_bytes", "headers", "start", "ts")

    def __init__(self, ts: float, start: tuple[bytes | None, ...], headers: dict[str, str]) -> None:
        self.ts = ts
        self.start = start
        self.headers = headers
        self.body_bytes = 0


@cython.no_gc  # its buffer and its current message, never its connection
@cython.freelist(16)  # created and freed per connection or message: reuse the memory
@cython.cclass
class _Direction:
    __slots__ = ("broken", "buf", "chunk_left", "chunked", "current", "remaining")

    def __init__(self) -> None:
        self.buf = bytearray()
        self.current: _Message | None = None
        self.remaining = 0  # body bytes still to skip (Content-Length mode)
        self.chunked = False
        self.chunk_left = 0  # bytes left in the current chunk (+2 for CRLF)
        self.broken = False


@cython.no_gc  # its two directions and pending requests, never the tracker
@cython.freelist(16)  # created and freed per connection or message: reuse the memory
@cython.cclass
class _Conn:
    __slots__ = ("endpoints", "orig", "requests", "resp")

    def __init__(self) -> None:
        self.orig = _Direction()
        self.resp = _Direction()
        self.requests: deque[_Message] = deque()
        self.endpoints: tuple[str, int, str, int] | None = None


class HttpTracker:
    """Per-connection HTTP/1.x state; emits one ECS event per request/response pair."""

    def __init__(self, on_emit: Callable[[dict[str, Any]], None]) -> None:
        self.on_emit = on_emit
        self.non_http = 0  # segments/streams that did not look like HTTP
        self._conns: dict[tuple[Any, ...], _Conn] = {}

    def add_segment(
        self,
        ts: float,
        conn_key: tuple[Any, ...],
        from_originator: bool,
        payload: bytes,
        endpoints: tuple[str, int, str, int] | None = None,
    ) -> bool:
        """Feed one TCP payload. ``endpoints`` = (client ip, port, server ip, port); when omitted
        and ``conn_key`` starts with those four values, they are taken from the key. Returns
        False once this direction is not HTTP (later bytes of it would be ignored)."""
        conn = self._conns.get(conn_key)
        if conn is None:
            conn = self._conns[conn_key] = _Conn()
            if endpoints is None and len(conn_key) >= 4:
                endpoints = (str(conn_key[0]), int(conn_key[1]), str(conn_key[2]), int(conn_key[3]))
            conn.endpoints = endpoints
        side = conn.orig if from_originator else conn.resp
        if side.broken:
            return False
        if not payload:
            return True
        size = len(payload)
        if side.remaining > size and not side.buf and not side.chunked and side.current is not None:
            # Inside a body of known length: count it, never buffer it (downloads are most bytes).
            side.remaining -= size
            side.current.body_bytes += size
            return True
        side.buf += payload
        try:
            self._drain(ts, conn, side, from_originator)
        except (ValueError, UnicodeError):
            self._break(side)
        return not side.broken

    def _break(self, side: _Direction) -> None:
        side.broken = True
        side.buf.clear()
        self.non_http += 1

    def _drain(self, ts: float, conn: _Conn, side: _Direction, is_request: bool) -> None:
        while True:
            if side.current is not None:
                if not _skip_body(side):
                    return
                self._complete(conn, side.current, is_request)
                side.current = None
                continue
            if not side.buf:
                return
            end = side.buf.find(b"\r\n\r\n")
            if end < 0:
                if len(side.buf) > _MAX_HEADER or not _plausible(side.buf, is_request):
                    self._break(side)
                return
            head = bytes(side.buf[:end])
            del side.buf[: end + 4]
            first_end = head.find(b"\r\n")
            if first_end < 0:
                first_end = len(head)
            start = _request_line(head, first_end) if is_request else _status_line(head, first_end)
            if start is None or (is_request and start[0] not in _METHODS):
                self._break(side)
                return
            headers = _headers(head, first_end + 2)
            msg = _Message(ts, start, headers)
            side.current = msg
            coding = headers.get("transfer-encoding")
            side.chunked = coding is not None and "chunked" in coding.lower()
            side.chunk_left = 0
            side.remaining = 0
            if not side.chunked:
                length = headers.get("content-length")
                if length is not None:
                    length = length.strip()  # already stripped of ASCII whitespace, not of all
                    side.remaining = int(length) if length.isdigit() else 0
                # A HEAD/304/204/1xx response has no body, whatever the headers say.
                if not is_request:
                    status = cython.cast(bytes, msg.start[1])
                    if status == b"204" or status == b"304" or status[:1] == b"1":
                        side.remaining = 0
                if not is_request and conn.requests and conn.requests[0].start[0] == b"HEAD":
                    side.remaining = 0

    def _complete(self, conn: _Conn, msg: _Message, is_request: bool) -> None:
        if is_request:
            conn.requests.append(msg)
            if len(conn.requests) > _MAX_PENDING:  # a responder that never answers must not grow memory
                self.on_emit(_event(conn, conn.requests.popleft(), None))
        else:
            self.on_emit(_event(conn, conn.requests.popleft() if conn.requests else None, msg))

    def close(self, conn_key: tuple[Any, ...]) -> None:
        """End of connection: messages still in progress are emitted with what is known."""
        conn = self._conns.pop(conn_key, None)
        if conn is None:
            return
        if conn.orig.current is not None:
            conn.requests.append(conn.orig.current)
        if conn.resp.current is not None:
            self.on_emit(_event(conn, conn.requests.popleft() if conn.requests else None, conn.resp.current))
        while conn.requests:
            self.on_emit(_event(conn, conn.requests.popleft(), None))

    def flush(self) -> None:
        for key in list(self._conns):
            self.close(key)


def _headers(head: bytes, pos: int) -> dict[str, str]:
    """The wanted headers of the header lines from ``pos`` on (lines split at CRLF, the name up to
    the line's first colon, name and value stripped of ASCII whitespace, names compared in ASCII
    lower case, a repeated header's last value wins): what ``line.partition(b":")``,
    ``strip()``, ``lower()`` and a dict lookup per line give, read byte by byte (C code when
    compiled); only the wanted values are decoded."""
    headers: dict[str, str] = {}
    n = len(head)
    while pos < n:
        colon = -1
        eol = pos
        while eol < n:
            c = head[eol]
            if c == 13 and eol + 1 < n and head[eol + 1] == 10:
                break
            if c == 58 and colon < 0:
                colon = eol
            eol += 1
        if colon >= 0:
            start = pos
            end = colon
            while start < end and _is_space(head[start]):
                start += 1
            while end > start and _is_space(head[end - 1]):
                end -= 1
            wanted = _WANTED_BY_LENGTH[end - start] if end - start < len(_WANTED_BY_LENGTH) else None
            if wanted is not None:
                name = cython.cast(bytes, wanted[0])
                i = 0
                while i < end - start:
                    c = head[start + i]
                    if 65 <= c <= 90:  # ASCII upper case, as bytes.lower()
                        c += 32
                    if c != name[i]:
                        break
                    i += 1
                if i == end - start:  # decode only the headers the records and body framing use
                    start = colon + 1
                    end = eol
                    while start < end and _is_space(head[start]):
                        start += 1
                    while end > start and _is_space(head[end - 1]):
                        end -= 1
                    headers[wanted[1]] = head[start:end].decode("utf-8", "replace")
        pos = eol + 2
    return headers


def _request_line(head: bytes, n: int) -> tuple[bytes, bytes, bytes] | None:
    """``_REQUEST_LINE.match(head[:n]).groups()``, or None, read byte by byte (C code when
    compiled). Nothing in the pattern matches a newline, and its ``$`` also matches before a
    final one: that newline is left out first."""
    if n and head[n - 1] == 10:
        n -= 1
    sp = 0
    while sp < n and sp <= 10 and 65 <= head[sp] <= 90:  # [A-Z]{3,10}
        sp += 1
    if sp < 3 or sp > 10 or sp >= n or head[sp] != 32:
        return None
    start = sp + 1
    end = start
    while end < n and not _is_space(head[end]):  # \S+: bytes.strip()'s whitespace is \s
        end += 1
    if end == start or n - end != 9 or head[end] != 32 or head[end + 1 : end + 6] != b"HTTP/":
        return None
    if not (_is_digit(head[end + 6]) and head[end + 7] == 46 and _is_digit(head[end + 8])):
        return None
    return head[:sp], head[start:end], head[end + 6 : end + 9]


def _status_line(head: bytes, n: int) -> tuple[bytes, bytes, bytes | None] | None:
    """``_STATUS_LINE.match(head[:n]).groups()``, or None, read byte by byte (see
    :func:`_request_line`; the reason phrase's ``.`` matches anything but a newline)."""
    if n and head[n - 1] == 10:
        n -= 1
    if n < 12 or head[:5] != b"HTTP/" or head[8] != 32:
        return None
    if not (_is_digit(head[5]) and head[6] == 46 and _is_digit(head[7])):
        return None
    if not (_is_digit(head[9]) and _is_digit(head[10]) and _is_digit(head[11])):
        return None
    reason: bytes | None = None
    if n > 12:
        if head[12] != 32:
            return None
        reason = head[13:n]
        if b"\n" in reason:
            return None
    return head[5:8], head[9:12], reason


def _is_digit(c: int) -> bool:
    return 48 <= c <= 57


def _is_space(c: int) -> bool:
    """ASCII whitespace, as ``bytes.strip()`` removes it."""
    return c == 32 or 9 <= c <= 13


def _plausible(buf: bytearray, is_request: bool) -> bool:
    head = bytes(buf[:8])
    if is_request:
        return any(m.startswith(head[: len(m)]) or head.startswith(m + b" ") for m in _METHODS)
    return b"HTTP/1."[: len(head)] == head[:7]


def _skip_body(side: _Direction) -> bool:
    """Consume body bytes available; True when the body is complete."""
    msg = side.current
    assert msg is not None
    if not side.chunked:
        take = min(side.remaining, len(side.buf))
        del side.buf[:take]
        side.remaining -= take
        msg.body_bytes += take
        return side.remaining == 0
    while True:
        if side.chunk_left:
            take = min(side.chunk_left, len(side.buf))
            data_part = max(0, min(take, side.chunk_left - 2))
            msg.body_bytes += data_part
            del side.buf[:take]
            side.chunk_left -= take
            if side.chunk_left:
                return False
            continue
        eol = side.buf.find(b"\r\n")
        if eol < 0:
            return False
        size_text = bytes(side.buf[:eol]).split(b";")[0].strip()
        size = int(size_text, 16)
        del side.buf[: eol + 2]
        if size == 0:
            # Trailers end with an empty line; without trailers the next two bytes are CRLF.
            end = side.buf.find(b"\r\n")
            if end < 0:
                side.chunk_left = 0
                side.buf[:0] = b"0\r\n"  # put the marker back and wait for more bytes
                return False
            trailer_end = 0 if end == 0 else side.buf.find(b"\r\n\r\n")
            if trailer_end < 0:
                side.buf[:0] = b"0\r\n"
                return False
            del side.buf[: trailer_end + (2 if end == 0 else 4)]
            return True
        side.chunk_left = size + 2


def _event(conn: _Conn, req: _Message | None, resp: _Message | None) -> dict[str, Any]:
    first = req or resp
    assert first is not None
    http: dict[str, Any] = {}
    event = protocol_event(first.ts, "network.http", "http", ["network", "web"], conn.endpoints)
    event["http"] = http
    if req is not None:
        start = req.start
        # typed bytes when compiled: each decode is one C call, not a method lookup
        target = cython.cast(bytes, start[1]).decode("latin-1")
        http["version"] = cython.cast(bytes, start[2]).decode("latin-1")
        headers = req.headers
        request: dict[str, Any] = {
            "method": cython.cast(bytes, start[0]).decode("latin-1"),
            "body": {"bytes": req.body_bytes},
        }
        if "referer" in headers:
            request["referrer"] = headers["referer"]
        if "content-type" in headers:
            request["mime_type"] = headers["content-type"].split(";")[0].strip()
        http["request"] = request
        url: dict[str, Any] = {"original": target}
        path, _, query = target.partition("?")
        if "://" in path:  # absolute form (proxy requests)
            path = "/" + path.split("://", 1)[1].partition("/")[2]
        url["path"] = path
        if query:
            url["query"] = query
        host = headers.get("host")
        if host:
            if host.startswith("["):  # IPv6 literal, maybe with a port
                url["domain"] = host[1:].partition("]")[0]
            else:
                url["domain"] = host.partition(":")[0]
        event["url"] = url
        if "user-agent" in headers:
            event["user_agent"] = {"original": headers["user-agent"]}
    if resp is not None:
        if "version" not in http:
            http["version"] = cython.cast(bytes, resp.start[0]).decode("latin-1")
        response: dict[str, Any] = {
            "status_code": int(cython.cast(bytes, resp.start[1])),
            "body": {"bytes": resp.body_bytes},
        }
        if "content-type" in resp.headers:
            response["mime_type"] = resp.headers["content-type"].split(";")[0].strip()
        http["response"] = response
    return event
