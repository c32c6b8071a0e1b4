"""The bulk writer every collector uses to put events into Elasticsearch.

- batches by document count, bytes and age (a background timer flushes idle buffers);
- every document has a deterministic `_id` and is written with `create`, so a
  replayed or retried batch never duplicates (a 409 counts as `duplicates`);
- 429 and 5xx answers, whole-request or per-document, are retried with
  exponential backoff;
- documents Elasticsearch refuses (mapping conflicts, …) go to the dead-letter
  data stream with their original text and the error, never silently dropped;
- when Elasticsearch is unreachable, batches go to a crash-safe disk spool and
  are replayed, oldest first and before any newer batch, when it answers again;
- counters (`stats()`) and structured log lines say what happened.

Sending happens on one sender thread, so that building the next batch overlaps
with Elasticsearch indexing the previous one (one batch in flight, one waiting:
`add` blocks beyond that, which is the back pressure collectors need). A single
sender keeps batches in order. Errors on the sender (spool full, no spool and
Elasticsearch down) are raised to the caller on its next `add` or `flush`, and the
batch concerned is kept in memory and sent first next time.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson
from elastic_transport import ConnectionError as TransportConnectionError
from elastic_transport import ConnectionTimeout, TransportError
from elasticsearch import ApiError

from hcm_soc.errors import HcmSocError, SpoolFullError
from hcm_soc.store.names import IndexNames
from hcm_soc.store.spool import Spool

if TYPE_CHECKING:
    from elasticsearch import Elasticsearch

    from hcm_soc.config import Settings

log = logging.getLogger(__name__)

Event = dict[str, Any]
Op = tuple[bytes, bytes]  # (action line, document line), both without the newline

_FILTER_PATH = "errors,items.*.status,items.*.error"
_RETRYABLE_STATUS = frozenset({429, 502, 503, 504})


def make_id(key: str | bytes) -> str:
    """A deterministic 20-character document id for `key` (source + position, or content)."""
    if isinstance(key, str):
        key = key.encode("utf-8")
    return base64.urlsafe_b64encode(hashlib.blake2b(key, digest_size=15).digest()).decode("ascii")


@dataclass(slots=True)
class WriterStats:
    added: int = 0
    sent: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    retried: int = 0
    spooled: int = 0
    replayed: int = 0
    requests: int = 0
    bytes_sent: int = 0


class BulkWriter:
    """Buffered, idempotent, outage-proof writes. Use as a context manager or call `close()`."""

    def __init__(
        self,
        client: Elasticsearch,
        names: IndexNames,
        *,
        spool: Spool | None = None,
        max_docs: int = 5000,
        max_bytes: int = 8 * 1024 * 1024,
        flush_interval: float | None = 1.0,
        max_retries: int = 5,
        backoff_base: float = 0.25,
        backoff_max: float = 15.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.client = client
        self.names = names
        self.spool = spool
        self.max_docs = max_docs
        self.max_bytes = max_bytes
        self.flush_interval = flush_interval
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self._sleep = sleep
        self._stats = WriterStats()
        self._buffer: list[Op] = []
        self._buffer_bytes = 0
        self._buffer_since = 0.0
        self._lock = threading.RLock()  # the buffer (callers' side)
        self._send_lock = threading.Lock()  # sending, the spool, counters of the sender
        self._queue: queue.Queue[list[Op] | None] = queue.Queue(maxsize=1)
        self._held: list[Op] = []  # neither delivered nor spooled: sent first next time
        self._in_flight = 0  # documents handed to the sender and not yet settled
        self._in_flight_lock = threading.Lock()  # not self._lock: a caller blocked in put() holds that
        self._error: Exception | None = None
        self._next_probe = 0.0
        self._closed = False
        self._sender = threading.Thread(target=self._send_loop, name="hcm-bulk-sender", daemon=True)
        self._sender.start()
        self._stop = threading.Event()
        self._timer: threading.Thread | None = None
        if flush_interval:
            self._timer = threading.Thread(target=self._run_timer, name="hcm-bulk-timer", daemon=True)
            self._timer.start()

    @classmethod
    def from_settings(cls, client: Elasticsearch, settings: Settings, **overrides: Any) -> BulkWriter:
        b = settings.bulk
        kwargs: dict[str, Any] = {
            "spool": Spool(settings.spool_dir, b.spool_max_bytes),
            "max_docs": b.max_docs,
            "max_bytes": b.max_bytes,
            "flush_interval": b.flush_interval,
            "max_retries": b.max_retries,
        }
        kwargs.update(overrides)
        return cls(client, IndexNames.from_settings(settings), **kwargs)

    # -- public API ------------------------------------------------------------
    def add(self, index: str, doc: Event, *, id_key: str | bytes | None = None) -> str:
        """Queue `doc` for `index`; return its `_id`. `id_key` (e.g. source + offset)
        makes the id; without it the id is a hash of the document itself."""
        body = orjson.dumps(doc)
        doc_id = make_id(id_key if id_key is not None else body)
        self.add_serialized(index, doc_id, body)
        return doc_id

    def add_serialized(self, index: str, doc_id: str, body: bytes) -> None:
        """Queue an already serialised JSON document (no newline inside) with its id."""
        if self._closed:
            raise HcmSocError("the bulk writer is closed")
        action = b'{"create":{"_index":"%s","_id":"%s"}}' % (index.encode(), doc_id.encode())
        with self._lock:
            if not self._buffer:
                self._buffer_since = time.monotonic()
            self._buffer.append((action, body))
            self._buffer_bytes += len(action) + len(body) + 2
            self._stats.added += 1
            if len(self._buffer) >= self.max_docs or self._buffer_bytes >= self.max_bytes:
                self._flush_locked()

    def flush(self) -> None:
        """Send (or spool) everything buffered. On return every added event is in
        Elasticsearch, in the dead-letter stream, or durably spooled."""
        with self._lock:
            self._flush_locked()
        self._queue.join()
        with self._send_lock:
            self._drain_spool()
        self._raise_pending()

    def replay(self) -> bool:
        """Try to empty the spool now; True when it is empty afterwards."""
        self._queue.join()
        with self._send_lock:
            return self._drain_spool(force=True)

    def stats(self) -> dict[str, int]:
        with self._lock:
            out = asdict(self._stats)
            out["buffered"] = len(self._buffer) + len(self._held) + self._in_flight
            out["spool_segments"] = len(self.spool) if self.spool else 0
            out["spool_docs"] = self.spool.pending_docs if self.spool else 0
            return out

    def close(self) -> None:
        if self._closed:
            return
        self._stop.set()
        if self._timer is not None:
            self._timer.join(timeout=5)
        try:
            self.flush()
        finally:
            self._closed = True
            self._queue.put(None)
            self._sender.join(timeout=30)
        log.info("bulk writer closed", extra={"stats": self.stats()})

    def __enter__(self) -> BulkWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals -------------------------------------------------------------
    def _run_timer(self) -> None:
        assert self.flush_interval
        while not self._stop.wait(self.flush_interval / 2):
            try:
                if self._error is not None:
                    continue  # leave it for the caller to see
                with self._lock:
                    if self._buffer and time.monotonic() - self._buffer_since >= self.flush_interval:
                        self._flush_locked()
                if self.spool is not None and not self.spool.empty and self._queue.empty():
                    with self._send_lock:
                        self._drain_spool()
            except Exception:  # isolation boundary: the timer must survive any one failure
                log.exception("bulk writer background flush failed")

    def _raise_pending(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def _flush_locked(self) -> None:
        """Hand the buffer to the sender (blocks while it has one batch waiting)."""
        self._raise_pending()
        if not self._buffer and not self._held:
            return
        ops, self._buffer, self._buffer_bytes = self._buffer, [], 0
        with self._in_flight_lock:
            self._in_flight += len(ops)
        self._queue.put(ops)

    def _send_loop(self) -> None:
        while True:
            ops = self._queue.get()
            try:
                if ops is None:
                    return
                with self._send_lock:
                    self._send_batch(ops)
            except Exception as e:  # isolation boundary: handed to the caller, batch held
                self._error = e
            finally:
                if ops is not None:
                    with self._in_flight_lock:
                        self._in_flight -= len(ops)
                self._queue.task_done()

    def _send_batch(self, ops: list[Op]) -> None:
        ops, self._held = self._held + ops, []
        if self.spool is not None and not self._drain_spool():
            self._to_spool(ops)  # older batches are still waiting: keep the order
            return
        undelivered = self._deliver(ops)
        if undelivered:
            if self.spool is None:
                self._held = undelivered
                raise HcmSocError(
                    f"Elasticsearch is unreachable and no spool is configured; {len(undelivered)} events kept in memory"
                )
            self._to_spool(undelivered)

    def _to_spool(self, ops: list[Op]) -> None:
        assert self.spool is not None
        try:
            self.spool.append(_payload(ops), len(ops))
        except SpoolFullError:
            self._held = ops + self._held  # keep them: the caller must slow down
            raise
        self._stats.spooled += len(ops)
        log.warning(
            "elasticsearch unreachable: batch spooled", extra={"docs": len(ops), "stats": asdict(self._stats)}
        )

    def _drain_spool(self, force: bool = False) -> bool:
        """Replay spooled batches oldest first. True when the spool is (now) empty."""
        if self.spool is None or self.spool.empty:
            return True
        if not force and time.monotonic() < self._next_probe:
            return False
        while (seg := self.spool.oldest()) is not None:
            ops = _parse_payload(seg.read())
            undelivered = self._deliver(ops, retries=0 if not force else self.max_retries)
            if undelivered:
                self._next_probe = time.monotonic() + min(self.backoff_max, self.backoff_base * 8)
                return False
            self.spool.remove(seg)
            self._stats.replayed += len(ops)
            log.info("spooled batch replayed", extra={"docs": len(ops), "sequence": seg.sequence})
        return True

    def _deliver(self, ops: list[Op], retries: int | None = None, *, letters: bool = False) -> list[Op]:
        """Send `ops`, retrying what may succeed later. Returns what could not be delivered
        because Elasticsearch is unreachable or overloaded (to be spooled). `letters` marks
        dead letters, which are counted as dead-lettered, not as sent."""
        max_retries = self.max_retries if retries is None else retries
        attempt = 0
        pending = ops
        while pending:
            payload = _payload(pending)
            try:
                # a ready NDJSON body is passed through as is by the client's serializer
                resp = self.client.bulk(operations=payload, filter_path=_FILTER_PATH)  # type: ignore[arg-type]
                self._stats.requests += 1
                self._stats.bytes_sent += len(payload)
            except ApiError as e:
                if e.meta.status in _RETRYABLE_STATUS or e.meta.status >= 500:
                    cause = f"HTTP {e.meta.status}"
                elif e.meta.status == 413 and len(pending) > 1:
                    half = len(pending) // 2
                    return self._deliver(pending[:half], retries, letters=letters) + self._deliver(
                        pending[half:], retries, letters=letters
                    )
                else:
                    self._dead_letter(
                        [
                            (op, {"type": str(e.error), "reason": str(e.message)}, e.meta.status)
                            for op in pending
                        ]
                    )
                    return []
            except (TransportConnectionError, ConnectionTimeout, TransportError, OSError) as e:
                cause = type(e).__name__
            else:
                pending = self._handle_items(pending, resp, letters)
                if not pending:
                    return []
                cause = "per-document 429/5xx"
            attempt += 1
            if attempt > max_retries:
                log.warning("giving up for now", extra={"docs": len(pending), "cause": cause})
                return pending
            self._stats.retried += len(pending)
            self._sleep(min(self.backoff_max, self.backoff_base * 2 ** (attempt - 1)))
        return []

    def _handle_items(self, ops: list[Op], resp: Any, letters: bool) -> list[Op]:
        sent = 0
        if not resp.get("errors"):
            if not letters:
                self._stats.sent += len(ops)
            return []
        retry: list[Op] = []
        rejected: list[tuple[Op, dict[str, Any], int]] = []
        for op, item in zip(ops, resp["items"], strict=True):
            result = next(iter(item.values()))
            status = int(result.get("status", 0))
            if status < 300:
                sent += 1
            elif status == 409:
                self._stats.duplicates += 1
            elif status in _RETRYABLE_STATUS or status >= 500:
                retry.append(op)
            else:
                rejected.append((op, result.get("error") or {}, status))
        if not letters:
            self._stats.sent += sent
        if rejected:
            self._dead_letter(rejected)
        return retry

    def _dead_letter(self, rejected: list[tuple[Op, dict[str, Any], int]]) -> None:
        now = datetime.now(UTC).isoformat()
        dl_index = self.names.deadletter
        ops: list[Op] = []
        for (action, body), error, status in rejected:
            meta = orjson.loads(action)["create"]
            target, doc_id = meta["_index"], meta["_id"]
            if target == dl_index:  # a dead letter that cannot be stored: nothing sane left to do
                log.error("dead letter refused", extra={"doc_id": doc_id, "error": error})
                continue
            reason = error.get("reason", "")
            caused = error.get("caused_by", {})
            if caused.get("reason"):
                reason = f"{reason}: {caused['reason']}"
            letter = {
                "@timestamp": now,
                "error": {"type": error.get("type", "unknown"), "message": reason, "status": status},
                "event": {"original": body.decode("utf-8", errors="replace")},
                "hcm": {"target_index": target, "doc_id": doc_id},
            }
            ops.append(
                (
                    b'{"create":{"_index":"%s","_id":"%s"}}' % (dl_index.encode(), doc_id.encode()),
                    orjson.dumps(letter),
                )
            )
            log.warning(
                "document refused by elasticsearch; dead-lettered",
                extra={"index": target, "doc_id": doc_id, "error_type": error.get("type"), "reason": reason},
            )
        self._stats.dead_lettered += len(ops)
        undelivered = self._deliver(ops, letters=True) if ops else []
        if undelivered and self.spool is not None:
            self._to_spool(undelivered)


def _payload(ops: list[Op]) -> bytes:
    return b"".join(b"%s\n%s\n" % (a, d) for a, d in ops)


def _parse_payload(payload: bytes) -> list[Op]:
    lines = payload.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return [(lines[i], lines[i + 1]) for i in range(0, len(lines), 2)]
