"""A crash-safe, bounded, first-in-first-out disk spool of bulk batches.

Each batch is one segment file named `<sequence>-<count>.ndjson` holding the
exact `_bulk` body. A segment is written to a temporary file, fsynced and then
renamed into place, so after a crash a segment is either whole or absent; stray
temporary files are removed on open. Segments are replayed oldest first and
deleted only after Elasticsearch accepted them.
"""

from __future__ import annotations

import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path

from hcm_soc.errors import SpoolFullError

_SEGMENT_RE = re.compile(r"^(\d{20})-(\d+)\.ndjson$")


@dataclass(frozen=True, slots=True)
class Segment:
    path: Path
    sequence: int
    count: int

    def read(self) -> bytes:
        return self.path.read_bytes()


class Spool:
    def __init__(self, directory: Path, max_bytes: int) -> None:
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self.directory.mkdir(parents=True, exist_ok=True)
        for stray in self.directory.glob("*.tmp"):
            stray.unlink()
        self._segments: list[Segment] = []
        self._bytes = 0
        for path in sorted(self.directory.iterdir()):
            m = _SEGMENT_RE.match(path.name)
            if m:
                self._segments.append(Segment(path, int(m.group(1)), int(m.group(2))))
                self._bytes += path.stat().st_size
        self._next = self._segments[-1].sequence + 1 if self._segments else 1

    @property
    def empty(self) -> bool:
        return not self._segments

    @property
    def size_bytes(self) -> int:
        return self._bytes

    @property
    def pending_docs(self) -> int:
        return sum(s.count for s in self._segments)

    def __len__(self) -> int:
        return len(self._segments)

    def append(self, payload: bytes, count: int) -> Segment:
        """Durably store one batch; SpoolFullError when it would exceed `max_bytes`."""
        with self._lock:
            if self._bytes + len(payload) > self.max_bytes:
                raise SpoolFullError(
                    f"the spool {self.directory} holds {self._bytes} bytes and the next batch of "
                    f"{len(payload)} bytes would exceed bulk.spool_max_bytes={self.max_bytes}; "
                    "Elasticsearch has been unreachable too long — restore it or raise HCM_SOC_BULK_SPOOL_MAX_BYTES"
                )
            seq = self._next
            self._next += 1
            final = self.directory / f"{seq:020d}-{count}.ndjson"
            tmp = final.with_suffix(".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.write(fd, payload)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, final)
            self._fsync_dir()
            seg = Segment(final, seq, count)
            self._segments.append(seg)
            self._bytes += len(payload)
            return seg

    def oldest(self) -> Segment | None:
        with self._lock:
            return self._segments[0] if self._segments else None

    def remove(self, segment: Segment) -> None:
        with self._lock:
            size = segment.path.stat().st_size
            segment.path.unlink()
            self._fsync_dir()
            self._segments.remove(segment)
            self._bytes -= size

    def _fsync_dir(self) -> None:
        fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
