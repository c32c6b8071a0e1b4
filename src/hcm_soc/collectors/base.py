"""What collectors produce and where it goes.

A collector reads raw records from its input (socket, file, EVTX, HTTP) and hands
each to a `Sink` as a `RawRecord`: the record's text (or, for structured inputs
such as EVTX, its decoded dict), a deterministic `id_key` naming its position in
the source, and the facts only the collector knows (file path and offset, peer
address, …). The sink parses, wraps and writes. A collector that keeps positions
(file offsets) calls `sink.flush()` before persisting them, so a crash never
loses a record and deterministic ids make the re-read harmless.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class RawRecord:
    #: the raw text (decoded UTF-8, invalid bytes replaced) or a structured record (EVTX)
    data: str | dict[str, Any]
    #: unique, stable position of the record in its source, e.g. "file:<dev>:<inode>:<offset>",
    #: "syslog:tcp:<peer>:<connection start>:<n>", "evtx:<computer>:<channel>:<record id>"
    id_key: str
    received: datetime = field(default_factory=lambda: datetime.now(UTC))
    #: ECS fields the collector knows, merged into the event (log.file.path, log.offset,
    #: log.source.address, winlog.record_id, …)
    fields: dict[str, Any] = field(default_factory=dict)
    #: tags the collector adds (e.g. "_truncated", "_binary")
    tags: tuple[str, ...] = ()


class Sink(Protocol):
    def handle(self, record: RawRecord) -> None: ...

    def flush(self) -> None: ...
