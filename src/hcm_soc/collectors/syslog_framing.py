"""RFC 6587 framing: splitting one syslog TCP or TLS byte stream into messages.

`FrameDecoder` is fed the reads of one connection in order and returns the
complete messages they hold, each as a `Frame` (its bytes without the terminator,
and whether it was cut). Per message it tells octet counting (`LEN SP MSG`) from
newline framing (LF, CRLF or NUL), as `framing` allows; a message longer than
`max_bytes` is cut at a UTF-8 character boundary (`cut_utf8`, also used for UDP
datagrams) and the rest of it thrown away; bad length prefixes and frames cut by
the end of the stream are counted in `framing_errors`. It knows nothing of
sockets, threads or records: the listener in `syslog.py` owns those.
"""

from __future__ import annotations

import itertools
import re
from typing import Literal

Framing = Literal["auto", "newline", "octet"]
#: one message as framed: its bytes (terminator removed) and whether it was cut
Frame = tuple[bytes, bool]

_MAX_LEN_DIGITS = 9  # RFC 6587 MSG-LEN: a longer run of digits is not a length
_DIGIT_AFTER_LF = re.compile(rb"\n[1-9]")  # a line that may start with an RFC 6587 length


def cut_utf8(data: bytes | bytearray, limit: int) -> bytes:
    """The first `limit` bytes of `data` (which is longer), not splitting a UTF-8 character."""
    cut = limit
    while cut > 0 and cut > limit - 3 and (data[cut] & 0xC0) == 0x80:
        cut -= 1
    return bytes(data[:cut])


def _find_end(buf: bytes | bytearray, start: int, n: int) -> int:
    """Index of the first LF or NUL at or after `start`, or -1."""
    lf = buf.find(b"\n", start)
    nul = buf.find(b"\0", start, lf if lf >= 0 else n)  # only up to the LF: linear overall
    return nul if nul >= 0 else lf


class FrameDecoder:
    """Splits one TCP/TLS byte stream into syslog messages; feed it the reads in order.

    `auto` decides per message: a message starting `[1-9][0-9]{0,8} SP` is octet
    counted, anything else ends at LF (a CR before it is dropped) or NUL (as
    rsyslog decides, so a message without <PRI> that starts "123 " is read as
    a length). `octet` also accepts newline frames but counts each as a framing
    error: a bad length prefix resynchronises at the next LF and that line is kept
    as a message. `newline` never reads lengths. An incomplete octet frame at the
    end of the stream is a framing error too; its bytes are still returned, cut.
    Empty messages are skipped. The output does not depend on how the stream was
    split into reads.
    """

    __slots__ = ("_buf", "_discard", "_scanned", "_skip", "framing", "framing_errors", "max_bytes")

    def __init__(self, framing: Framing = "auto", max_bytes: int = 64 * 1024) -> None:
        self.framing: Framing = framing
        self.max_bytes = max_bytes
        self.framing_errors = 0
        self._buf = bytearray()  # the start of a message whose end has not arrived
        self._skip = 0  # bytes of an oversized octet frame still to throw away
        self._discard = False  # throwing away the rest of an oversized line
        self._scanned = 0  # bytes at the start of _buf known to hold no LF/NUL

    def feed(self, data: bytes) -> list[Frame]:
        out: list[Frame] = []
        if self._skip:
            if len(data) <= self._skip:
                self._skip -= len(data)
                return out
            data, self._skip = data[self._skip :], 0
        buf: bytes | bytearray
        if self._buf:
            self._buf += data
            buf = self._buf
        else:
            buf = data
        pos = self._split(buf, out)
        if pos >= len(buf):
            self._buf = bytearray()
        elif buf is self._buf:
            del self._buf[:pos]
        else:
            self._buf = bytearray(buf[pos:])
        return out

    def finish(self) -> list[Frame]:
        """The end of the stream: what is left becomes a last message."""
        buf, self._buf, self._scanned = self._buf, bytearray(), 0
        if self._skip or self._discard:
            if self._skip:  # the sender stopped inside an oversized octet frame
                self.framing_errors += 1
            self._skip, self._discard = 0, False
            return []
        prefix = _length_prefix(buf) if self.framing != "newline" else None
        if prefix is not None:
            self.framing_errors += 1  # an octet frame that never completed
            body = bytes(buf[prefix[1] :]).rstrip(b"\r\n\0")
            return [(body, True)] if body else []
        if self.framing == "octet" and buf:
            self.framing_errors += 1
        line = bytes(buf[:-1] if buf.endswith(b"\r") else buf)
        if len(line) > self.max_bytes:
            return [(cut_utf8(line, self.max_bytes), True)]
        return [(line, False)] if line else []

    def _split(self, buf: bytes | bytearray, out: list[Frame]) -> int:
        """Append the complete messages of `buf` to `out`; return where the rest starts."""
        n, pos, limit = len(buf), 0, self.max_bytes
        lengths = self.framing != "newline"
        scanned, self._scanned = self._scanned, 0  # valid for the line at position 0 only
        if self.framing != "octet" and not self._discard:
            pos = self._lines(buf, out, scanned)
            scanned = 0 if pos else scanned
        while pos < n:
            if self._discard:
                end = _find_end(buf, pos, n)
                if end < 0:
                    return n
                self._discard, pos = False, end + 1
                continue
            if lengths and 0x31 <= buf[pos] <= 0x39:
                j, lim = pos + 1, min(n, pos + _MAX_LEN_DIGITS + 1)
                while j < lim and 0x30 <= buf[j] <= 0x39:
                    j += 1
                if j - pos <= _MAX_LEN_DIGITS:
                    if j == n:
                        return pos  # a length or a line? the next read tells
                    if buf[j] == 0x20:
                        length, start = int(buf[pos:j]), j + 1
                        avail = n - start
                        if length <= limit:
                            if avail < length:
                                return pos
                            body = bytes(buf[start : start + length]).rstrip(b"\r\n\0")
                            if body:
                                out.append((body, False))
                            pos = start + length
                            continue
                        if avail <= limit:
                            return pos
                        body = cut_utf8(buf[start : start + limit + 1], limit).rstrip(b"\r\n\0")
                        out.append((body, True))
                        rest = length - limit  # the oversized remainder is thrown away
                        if n - (start + limit) >= rest:
                            pos = start + length
                            continue
                        self._skip = rest - (n - (start + limit))
                        return n
            bad = self.framing == "octet"
            end = _find_end(buf, pos + scanned, n)
            scanned = 0
            if end < 0:
                if n - pos > limit + 1:  # longer than the limit even if a CR LF follows
                    out.append((cut_utf8(buf[pos : pos + limit + 1], limit), True))
                    self.framing_errors += bad
                    self._discard, pos = True, pos + limit
                    continue
                self._scanned = n - pos
                return pos
            line = buf[pos : end - 1] if end > pos and buf[end - 1] == 0x0D else buf[pos:end]
            pos = end + 1
            if len(line) > limit:
                out.append((cut_utf8(line, limit), True))
            elif line:
                out.append((bytes(line), False))
            else:
                continue
            self.framing_errors += bad
        return pos

    def _lines(self, buf: bytes | bytearray, out: list[Frame], scanned: int) -> int:
        """The common case at C speed: every line up to the last LF at once, when none of them
        holds a NUL, could start a length (auto) or is too long. Else 0: the loop decides."""
        last = buf.rfind(b"\n", scanned)
        if last < 0:
            return 0
        seg = bytes(buf[:last])
        if b"\0" in seg:
            return 0
        if self.framing == "auto" and (b"1" <= seg[:1] <= b"9" or _DIGIT_AFTER_LF.search(seg)):
            return 0
        lines = seg.split(b"\n")
        if b"\r" in seg:
            lines = [x[:-1] if x.endswith(b"\r") else x for x in lines]
        if b"" in lines:
            lines = [x for x in lines if x]
        if lines and max(map(len, lines)) > self.max_bytes:
            return 0
        out.extend(zip(lines, itertools.repeat(False)))
        return last + 1

    @property
    def buffered(self) -> int:
        """Bytes of a message whose end has not arrived yet."""
        return len(self._buf)


def _length_prefix(buf: bytes | bytearray) -> tuple[int, int] | None:
    """(length, start of the body) when `buf` starts with an RFC 6587 length prefix."""
    m = re.match(rb"([1-9][0-9]{0,8}) ", buf)
    return (int(m.group(1)), m.end()) if m else None
