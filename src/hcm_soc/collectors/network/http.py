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
_REQUEST_LINE = re.compile(rb"^([A-Z]{3,10}) (\S+) HTTP/(\d\.\d)$")
_STATUS_LINE = re.compile(rb"^HTTP/(\d\.\d) (\d{3})(?: (.*))?$")
_WANTED = {
    name.encode(): name
    for name in ("host", "user-agent", "referer", "content-type", "content-length", "transfer-encoding")
}
_MAX_PENDING = 64  # pipelined requests waiting for their responses
_MAX_HEADER = 64 * 1024  # a header block larger than this is not HTTP we want to keep buffering


@cython.no_gc  # holds bytes and strings only
@cython.cclass
class _Message:
    __slots__ = ("body_bytes", "headers", "start", "ts")

    def __init__(self, ts: float, start: tuple[bytes, ...], headers: dict[str, str]) -> None:
        self.ts = ts
        self.start = start
        self.headers = headers
        self.body_bytes = 0


@cython.no_gc  # its buffer and its current message, never its connection
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
            lines = head.split(b"\r\n")
            match = (_REQUEST_LINE if is_request else _STATUS_LINE).match(lines[0])
            if match is None or (is_request and match.group(1) not in _METHODS):
                self._break(side)
                return
            headers: dict[str, str] = {}
            for line in lines[1:]:
                name, sep, value = line.partition(b":")
                if sep:
                    key = _WANTED.get(name.strip().lower())
                    if key is not None:  # decode only the headers the records and body framing use
                        headers[key] = value.strip().decode("utf-8", "replace")
            msg = _Message(ts, match.groups(), headers)
            side.current = msg
            side.chunked = "chunked" in headers.get("transfer-encoding", "").lower()
            side.chunk_left = 0
            side.remaining = 0
            if not side.chunked:
                length = headers.get("content-length", "0").strip()
                side.remaining = int(length) if length.isdigit() else 0
                # A HEAD/304/204/1xx response has no body, whatever the headers say.
                if not is_request and (msg.start[1] in (b"204", b"304") or msg.start[1].startswith(b"1")):
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
        target = start[1].decode("latin-1")
        http["version"] = start[2].decode("latin-1")
        headers = req.headers
        request: dict[str, Any] = {"method": start[0].decode("latin-1"), "body": {"bytes": req.body_bytes}}
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
        http.setdefault("version", resp.start[0].decode("latin-1"))
        response: dict[str, Any] = {"status_code": int(resp.start[1]), "body": {"bytes": resp.body_bytes}}
        if "content-type" in resp.headers:
            response["mime_type"] = resp.headers["content-type"].split(";")[0].strip()
        http["response"] = response
    return event
