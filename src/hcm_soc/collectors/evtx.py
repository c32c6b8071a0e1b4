"""Reading Windows event log files (EVTX): records out of files, into a Sink.

`EvtxReader.iter_records(path)` yields one `RawRecord` per event record, its
`data` the record as the `evtx` package (Rust) decodes it, JSON already turned
into a dict. The `id_key` comes from the event itself — computer, channel and
System/EventRecordID — not from the file, so re-reading the same file, or an
exported copy of the log holding the same events, writes the same documents.

The Rust parser skips what it cannot read and says so by raising for that record
or chunk; the reader counts those (`stats`), estimating the records a failed
chunk held from the record-id range in its message, and goes on. A record whose
JSON text does not decode is still handed on (as text), so the pipeline stores it
with a parse-failure tag. A file that cannot be opened raises `EvtxReadError`
naming it; `ingest_paths` records that and carries on with the next file.
"""

from __future__ import annotations

import glob
import hashlib
import logging
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from evtx import PyEvtxParser

from hcm_soc.collectors.base import RawRecord, Sink
from hcm_soc.errors import HcmSocError

log = logging.getLogger(__name__)

_CHUNK_RANGE_RE = re.compile(r"record IDs (\d+)\.\.(\d+)")


class EvtxReadError(HcmSocError):
    """An EVTX file could not be opened or is not an EVTX file."""


@dataclass(slots=True)
class EvtxStats:
    """Counters of one reader (all files it opened)."""

    files: int = 0
    records: int = 0
    #: records handed on whose JSON did not decode (stored as parse failures)
    undecodable: int = 0
    #: errors the Rust parser raised instead of a record (one per bad record or bad chunk);
    #: the first few of each file are kept in `errors`
    parser_errors: int = 0
    #: records lost in those errors, as far as their messages tell (a chunk's record-id range)
    records_lost: int = 0
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "files_read": self.files,
            "records": self.records,
            "undecodable": self.undecodable,
            "parser_errors": self.parser_errors,
            "records_lost": self.records_lost,
        }


def _records_lost(message: str) -> int:
    match = _CHUNK_RANGE_RE.search(message)
    if match:
        first, last = int(match[1]), int(match[2])
        if 0 < first <= last:
            return last - first + 1
    return 1


class EvtxReader:
    """Yields the records of EVTX files as RawRecords, counting what the parser skipped."""

    #: how many errors of one file are kept in `stats.errors` (the count has them all)
    MAX_ERRORS_KEPT = 20

    def __init__(self, threads: int = 1) -> None:
        # one Rust thread by default: the pipeline after us is the bottleneck, and the
        # parser's own pool would compete with it for the machine's cores
        self.threads = threads
        self.stats = EvtxStats()

    def iter_records(self, path: str | Path) -> Iterator[RawRecord]:
        path_text = str(path)
        try:
            parser = PyEvtxParser(path_text, self.threads)
            records = parser.records_json()
        except (OSError, RuntimeError, ValueError) as e:
            raise EvtxReadError(f"{path_text}: cannot read as an EVTX file: {e}") from None
        self.stats.files += 1
        kept = 0
        fields_base = {"log": {"file": {"path": path_text}}}
        while True:
            try:
                rec: Any = next(records)
            except StopIteration:
                break
            except (RuntimeError, OSError, ValueError) as e:
                self.stats.parser_errors += 1
                self.stats.records_lost += _records_lost(str(e))
                if kept < self.MAX_ERRORS_KEPT:
                    self.stats.errors.append(f"{path_text}: {e}")
                    kept += 1
                log.warning("evtx record or chunk skipped", extra={"file": path_text, "error": str(e)})
                continue
            if not isinstance(rec, Mapping):  # not seen in practice; counted like a bad record
                self.stats.parser_errors += 1
                self.stats.records_lost += 1
                continue
            self.stats.records += 1
            yield self._raw(rec, path_text, fields_base)

    def _raw(self, rec: Mapping[str, Any], path: str, fields_base: dict[str, Any]) -> RawRecord:
        received = datetime.now(UTC)
        text = rec.get("data", "")
        try:
            data = orjson.loads(text)
        except orjson.JSONDecodeError:
            data = None
        if not isinstance(data, dict):
            # handed on as text: the parser rejects it and the pipeline keeps it as a failure
            self.stats.undecodable += 1
            digest = hashlib.sha256(str(text).encode("utf-8", "surrogatepass")).hexdigest()
            return RawRecord(
                data=str(text),
                id_key=f"evtx:undecodable:{digest}",
                received=received,
                fields={**fields_base},
            )
        record = {
            "event_record_id": rec.get("event_record_id"),
            "timestamp": rec.get("timestamp"),
            "data": data,
        }
        system = data.get("Event", {}).get("System", {}) if isinstance(data.get("Event"), dict) else {}
        computer = system.get("Computer") or ""
        channel = system.get("Channel") or ""
        record_id = system.get("EventRecordID", rec.get("event_record_id"))
        fields: dict[str, Any] = {**fields_base}
        if isinstance(record_id, int):
            fields["winlog"] = {"record_id": record_id}
        return RawRecord(
            data=record,
            id_key=f"evtx:{computer}:{channel}:{record_id}",
            received=received,
            fields=fields,
        )


# --- many files, with progress -----------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class EvtxProgress:
    """Where a multi-file ingest stands; `str()` is the line handed to the progress callback."""

    files_done: int
    files_total: int
    records: int
    parser_errors: int
    elapsed: float
    current: str

    @property
    def rate(self) -> float:
        """Records per second so far."""
        return self.records / self.elapsed if self.elapsed > 0 else 0.0

    def __str__(self) -> str:
        return (
            f"evtx: {self.files_done}/{self.files_total} files, {self.records:,} records, "
            f"{self.rate:,.0f} records/s, {self.parser_errors} parser errors ({self.current})"
        )


def expand_paths(paths: Iterable[str | Path]) -> list[Path]:
    """Files and globs (with `**`) to a sorted list of files; a pattern matching nothing is an error."""
    found: dict[str, Path] = {}
    missing: list[str] = []
    for p in paths:
        text = str(p)
        if any(ch in text for ch in "*?["):
            matches = [Path(m) for m in glob.glob(text, recursive=True) if Path(m).is_file()]
        elif Path(text).is_dir():
            matches = sorted(Path(text).rglob("*.evtx"))
        else:
            matches = [Path(text)] if Path(text).exists() else []
        if not matches:
            missing.append(text)
        for m in matches:
            found.setdefault(str(m), m)
    if missing:
        raise EvtxReadError(
            "no EVTX file matches "
            + ", ".join(repr(m) for m in missing)
            + "; give files, folders or globs such as 'logs/**/*.evtx'"
        )
    return [found[k] for k in sorted(found)]


def ingest_paths(
    paths: Iterable[str | Path],
    sink: Sink,
    progress: Callable[[str], None] | None = None,
    *,
    reader: EvtxReader | None = None,
    every: int = 5000,
) -> dict[str, Any]:
    """Read every file into `sink` (flushed at the end), calling `progress` with a line
    (files done / total, records, rate) after each file and every `every` records.

    An unreadable file is listed under `unreadable`, not raised: one bad export never
    stops the others. Returns the counters: files_total, files_done, records,
    undecodable, parser_errors, records_lost, unreadable, per_file (records read from
    each file, before de-duplication by id), elapsed_s, records_per_s.
    """
    files = expand_paths(paths)
    reader = reader or EvtxReader()
    start = time.monotonic()
    unreadable: list[str] = []
    per_file: dict[str, int] = {}
    done = 0

    def report(current: str) -> None:
        if progress is not None:
            stats = reader.stats
            progress(
                str(
                    EvtxProgress(
                        done,
                        len(files),
                        stats.records,
                        stats.parser_errors,
                        time.monotonic() - start,
                        current,
                    )
                )
            )

    for path in files:
        count = 0
        try:
            for record in reader.iter_records(path):
                sink.handle(record)
                count += 1
                if count % every == 0:
                    report(str(path))
        except EvtxReadError as e:
            unreadable.append(str(e))
            log.error("evtx file skipped", extra={"file": str(path), "error": str(e)})
        per_file[str(path)] = count
        done += 1
        report(str(path))
    sink.flush()
    elapsed = time.monotonic() - start
    return {
        "files_total": len(files),
        "files_done": done,
        **reader.stats.as_dict(),
        "unreadable": unreadable,
        "errors": list(reader.stats.errors),
        "per_file": per_file,
        "elapsed_s": round(elapsed, 3),
        "records_per_s": round(reader.stats.records / elapsed, 1) if elapsed > 0 else 0.0,
    }
