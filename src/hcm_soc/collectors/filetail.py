"""The log-file collector: follows files and globs like `tail -F` and hands every
line (or multi-line record) to a Sink as a RawRecord.

What it guarantees:

- nothing lost, nothing twice: offsets are saved (see `offsets.py`) only after
  `sink.flush()` returned, and every record's id_key is
  "file:<source>:<origin>:<byte offset of the record start>", where the origin
  names the stream the bytes belong to. A re-read after a crash between flush and
  save yields the same ids, which the bulk writer turns into duplicates.
- rename rotation: a file is tracked by device and inode, so a renamed file is
  still the same stream; one that left the path patterns is read to its end from
  the descriptor that stays open (or is found by inode in its folder after a
  restart) before it is let go. Deleted files are forgotten once read to the end.
- copytruncate: a file smaller than the read position, or whose first bytes
  changed, was truncated; its inode starts a new generation (new ids). The copy
  that logrotate made is recognised by the fingerprint of its first bytes and
  read on from where the original was left, under the original's ids, instead of
  being read again as a new file.
- partial last lines wait for their end (emitted at the end of a one-shot read);
  over-long lines are cut at 1 MiB and tagged `_truncated`; bytes that do not
  decode are replaced and counted, never fatal. Splitting bytes into lines and
  multi-line records is `lines.py`'s job; this module finds and reads the files.
"""

from __future__ import annotations

import codecs
import glob
import logging
import os
import re
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from hcm_soc.collectors import offsets
from hcm_soc.collectors.base import Sink
from hcm_soc.collectors.lines import LineSplitter, LineState
from hcm_soc.collectors.offsets import OffsetState, OffsetStore, StreamState
from hcm_soc.errors import HcmSocError

if TYPE_CHECKING:
    from hcm_soc.collectors.definition import SourceDefinition

log = logging.getLogger(__name__)

_CHUNK = 1 << 20
# one file is read for at most this long (or this many bytes) per round, so that scans,
# which see rotations and new files, still run while a backlog is read
_BURST = 64 << 20
_BURST_SECONDS = 1.0
_DETACHED_GRACE = 10.0  # a renamed-away file may still be written until its writer reopens
_CLOSE_INACTIVE = 300.0  # descriptors of files idle this long are closed (reopened on growth)
_RETENTION = 7 * 86400.0  # offsets of files no longer found are kept this long
_ORPHAN_RETENTION = 86400.0  # truncated content waits this long for its copy
_PROGRESS_MIN = 8 << 20
_PROGRESS_EVERY = 5.0
_COMPRESSED = (".gz", ".bz2", ".xz", ".zst", ".zip", ".lz4", ".z")


@dataclass(slots=True)
class FileTailStats:
    lines: int = 0
    bytes: int = 0
    records: int = 0
    rotations: int = 0
    truncations: int = 0
    copies: int = 0  # copytruncate copies read on under the original's ids
    multiline_records: int = 0
    decode_errors: int = 0
    long_lines: int = 0
    errors: int = 0
    checkpoints: int = 0


@dataclass(slots=True)
class _Progress:
    total: int
    start_pos: int
    started: float
    lines0: int
    next_pct: float = 5.0
    last: float = 0.0


@dataclass(slots=True)
class _Tail:
    """A stream being followed: its persisted state plus what only this run knows."""

    st: StreamState
    pos: int  # next byte to read
    fd: int | None = None
    lines: LineState = field(default_factory=LineState)  # bytes read but not yet handed on
    attached: bool = False  # found by the path patterns in the last scan
    size: int = -1
    mtime_ns: int = -1
    replaced: bool = False  # a read saw the content change under it
    searched: bool = False  # looked for by inode after it left the patterns
    idle_since: float = 0.0
    progress: _Progress | None = None

    def safe_offset(self) -> int:
        """Every byte before this one has been handed to the sink."""
        return self.lines.safe_offset(self.pos)

    def reset(self, pos: int) -> None:
        self.pos = pos
        self.lines.reset()
        self.progress = None


class FileTailCollector:
    """Follows `definition.file.paths`; see the module docstring for the guarantees."""

    def __init__(
        self,
        definition: SourceDefinition,
        sink: Sink,
        *,
        state_dir: Path,
        follow: bool = True,
        progress: Callable[[str], None] | None = None,
        checkpoint_interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        epoch: str | None = None,
    ) -> None:
        if definition.file is None:
            raise HcmSocError(
                f"source {definition.name!r} has no 'file:' section; FileTailCollector reads files"
            )
        self.definition = definition
        self.spec = definition.file
        self.sink = sink
        self.follow = follow
        self.checkpoint_interval = checkpoint_interval
        self._progress_cb = progress
        self._clock = clock
        self._stats = FileTailStats()
        try:
            encoding = codecs.lookup(self.spec.encoding).name
        except LookupError:
            raise HcmSocError(
                f"source {definition.name!r}: unknown file.encoding {self.spec.encoding!r} (e.g. utf-8, cp1258, latin-1)"
            ) from None
        if "\n".encode(encoding) != b"\n":
            raise HcmSocError(
                f"source {definition.name!r}: file.encoding {self.spec.encoding!r} does not write a newline as the "
                "single byte 0x0A, so lines cannot be found; use an ASCII-compatible encoding (utf-8, cp1258, latin-1)"
            )
        try:
            self._split = LineSplitter(
                sink,
                self._stats,
                encoding=encoding,
                multiline=self.spec.multiline,
                id_prefix=f"file:{definition.name}:",
                clock=clock,
            )
        except re.error as e:
            raise HcmSocError(
                f"source {definition.name!r}: file.multiline.start is not a valid regex: {e}"
            ) from None
        self.offsets_path = self.spec.offsets_file or Path(state_dir) / "offsets" / f"{definition.name}.json"
        self._store = OffsetStore(self.offsets_path, epoch)
        self._state: OffsetState | None = None
        self._tails: dict[str, _Tail] = {}
        self._followed: set[str] = set()
        self._open_files = 0
        self._dirty = False  # records emitted or positions moved since the last save
        self._force = False  # save at the next chance: stream ids or one-off emissions must be kept
        self._last_checkpoint = clock()
        self._first_scan = True
        self._warned: set[str] = set()

    # -- public API ------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        """Follow until `stop` is set; with follow=False read everything once and return."""
        failures = 0
        if self._state is None:
            self._open()  # a second collector on the same offsets file fails here, not in the loop
        try:
            while not stop.is_set():
                try:
                    more = self.poll(stop)
                    failures = 0
                except Exception:
                    if not self.follow:
                        raise  # a one-shot back-fill reports it; a rerun resumes at the saved offsets
                    # isolation boundary: one failed round (sink down, disk error) never ends the collector
                    failures += 1
                    self._stats.errors += 1
                    log.exception(
                        "file collector round failed; retrying", extra={"source": self.definition.name}
                    )
                    self._rewind()
                    if stop.wait(min(30.0, self.spec.poll_interval * 2 ** min(failures, 6))):
                        break
                    continue
                if not more and (not self.follow or stop.wait(self.spec.poll_interval)):
                    break
        finally:
            self.close()

    def poll(self, stop: threading.Event | None = None) -> bool:
        """One round: scan the patterns, read what is new, expire what waited too long,
        save offsets when due. True when a file has more to read right now."""
        if self._state is None:
            self._open()
        self._scan()
        if self._force:
            self._checkpoint()  # new streams are saved before any record carries their ids
        more = False
        for t in sorted(self._tails.values(), key=lambda t: t.attached):  # rotated-away files first
            if stop is not None and stop.is_set():
                return True
            more |= self._read(t, stop)
        self._expire()
        if self._force or (self._dirty and self._clock() - self._last_checkpoint >= self.checkpoint_interval):
            self._checkpoint()
        return more

    def close(self) -> None:
        """Save the offsets (after a final flush) and release the files and the lock."""
        if self._state is None:
            return
        try:
            if not self.follow:
                for t in self._tails.values():
                    self._drain(t)
            self._checkpoint()
        finally:
            for t in self._tails.values():
                self._close_fd(t)
            self._store.close()
            self._state = None

    def stats(self) -> dict[str, int]:
        out = asdict(self._stats)
        out["files"] = len(self._followed)
        out["open_files"] = self._open_files
        return out

    # -- offsets ---------------------------------------------------------------
    def _open(self) -> None:
        self._state = self._store.open()
        self._tails = {o: _Tail(st, st.offset) for o, st in self._state.streams.items()}
        self._last_checkpoint = self._clock()

    def _checkpoint(self) -> None:
        if not (self._dirty or self._force):
            return
        assert self._state is not None
        safe = {o: t.safe_offset() for o, t in self._tails.items()}
        self.sink.flush()  # only now is everything before these offsets durable
        for o, t in self._tails.items():
            t.st.offset = safe[o]
        self._prune()
        self._state.streams = {o: t.st for o, t in self._tails.items()}
        self._store.save(self._state)
        self._dirty = self._force = False
        self._last_checkpoint = self._clock()
        self._stats.checkpoints += 1

    def _rewind(self) -> None:
        """After a failed round: go back to the saved offsets (re-reads give the same ids)."""
        self._force = True  # read nothing new until a flush succeeds again
        for t in self._tails.values():
            t.reset(t.st.offset)
            t.size = -1  # look at every file again

    def _prune(self) -> None:
        wall = time.time()
        for o, t in list(self._tails.items()):
            if t.attached or t.fd is not None:
                continue
            keep = _RETENTION if t.st.located else _ORPHAN_RETENTION
            if wall - t.st.seen > keep:
                del self._tails[o]

    # -- finding files ---------------------------------------------------------
    def _scan(self) -> None:
        found: dict[tuple[int, int], tuple[str, os.stat_result]] = {}
        for pattern in self.spec.paths:
            paths = sorted(glob.glob(pattern, recursive=True)) if glob.has_magic(pattern) else [pattern]
            for path in paths:
                if path.lower().endswith(_COMPRESSED):
                    continue  # rotated and compressed: not text
                try:
                    st = os.stat(path)
                except OSError:
                    continue
                if stat.S_ISREG(st.st_mode):
                    found.setdefault((st.st_dev, st.st_ino), (path, st))
        wall = time.time()
        by_loc = {(t.st.dev, t.st.ino): t for t in self._tails.values() if t.st.located}
        unknown: list[tuple[str, os.stat_result]] = []
        for loc, (path, st) in found.items():
            t = by_loc.get(loc)
            if t is None:
                unknown.append((path, st))
                continue
            if t.st.path != path:
                if t.attached or t.fd is not None:
                    self._stats.rotations += 1
                    self._log(logging.INFO, "file renamed", path=path, renamed_from=t.st.path)
                t.st.path = path
                self._dirty = True
            t.st.seen = wall
            t.searched = False
            if not self._check(t, path, st):
                self._orphan(t)
                self._new_stream(path, st, at_end=False)
                continue
            t.attached = True
            self._followed.add(t.st.origin)
        for t in list(self._tails.values()):
            if not t.st.located or (t.st.dev, t.st.ino) in found:
                continue
            if t.attached:
                t.attached = False
                t.idle_since = self._clock()
                if t.fd is not None and os.fstat(t.fd).st_nlink > 0:
                    self._stats.rotations += 1
            if t.fd is None and not t.searched:
                self._find_by_inode(t)
        for path, st in sorted(unknown, key=lambda x: x[0]):
            self._discover(path, st)
        self._first_scan = False

    def _check(self, t: _Tail, path: str, st: os.stat_result) -> bool:
        """False when the file at the stream's inode no longer holds the stream's bytes."""
        if not t.replaced and st.st_size == t.size and st.st_mtime_ns == t.mtime_ns:
            return True
        t.mtime_ns = st.st_mtime_ns
        if t.fd is None:
            t.fd = self._open_fd(path, (st.st_dev, st.st_ino))
            if t.fd is None:
                return True  # unreadable or replaced in between: try again next round
            t.idle_since = self._clock()
        return not t.replaced and self._verify(t)

    def _verify(self, t: _Tail) -> bool:
        assert t.fd is not None
        fp_len = t.st.fp_len
        same, t.size = offsets.verify(t.fd, t.st, t.pos)
        self._dirty |= t.st.fp_len != fp_len
        return same

    def _orphan(self, t: _Tail) -> None:
        """The stream's inode was truncated: its rest may still come from a copy."""
        self._stats.truncations += 1
        self._log(
            logging.WARNING, "file truncated; reading it again from the start", path=t.st.path, offset=t.pos
        )
        # complete lines; a partial line is left for the copy to finish
        self._dirty |= self._split.end_record(t.lines, t.st.path, t.st.origin)
        self._close_fd(t)
        t.st.offset = t.safe_offset()
        t.reset(t.st.offset)
        t.st.dev = t.st.ino = None
        t.st.seen = time.time()
        t.attached = t.replaced = False
        if t.st.fp_len == 0:
            del self._tails[t.st.origin]  # nothing could ever be recognised as its copy
        self._force = True

    def _discover(self, path: str, st: os.stat_result) -> None:
        if st.st_size == 0:
            return  # decided once it has content: an empty file may be a copy being made
        try:
            with open(path, "rb") as f:
                prefix = f.read(offsets.FP_LEN)
        except OSError as e:
            self._warn_once(path, "cannot read file", e)
            return
        for t in list(self._tails.values()):
            if not t.st.matches_prefix(prefix):
                continue
            if t.fd is not None and (t.replaced or not self._verify(t)):
                # truncated after this scan looked at it (copy, then truncate): its inode
                # is picked up as a new file by the next scan
                self._orphan(t)
            if not t.st.located:  # truncated content waiting for its copy
                if st.st_size >= t.st.offset:
                    self._adopt(t, path, st)
                return  # else the copy is still being written
            if st.st_size <= max(t.size, t.pos):
                return  # a copy of a file we follow: read on from it only if that one is truncated
        self._new_stream(path, st, at_end=self._first_scan and self.spec.start_at == "end")

    def _new_stream(self, path: str, st: os.stat_result, *, at_end: bool) -> None:
        assert self._state is not None
        loc = (st.st_dev, st.st_ino)
        fd = self._open_fd(path, loc)
        if fd is None:
            return
        gen = self._state.next_generation(*loc)
        origin = f"{self._state.epoch}:{loc[0]}:{loc[1]}:{gen}"
        start = offsets.last_line_start(fd, os.fstat(fd).st_size) if at_end else 0
        t = _Tail(StreamState(origin, path, loc[0], loc[1], start, seen=time.time()), start, fd=fd)
        t.attached = True
        t.idle_since = self._clock()
        t.mtime_ns = st.st_mtime_ns
        self._verify(t)
        self._tails[origin] = t
        self._followed.add(origin)
        self._force = True
        self._log(logging.INFO, "following file", path=path, offset=start)

    def _adopt(self, t: _Tail, path: str, st: os.stat_result) -> None:
        fd = self._open_fd(path, (st.st_dev, st.st_ino))
        if fd is None:
            return
        t.fd = fd
        t.st.dev, t.st.ino, t.st.path, t.st.seen = st.st_dev, st.st_ino, path, time.time()
        t.reset(t.st.offset)
        t.attached = True
        t.idle_since = self._clock()
        t.size, t.mtime_ns = st.st_size, st.st_mtime_ns
        self._followed.add(t.st.origin)
        self._stats.copies += 1
        self._force = True
        self._log(
            logging.INFO, "copy of a truncated file found; reading on from it", path=path, offset=t.st.offset
        )

    def _find_by_inode(self, t: _Tail) -> None:
        """A stream that left the patterns while no descriptor was open (e.g. rotated
        while the collector was down): finish it from its new name in the same folder."""
        t.searched = True
        hit = offsets.find_inode(os.path.dirname(t.st.path) or ".", t.st.ino or 0)
        t.fd = self._open_fd(hit, (t.st.dev or 0, t.st.ino or 0)) if hit else None
        if hit is None or t.fd is None or not self._verify(t):
            self._close_fd(t)
            del self._tails[t.st.origin]  # deleted (or replaced): nothing left to read
            self._dirty = True
            return
        self._stats.rotations += 1
        t.st.path = hit
        t.idle_since = self._clock()
        self._log(logging.INFO, "rotated file found by inode", path=hit)

    def _open_fd(self, path: str, loc: tuple[int, int]) -> int | None:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as e:
            self._warn_once(path, "cannot open file", e)
            return None
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) != loc:  # rotated between stat and open: next scan sorts it out
            os.close(fd)
            return None
        self._open_files += 1
        self._warned.discard(path)
        return fd

    def _close_fd(self, t: _Tail) -> None:
        if t.fd is not None:
            os.close(t.fd)
            t.fd = None
            self._open_files -= 1

    def _warn_once(self, path: str, what: str, e: OSError) -> None:
        if path not in self._warned:
            self._warned.add(path)
            self._stats.errors += 1
            self._log(logging.WARNING, f"{what}; will retry", path=path, error=str(e))

    def _log(self, level: int, msg: str, **extra: object) -> None:
        log.log(level, msg, extra={"source": self.definition.name, **extra})

    # -- reading ---------------------------------------------------------------
    def _read(self, t: _Tail, stop: threading.Event | None) -> bool:
        if t.fd is None or t.replaced:
            return False
        try:
            return self._read_fd(t, t.fd, stop)
        except OSError as e:
            self._stats.errors += 1
            self._log(
                logging.WARNING, "read failed; will retry from the saved offset", path=t.st.path, error=str(e)
            )
            self._close_fd(t)
            t.reset(t.st.offset)
            t.size = -1
            return False

    def _read_fd(self, t: _Tail, fd: int, stop: threading.Event | None) -> bool:
        size = os.fstat(fd).st_size
        # a one-shot read stops at the size it found, or a busy file would never end
        limit = size if not self.follow else None
        if self._progress_cb is not None and t.progress is None and size - t.pos >= _PROGRESS_MIN:
            now = self._clock()
            t.progress = _Progress(size, t.pos, now, self._stats.lines, last=now)
        budget = _BURST
        deadline = self._clock() + _BURST_SECONDS
        while limit is None or t.pos < limit:
            if stop is not None and stop.is_set():
                return True
            want = _CHUNK if limit is None else min(_CHUNK, limit - t.pos)
            data = os.pread(fd, want, t.pos)
            if not data:
                break
            if not self._verify(t):
                t.replaced = True  # the next scan starts the new generation
                return True
            self._consume(t, data)
            self._stats.bytes += len(data)
            self._dirty = True
            t.idle_since = self._clock()
            if t.progress is not None:
                self._report(t, done=False)
            if self._clock() - self._last_checkpoint >= self.checkpoint_interval:
                self._checkpoint()
            budget -= len(data)
            if self.follow and (budget <= 0 or self._clock() >= deadline):
                return True
        if t.progress is not None:
            self._report(t, done=True)
        return False

    def _report(self, t: _Tail, *, done: bool) -> None:
        """Every 5 % or 5 s of a large read: bytes read of the total, lines, rate."""
        p, cb = t.progress, self._progress_cb
        assert p is not None and cb is not None
        now = self._clock()
        pct = 100.0 * (t.pos - p.start_pos) / max(1, p.total - p.start_pos)
        lines, mib = self._stats.lines - p.lines0, (t.pos - p.start_pos) / (1 << 20)
        rate = f"{lines / max(now - p.started, 1e-6):,.0f} lines/s"
        if done:
            cb(f"{t.st.path}: done, {mib:.1f} MiB, {lines:,} lines in {now - p.started:.1f} s ({rate})")
            t.progress = None
        elif pct >= p.next_pct or now - p.last >= _PROGRESS_EVERY:
            total = (p.total - p.start_pos) / (1 << 20)
            cb(f"{t.st.path}: {mib:.1f} of {total:.1f} MiB ({pct:.0f}%), {lines:,} lines, {rate}")
            p.next_pct, p.last = (pct // 5 + 1) * 5, now

    def _consume(self, t: _Tail, data: bytes) -> None:
        end = t.pos + len(data)
        t.pos = end
        self._dirty = True  # set first: a sink failure halfway still leaves the round to checkpoint
        self._split.consume(t.lines, end, data, t.st.path, t.st.origin)

    def _drain(self, t: _Tail) -> None:
        """The stream ends here: emit the line without newline and the pending record."""
        self._dirty |= self._split.drain(t.lines, t.pos, t.st.path, t.st.origin)

    def _expire(self) -> None:
        now = self._clock()
        for t in list(self._tails.values()):
            if self._split.expire(t.lines, now, t.st.path, t.st.origin):
                self._dirty = True
                # where a record ended depended on timing: save it before a re-read could decide otherwise
                self._force = True
            if t.fd is None or not self.follow:
                continue
            if not t.attached:
                if t.replaced:  # truncated after it left the patterns: its rest may come from a copy
                    self._orphan(t)
                    continue
                deleted = os.fstat(t.fd).st_nlink == 0
                if deleted or now - t.idle_since >= _DETACHED_GRACE:
                    self._drain(t)
                    self._close_fd(t)
                    t.searched = True  # finished: not to be looked for again
                    if deleted:
                        del self._tails[t.st.origin]
                    self._force = True
            elif now - t.idle_since >= _CLOSE_INACTIVE and t.lines.empty:
                self._close_fd(t)
