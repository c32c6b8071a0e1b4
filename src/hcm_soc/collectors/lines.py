"""Bytes of a followed file to records: the line and record splitting of `filetail.py`.

`LineSplitter` is given the bytes of one stream in order, read by read, and hands
each record to the sink as a `RawRecord` whose id_key is "<id prefix><origin>:<byte
offset of the record start>" and whose `fields` carry `log.file.path` and
`log.offset`. Lines end at LF (a CR before it is dropped); a partial last line
waits in the stream's `LineState` for its end (or for `drain`, at the end of the
stream); a line longer than `MAX_LINE` is cut there (never inside a UTF-8
character), tagged `_truncated`, and the rest of it skipped; bytes that do not
decode are replaced and counted, never fatal; a byte order mark at offset 0 is
dropped. With a `multiline` spec, lines that do not match its `start` pattern are
gathered into the record before them, which ends at the next start line, at
`max_lines`, or when `expire` finds it older than `timeout`.

It knows nothing of files, offsets or rotation: the collector reads the bytes,
owns the read position and saves `LineState.safe_offset` only after a flush.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Protocol

from hcm_soc.collectors.base import RawRecord, Sink
from hcm_soc.parsers.base import TRUNCATED_TAG

if TYPE_CHECKING:
    from hcm_soc.collectors.definition import MultilineSpec

MAX_LINE = 1 << 20  # longer lines are cut here and tagged _truncated
_TRUNC = (TRUNCATED_TAG,)


class LineCounters(Protocol):
    """The counters the splitter keeps up to date (the collector's stats)."""

    lines: int
    records: int
    multiline_records: int
    decode_errors: int
    long_lines: int


@dataclass(slots=True)
class LineState:
    """What one stream holds between reads: bytes not yet handed on as a record."""

    buf: bytes = b""  # an incomplete line, starting at pos - len(buf)
    skip_from: int | None = None  # start of an over-long line whose rest is being skipped
    ml_start: int = 0
    ml_lines: list[str] = field(default_factory=list)
    ml_cut: bool = False
    ml_last: float = 0.0
    ml_received: datetime | None = None

    def safe_offset(self, pos: int) -> int:
        """Every byte before this one has been handed to the sink (`pos`: the next byte to read)."""
        if self.ml_lines:
            return self.ml_start
        if self.skip_from is not None:
            return self.skip_from
        return pos - len(self.buf)

    @property
    def empty(self) -> bool:
        """Nothing is waiting: no partial line, no line being skipped, no record being gathered."""
        return not self.buf and not self.ml_lines and self.skip_from is None

    def reset(self) -> None:
        self.buf = b""
        self.skip_from = None
        self.ml_lines = []
        self.ml_cut = False


class LineSplitter:
    """Splits the bytes of every stream of one collector; the per-stream state is a `LineState`.

    `encoding` must write a newline as the single byte 0x0A (the collector checks it);
    `start` is `multiline.start` compiled (re.error on a bad pattern).
    """

    def __init__(
        self,
        sink: Sink,
        stats: LineCounters,
        *,
        encoding: str,
        multiline: MultilineSpec | None,
        id_prefix: str,
        clock: Callable[[], float],
    ) -> None:
        self.sink = sink
        self._stats = stats
        self._encoding = encoding
        self._utf8 = encoding == "utf-8"
        self._ml = multiline
        self._ml_re = re.compile(multiline.start) if multiline is not None else None
        self._id_prefix = id_prefix
        self._clock = clock

    def consume(self, t: LineState, end: int, data: bytes, path: str, origin: str) -> None:
        """`data`: the bytes of the stream that end at byte `end`, following the previous ones."""
        if t.skip_from is not None:
            nl = data.find(b"\n")
            if nl < 0:
                return
            data = data[nl + 1 :]
            t.skip_from = None
        if t.buf:
            data = t.buf + data
        parts = data.split(b"\n")
        rest = parts.pop()
        if parts:
            self._lines(t, end - len(data), parts, path, origin)
        if len(rest) > MAX_LINE:
            off = end - len(rest)
            t.buf = b""
            self._lines(t, off, [rest], path, origin)  # emitted cut now; the rest of the line is skipped
            t.skip_from = off
        else:
            t.buf = rest

    def drain(self, t: LineState, end: int, path: str, origin: str) -> bool:
        """The stream ends at byte `end`: emit the line without newline and the pending record.
        True when something was handed on."""
        done = False
        if t.buf:
            raw, t.buf = t.buf, b""
            self._lines(t, end - len(raw), [raw], path, origin)
            done = True
        t.skip_from = None
        return self.end_record(t, path, origin) or done

    def end_record(self, t: LineState, path: str, origin: str) -> bool:
        """Emit the multi-line record being gathered, if any (complete lines only)."""
        if not t.ml_lines:
            return False
        self._ml_emit(t, path, origin)
        return True

    def expire(self, t: LineState, now: float, path: str, origin: str) -> bool:
        """Emit the multi-line record that waited `timeout` seconds for more lines; True if one did."""
        if self._ml is not None and t.ml_lines and now - t.ml_last >= self._ml.timeout:
            self._ml_emit(t, path, origin)
            return True
        return False

    def _lines(self, t: LineState, off: int, parts: list[bytes], path: str, origin: str) -> None:
        """Complete lines starting at byte `off`: decode, then emit or gather into records."""
        enc = self._encoding
        received = datetime.now(UTC)
        prefix = f"{self._id_prefix}{origin}:"
        handle = self.sink.handle
        multiline = self._ml is not None
        now = self._clock()
        records = errors = 0
        s = self._stats
        s.lines += len(parts)
        for raw in parts:
            start = off
            off += len(raw) + 1
            cut = len(raw) > MAX_LINE
            if cut:
                raw = _cut(raw, self._utf8)
                s.long_lines += 1
            if raw[-1:] == b"\r":
                raw = raw[:-1]
            try:
                text = raw.decode(enc)
            except UnicodeDecodeError:
                text = raw.decode(enc, "replace")
                errors += 1
            if start == 0 and text[:1] == "\ufeff":
                text = text[1:]  # byte order mark
            if multiline:
                self._ml_line(t, start, text, cut, now, received, path, origin)
            elif text:
                fields = {"log": {"file": {"path": path}, "offset": start}}
                handle(RawRecord(text, prefix + str(start), received, fields, _TRUNC if cut else ()))
                records += 1
        s.records += records
        s.decode_errors += errors

    def _ml_line(
        self,
        t: LineState,
        off: int,
        text: str,
        cut: bool,
        now: float,
        received: datetime,
        path: str,
        origin: str,
    ) -> None:
        assert self._ml is not None and self._ml_re is not None
        if t.ml_lines and self._ml_re.search(text) is None:
            t.ml_lines.append(text)
            t.ml_cut |= cut
            t.ml_last = now
            if len(t.ml_lines) >= self._ml.max_lines:
                self._ml_emit(t, path, origin)
            return
        if t.ml_lines:
            self._ml_emit(t, path, origin)
        if not text:
            return  # a blank line between records
        t.ml_start, t.ml_lines, t.ml_cut, t.ml_last, t.ml_received = off, [text], cut, now, received
        if self._ml.max_lines == 1:
            self._ml_emit(t, path, origin)

    def _ml_emit(self, t: LineState, path: str, origin: str) -> None:
        lines, start, received = t.ml_lines, t.ml_start, t.ml_received or datetime.now(UTC)
        fields = {"log": {"file": {"path": path}, "offset": start}}
        id_key = f"{self._id_prefix}{origin}:{start}"
        self.sink.handle(RawRecord("\n".join(lines), id_key, received, fields, _TRUNC if t.ml_cut else ()))
        t.ml_lines = []
        t.ml_cut = False
        self._stats.records += 1
        if len(lines) > 1:
            self._stats.multiline_records += 1


def _cut(raw: bytes, utf8: bool) -> bytes:
    end = MAX_LINE
    if utf8:  # never split a character: step back over continuation bytes
        while end > MAX_LINE - 4 and raw[end] & 0xC0 == 0x80:
            end -= 1
    return raw[:end]
