"""The offset store of the file collector, and how it tells files apart.

One JSON file per source definition, rewritten crash-safely (temporary file,
fsync, rename, fsync of the folder), so after a crash it holds either the
previous or the new positions, never a torn mix. The file collector saves it
only after `sink.flush()` returned: every byte before a saved offset is durable.

Each entry is one *stream*: the bytes a file held from the moment it was first
seen at offset 0, keyed by its `origin` ("<epoch>:<dev>:<inode>:<generation>"),
which never changes for the life of the stream and is part of every record id.
The entry also says where the stream lives now (device and inode; none once a
truncation removed its content from the inode), and a fingerprint of its first
bytes that tells a different file on a reused inode, or a copy, apart.

`epoch` is random per offsets file: ids from another machine (cloned VMs share
inode numbers) or from a lost and recreated offsets file never collide with
these. `generations` remembers, per inode, the last generation given out, so a
file that reuses the inode of a forgotten one gets fresh ids.

An exclusive `flock` on `<file>.lock` keeps two collectors (say a running
service and `hcm-soc ingest`) from moving the same offsets.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import secrets
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson

from hcm_soc.errors import HcmSocError

log = logging.getLogger(__name__)

#: bytes of a file's start that identify its content (Filebeat's fingerprint default)
FP_LEN = 1024
_VERSION = 1
_MAX_GENERATIONS = 10_000


def fingerprint(prefix: bytes) -> str:
    return hashlib.blake2b(prefix, digest_size=16).hexdigest()


@dataclass(slots=True)
class StreamState:
    """What is persisted about one stream (see the module docstring)."""

    origin: str
    path: str
    #: where the stream is now; None once truncation removed it from its inode
    dev: int | None
    ino: int | None
    #: every byte before it is durable in the sink
    offset: int
    fp: str = ""
    fp_len: int = 0
    #: wall-clock seconds when the file was last found by the path patterns
    seen: float = 0.0

    @property
    def located(self) -> bool:
        return self.dev is not None and self.ino is not None

    def matches_prefix(self, prefix: bytes) -> bool:
        """True when `prefix` (a file's first bytes) starts like this stream."""
        return 0 < self.fp_len <= len(prefix) and fingerprint(prefix[: self.fp_len]) == self.fp


@dataclass(slots=True)
class OffsetState:
    epoch: str
    streams: dict[str, StreamState]
    generations: dict[str, int]

    def next_generation(self, dev: int, ino: int) -> int:
        key = f"{dev}:{ino}"
        gen = self.generations.pop(key, -1) + 1
        self.generations[key] = gen  # re-inserted last: the oldest are trimmed first
        while len(self.generations) > _MAX_GENERATIONS:
            del self.generations[next(iter(self.generations))]
        return gen


def verify(fd: int, st: StreamState, pos: int) -> tuple[bool, int]:
    """Whether the open file still holds the stream read up to `pos` (not smaller, same
    first bytes), and its size. A fingerprint shorter than FP_LEN is extended in place."""
    size = os.fstat(fd).st_size
    if size < pos:
        return False, size
    n = min(size, FP_LEN) if st.fp_len < FP_LEN else st.fp_len
    if n == 0:
        return True, size
    prefix = os.pread(fd, n, 0)
    if st.fp_len and not st.matches_prefix(prefix):
        return False, size
    if len(prefix) > st.fp_len:
        st.fp, st.fp_len = fingerprint(prefix), len(prefix)
    return True, size


def last_line_start(fd: int, size: int, window: int = 64 << 10) -> int:
    """For start_at end: just after the last newline, so a line being written is read whole."""
    n = min(size, window)
    block = os.pread(fd, n, size - n) if n else b""
    i = block.rfind(b"\n")
    if i >= 0:
        return size - n + i + 1
    return 0 if n == size else size


def find_inode(folder: str, ino: int) -> str | None:
    """The name a file has now in `folder` (a rotated file keeps its inode), if any."""
    try:
        with os.scandir(folder) as entries:
            return next((e.path for e in entries if e.inode() == ino and e.is_file()), None)
    except OSError:
        return None


class OffsetStore:
    """Loads and saves one offsets file; holds its lock between `open()` and `close()`."""

    def __init__(self, path: Path, epoch: str | None = None) -> None:
        self.path = Path(path)
        #: a fixed epoch for a new offsets file (one-shot ingest, where the offsets are
        #: throwaway but re-ingesting the same file must give the same ids)
        self.fixed_epoch = epoch
        self._lock_fd: int | None = None

    def open(self) -> OffsetState:
        """Take the lock and read the saved state (a new one, saved at once, if none)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(f"{self.path}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise HcmSocError(
                f"another collector is already reading with the offsets file {self.path}; "
                "stop it first (or give this run its own offsets_file)"
            ) from None
        self._lock_fd = fd
        state = self._load()
        if state is None:
            # saved before any record is read: the epoch is part of every id and must
            # be the same after a crash
            state = OffsetState(self.fixed_epoch or secrets.token_hex(6), {}, {})
            self.save(state)
        return state

    def close(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None

    def _load(self) -> OffsetState | None:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            doc = orjson.loads(raw)
            if doc.get("version") != _VERSION:
                raise ValueError(f"version {doc.get('version')!r}, expected {_VERSION}")
            streams = {o: StreamState(origin=o, **s) for o, s in doc["streams"].items()}
            return OffsetState(
                str(doc["epoch"]), streams, {str(k): int(v) for k, v in doc["generations"].items()}
            )
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            # Atomic saves make this a damaged disk or a hand edit. Keeping it aside and
            # starting over with a new epoch re-reads the files under new ids: duplicates
            # are possible, losing events is not.
            aside = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time())}")
            os.replace(self.path, aside)
            log.error(
                "offsets file unreadable; moved aside, files are read again from their start",
                extra={"offsets_file": str(self.path), "moved_to": str(aside), "error": str(e)},
            )
            return None

    def save(self, state: OffsetState) -> None:
        """Write `state` atomically and durably."""
        streams: dict[str, Any] = {}
        for s in state.streams.values():
            d = asdict(s)
            del d["origin"]
            streams[s.origin] = d
        body = orjson.dumps(
            {"version": _VERSION, "epoch": state.epoch, "streams": streams, "generations": state.generations},
            option=orjson.OPT_INDENT_2,
        )
        tmp = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            view = memoryview(body)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.replace(tmp, self.path)
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        # the rename itself is durable only once the folder is synced
        dfd = os.open(self.path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
