"""HTTP ingest: city systems push NDJSON batches to `POST /api/ingest/<dataset>`.

One server serves every source of type `http`; sources that name the same `listen`
address share one listener. For each request:

1. Auth: `Authorization: Bearer <token>` or `X-Api-Key: <token>`. The token names the
   source; tokens come from the environment variable `http.token_env` of each source (or
   the `tokens` argument: source name -> token). Tokens are compared in constant time
   against every source of the listener. Missing or wrong -> 401. A source without a token
   in its environment variable refuses every request (logged at start).
2. Dataset: a source with `dataset:` may write to that dataset only; a source without one
   may write to `<name>` or `<name>.<anything>` (name with `-` read as `_`, since datasets
   allow only `[a-z0-9_.]`), e.g. `qa-portal` -> `qa_portal`, `qa_portal.audit`; at most
   64 datasets per source, so a leaked token cannot create data streams without bound.
   Otherwise -> 403.
3. Size: a `Content-Length` above `http.max_body_bytes` -> 413 before anything is read; a
   chunked body is counted while read and refused at the same size; a gzip body
   (`Content-Encoding: gzip`) is capped after decompression too. Refusals before the body
   is read close the connection.
4. Every non-blank line becomes one `RawRecord` for the sink of (source, dataset) — lines
   that do not parse are stored as parse failures by the pipeline, like any collector's.
   The same parser is run here once more to tell the client which lines failed:
   200 `{"accepted": n, "stored": m, "rejected": [{"line": 3, "error": "..."}]}` (line
   numbers are 1-based physical lines of the body). 200 and not 207: every line was stored
   and retrying would not change the outcome.
5. The sink is flushed before the answer, so a 200 means the batch is in Elasticsearch or
   in the writer's disk spool. When that fails -> 503 with Retry-After; a retry is safe.

Idempotence (`id_key`): `http:<source>:<dataset>:b:<X-Batch-Id>:<line>:<sha256(line)>`
when the client sends `X-Batch-Id` (1-128 visible ASCII characters), else
`http:<source>:<dataset>:d:<sha256(body)>:<line>`. A retried batch gives the same ids and
writes nothing new; two different batches never share an id unless their bodies are
byte-identical (without a batch id such a body is indistinguishable from a retry). A
client that re-batches its lines on retry must send a stable `X-Batch-Id` per line group.

`GET /api/ingest/health` answers counters (no auth; they carry no event content).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import socket
import socketserver
import threading
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import orjson

from hcm_soc.collectors.base import RawRecord, Sink
from hcm_soc.collectors.definition import SourceDefinition
from hcm_soc.errors import HcmSocError
from hcm_soc.parsers.base import ParseContext, ParseError, ParserSpec
from hcm_soc.parsers.registry import get_parser

log = logging.getLogger(__name__)

PREFIX = "/api/ingest/"
HEALTH_PATH = "/api/ingest/health"
MAX_DATASETS_PER_SOURCE = 64
MAX_REPORTED_REJECTIONS = 1000
_DATASET_RE = re.compile(r"^[a-z0-9][a-z0-9_.]{0,99}$")
_BATCH_ID_RE = re.compile(r"^[\x21-\x7e]{1,128}$")


class HttpError(Exception):
    """An answer other than 200: status, message, extra headers, and whether to close."""

    def __init__(
        self, status: int, message: str, *, headers: dict[str, str] | None = None, close: bool = False
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}
        self.close = close


@dataclass
class _Source:
    definition: SourceDefinition
    token: bytes | None
    spec: ParserSpec
    max_body_bytes: int
    datasets: set[str] = field(default_factory=set)
    counters: dict[str, int] = field(
        default_factory=lambda: {"batches": 0, "lines_stored": 0, "lines_accepted": 0, "lines_rejected": 0}
    )

    @property
    def name(self) -> str:
        return self.definition.name

    @property
    def prefix(self) -> str:
        return self.name.replace("-", "_")

    def allows(self, dataset: str) -> bool:
        if self.definition.dataset:
            return dataset == self.definition.dataset
        return dataset == self.prefix or dataset.startswith(self.prefix + ".")

    def policy(self) -> str:
        if self.definition.dataset:
            return f"dataset {self.definition.dataset!r} only"
        return f"datasets {self.prefix!r} and {self.prefix + '.*'!r}"


class _Listener(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64

    def __init__(
        self,
        address: tuple[str, int],
        family: socket.AddressFamily,
        app: HttpIngestServer,
        sources: list[_Source],
    ) -> None:
        self.address_family = family
        self.app = app
        self.sources = sources
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host name (getfqdn), a DNS lookup we do not need
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)


class HttpIngestServer:
    """The `POST /api/ingest/<dataset>` endpoint for every `type: http` source.

    `start()` binds (port 0 picks a free one, see `address`), `run(stop)` serves until
    `stop` is set and then closes, `stats()` returns the counters also served by
    `GET /api/ingest/health`.
    """

    def __init__(
        self,
        definitions: list[SourceDefinition],
        sink_for: Callable[[SourceDefinition, str], Sink],
        *,
        tokens: dict[str, str] | None = None,
        timeout: float = 30.0,
    ) -> None:
        self._sink_for = sink_for
        self.timeout = timeout
        self._by_listen: dict[str, list[_Source]] = {}
        for d in definitions:
            if d.type != "http" or d.http is None or not d.enabled:
                continue
            token = (tokens or {}).get(d.name) or os.environ.get(d.http.token_env) or ""
            if not token:
                log.warning(
                    "http source has no token: every request for it is refused",
                    extra={
                        "source": d.name,
                        "token_env": d.http.token_env,
                        "next_step": f"export {d.http.token_env}=<a long random token>",
                    },
                )
            source = _Source(
                d, token.encode() if token else None, get_parser(d.format), d.http.max_body_bytes
            )
            self._by_listen.setdefault(d.http.listen, []).append(source)
        self._sources = [s for group in self._by_listen.values() for s in group]
        self._sinks: dict[tuple[str, str], tuple[Sink, threading.Lock]] = {}
        self._lock = threading.Lock()
        self._counters: dict[str, int] = {
            "requests": 0,
            "batches": 0,
            "lines_stored": 0,
            "lines_accepted": 0,
            "lines_rejected": 0,
            "bytes_received": 0,
            "unauthorized": 0,
            "forbidden": 0,
            "too_large": 0,
            "bad_requests": 0,
            "unavailable": 0,
            "errors": 0,
        }
        self._servers: list[_Listener] = []
        self._threads: list[threading.Thread] = []
        self._closed = False

    # -- lifecycle -------------------------------------------------------------
    def start(self) -> None:
        """Bind every listener (idempotent)."""
        if self._servers:
            return
        if not self._by_listen:
            raise HcmSocError("no enabled source of type http to serve")
        try:
            for listen, sources in self._by_listen.items():
                host, _, port = listen.rpartition(":")
                host = host.strip("[]")
                family = socket.AF_INET6 if ":" in host else socket.AF_INET
                server = _Listener((host, int(port)), family, self, sources)
                self._servers.append(server)
                log.info(
                    "http ingest listening",
                    extra={"address": _fmt(server.server_address), "sources": [s.name for s in sources]},
                )
        except OSError as e:
            self.close()
            raise HcmSocError(f"http ingest cannot listen on {listen}: {e}") from e

    @property
    def address(self) -> tuple[str, int]:
        """(host, port) of the first listener; after `start()`."""
        return self.addresses[0]

    @property
    def addresses(self) -> list[tuple[str, int]]:
        if not self._servers:
            raise HcmSocError("the http ingest server is not started")
        return [(str(s.server_address[0]), int(s.server_address[1])) for s in self._servers]

    def run(self, stop: threading.Event) -> None:
        """Serve until `stop` is set, then close."""
        self.start()
        for server in self._servers:
            t = threading.Thread(
                target=server.serve_forever,
                kwargs={"poll_interval": 0.2},
                name=f"http-ingest-{server.server_address[1]}",
                daemon=True,
            )
            t.start()
            self._threads.append(t)
        try:
            stop.wait()
        finally:
            self.close()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._threads:  # shutdown() waits for serve_forever, so only for listeners that serve
            for server in self._servers:
                server.shutdown()
        for server in self._servers:
            server.server_close()
        for t in self._threads:
            t.join(timeout=5)

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                **self._counters,
                "sources": {s.name: {**s.counters, "datasets": sorted(s.datasets)} for s in self._sources},
            }

    # -- request handling (called from handler threads) -------------------------
    def count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self._counters[key] += n

    def authorize(self, sources: list[_Source], token: str | None, dataset: str) -> _Source:
        if not token:
            raise HttpError(
                401,
                "missing token: send 'Authorization: Bearer <token>' or 'X-Api-Key: <token>'",
                headers={"WWW-Authenticate": 'Bearer realm="hcm-soc ingest"'},
                close=True,
            )
        given = token.encode()
        # compare with every source, without stopping at a match, so timing tells nothing
        matched = [s for s in sources if s.token is not None and hmac.compare_digest(given, s.token)]
        if not matched:
            raise HttpError(
                401,
                "invalid token",
                headers={"WWW-Authenticate": 'Bearer realm="hcm-soc ingest", error="invalid_token"'},
                close=True,
            )
        for s in matched:
            if s.allows(dataset):
                return s
        s = matched[0]
        raise HttpError(
            403,
            f"source {s.name!r} may not write to dataset {dataset!r}; it may write to {s.policy()}",
            close=True,
        )

    def sink(self, source: _Source, dataset: str) -> tuple[Sink, threading.Lock]:
        key = (source.name, dataset)
        with self._lock:
            entry = self._sinks.get(key)
            if entry is None:
                if len(source.datasets) >= MAX_DATASETS_PER_SOURCE:
                    raise HttpError(
                        403,
                        f"source {source.name!r} already writes to {MAX_DATASETS_PER_SOURCE} "
                        "datasets; set 'dataset:' in its definition or reuse one",
                        close=True,
                    )
                entry = (self._sink_for(source.definition, dataset), threading.Lock())
                self._sinks[key] = entry
                source.datasets.add(dataset)
        return entry

    def ingest(
        self, source: _Source, dataset: str, body: bytes, batch_id: str | None, peer: str
    ) -> dict[str, Any]:
        """Store every line of `body`; report the ones the source's parser refuses."""
        sink, sink_lock = self.sink(source, dataset)
        d = source.definition
        received = datetime.now(UTC)
        ctx = ParseContext(dataset=dataset, timezone=d.zone, received=received, options=d.options)
        base = (
            f"http:{d.name}:{dataset}:b:{batch_id}"
            if batch_id
            else f"http:{d.name}:{dataset}:d:{hashlib.sha256(body).hexdigest()}"
        )
        fields = {"log": {"source": {"address": peer}}}
        stored = accepted = 0
        rejected: list[dict[str, Any]] = []
        with sink_lock:  # one batch at a time per sink: pipelines keep plain counters
            try:
                for line_no, raw in enumerate(body.split(b"\n"), start=1):
                    raw = raw.removesuffix(b"\r")
                    if not raw.strip():
                        continue
                    text = raw.decode("utf-8", errors="replace")
                    try:
                        source.spec.parse(text, ctx)
                        accepted += 1
                    except ParseError as e:
                        rejected.append({"line": line_no, "error": str(e)})
                    id_key = (
                        f"{base}:{line_no}:{hashlib.sha256(raw).hexdigest()}"
                        if batch_id
                        else f"{base}:{line_no}"
                    )
                    sink.handle(RawRecord(data=text, id_key=id_key, received=received, fields=fields))
                    stored += 1
                sink.flush()
            except HcmSocError as e:  # Elasticsearch unreachable and no spool, or the spool is full
                self.count("unavailable")
                log.warning(
                    "http batch not stored: storage unavailable",
                    extra={"source": d.name, "dataset": dataset, "lines": stored, "error": str(e)},
                )
                raise HttpError(
                    503,
                    f"storage unavailable, retry later (safe to repeat): {e}",
                    headers={"Retry-After": "30"},
                ) from e
        with self._lock:
            for counters in (self._counters, source.counters):
                counters["batches"] += 1
                counters["lines_stored"] += stored
                counters["lines_accepted"] += accepted
                counters["lines_rejected"] += len(rejected)
        log.debug(
            "http batch stored",
            extra={
                "source": d.name,
                "dataset": dataset,
                "stored": stored,
                "rejected": len(rejected),
                "peer": peer,
            },
        )
        answer: dict[str, Any] = {
            "source": d.name,
            "dataset": dataset,
            "accepted": accepted,
            "stored": stored,
            "rejected": rejected[:MAX_REPORTED_REJECTIONS],
            "rejected_count": len(rejected),
        }
        if batch_id:
            answer["batch_id"] = batch_id
        return answer


class _Handler(BaseHTTPRequestHandler):
    server: _Listener
    protocol_version = "HTTP/1.1"  # keep-alive for shippers; every answer has a Content-Length
    server_version = "hcm-soc-ingest"
    sys_version = ""

    def setup(self) -> None:
        # a stalled client cannot hold a thread: every read and write has a deadline
        self.request.settimeout(self.server.app.timeout)
        super().setup()

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("http ingest: " + format, *args, extra={"peer": self.client_address[0]})

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        # the stdlib answers malformed requests and unknown methods with HTML; clients expect JSON
        self._send(code, {"error": message or explain or HTTPStatus(code).phrase, "status": code}, close=True)

    # -- routes ----------------------------------------------------------------
    def do_GET(self) -> None:
        app = self.server.app
        app.count("requests")
        if urlsplit(self.path).path.rstrip("/") == HEALTH_PATH:
            self._send(200, {"status": "ok", **app.stats()})
        else:
            self._fail(HttpError(404, f"no such resource; use POST {PREFIX}<dataset> or GET {HEALTH_PATH}"))

    def do_POST(self) -> None:
        app = self.server.app
        app.count("requests")
        try:
            source, dataset = self._check()
            body = self._body(source.max_body_bytes)
            app.count("bytes_received", len(body))
            batch_id = self._batch_id()
            self._send(200, app.ingest(source, dataset, body, batch_id, _fmt(self.client_address)))
        except HttpError as e:
            self._fail(e)
        except Exception as e:  # isolation boundary: one request never stops the server
            log.exception("http ingest request failed", extra={"path": self.path})
            app.count("errors")
            self._fail(HttpError(500, f"internal error: {type(e).__name__}", close=True))

    def do_PUT(self) -> None:
        self.server.app.count("requests")
        self._fail(HttpError(405, f"use POST {PREFIX}<dataset>", headers={"Allow": "POST"}, close=True))

    do_DELETE = do_PATCH = do_PUT

    # -- steps -----------------------------------------------------------------
    def _check(self) -> tuple[_Source, str]:
        path = urlsplit(self.path).path
        if not path.startswith(PREFIX):
            raise HttpError(404, f"no such resource; use POST {PREFIX}<dataset>", close=True)
        dataset = path[len(PREFIX) :].strip("/")
        if not _DATASET_RE.match(dataset) or dataset == "health":
            raise HttpError(
                400,
                f"dataset {dataset!r}: expected lowercase letters, digits, '_' or '.', e.g. {PREFIX}dvc.app",
                close=True,
            )
        source = self.server.app.authorize(self.server.sources, self._token(), dataset)
        return source, dataset

    def _token(self) -> str | None:
        auth = self.headers.get("Authorization", "")
        scheme, _, value = auth.strip().partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
        key = self.headers.get("X-Api-Key", "").strip()
        return key or None

    def _batch_id(self) -> str | None:
        batch_id = self.headers.get("X-Batch-Id")
        if batch_id is None:
            return None
        if not _BATCH_ID_RE.match(batch_id):
            raise HttpError(400, "X-Batch-Id: expected 1 to 128 visible ASCII characters")
        return batch_id

    def _body(self, limit: int) -> bytes:
        encoding = self.headers.get("Content-Encoding", "identity").strip().lower()
        if encoding not in ("identity", "gzip"):
            raise HttpError(415, f"Content-Encoding {encoding!r}: expected gzip or none", close=True)
        try:
            if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                body = self._read_chunked(limit)
            else:
                length = self.headers.get("Content-Length")
                if length is None:
                    raise HttpError(
                        411, "Content-Length or chunked Transfer-Encoding is required", close=True
                    )
                if not length.strip().isdigit():
                    raise HttpError(400, f"Content-Length {length!r} is not a number", close=True)
                size = int(length)
                if size > limit:
                    raise HttpError(
                        413,
                        f"body of {size} bytes is larger than this source's {limit} bytes; send smaller batches",
                        close=True,
                    )
                body = self._read_exact(size)
        except OSError as e:  # the socket timeout, or the client went away mid-body
            raise HttpError(
                408, f"body not received in full within {self.server.app.timeout:g} s ({e})", close=True
            ) from None
        if encoding == "gzip":
            body = _gunzip(body, limit)
        return body

    def _read_exact(self, size: int) -> bytes:
        data = self.rfile.read(size)
        if len(data) != size:
            raise HttpError(400, f"body ended after {len(data)} of {size} bytes", close=True)
        return data

    def _read_chunked(self, limit: int) -> bytes:
        parts: list[bytes] = []
        total = 0
        while True:
            line = self.rfile.readline(1024)
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise HttpError(400, "malformed chunked body", close=True) from None
            if size == 0:
                while self.rfile.readline(8192) not in (b"\r\n", b"\n", b""):
                    pass  # trailers are ignored
                if total > limit:
                    raise self._too_large(limit)
                return b"".join(parts)
            total += size
            if total > limit:
                # keep reading (and discarding) a bounded amount so that a client still
                # sending sees the 413 instead of a broken pipe (a lingering close)
                if total > 4 * limit + (1 << 20):
                    raise self._too_large(limit)
                self._read_exact(size)
            else:
                parts.append(self._read_exact(size))
            self.rfile.readline(8)  # CRLF after the chunk

    @staticmethod
    def _too_large(limit: int) -> HttpError:
        return HttpError(
            413, f"chunked body is larger than this source's {limit} bytes; send smaller batches", close=True
        )

    # -- answers ---------------------------------------------------------------
    def _fail(self, e: HttpError) -> None:
        app = self.server.app
        key = {401: "unauthorized", 403: "forbidden", 413: "too_large"}.get(e.status)
        if key:
            app.count(key)
        elif 400 <= e.status < 500:
            app.count("bad_requests")
        if e.status in (401, 403):
            log.warning(
                "http ingest refused",
                extra={
                    "status": e.status,
                    "peer": self.client_address[0],
                    "path": self.path,
                    "reason": e.message,
                },
            )
        self._send(e.status, {"error": e.message, "status": e.status}, headers=e.headers, close=e.close)

    def _send(
        self, status: int, body: dict[str, Any], *, headers: dict[str, str] | None = None, close: bool = False
    ) -> None:
        payload = orjson.dumps(body)
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if close:
            # the body may be unread: the connection cannot carry another request
            self.send_header("Connection", "close")
            self.close_connection = True
        try:
            self.end_headers()
            self.wfile.write(payload)
        except OSError:  # the client is gone; nothing left to tell it
            self.close_connection = True


def _gunzip(body: bytes, limit: int) -> bytes:
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = d.decompress(body, limit + 1)
    except zlib.error as e:
        raise HttpError(400, f"Content-Encoding gzip: not a gzip body ({e})") from None
    if len(out) > limit:
        raise HttpError(
            413, f"body is larger than this source's {limit} bytes once decompressed; send smaller batches"
        )
    if not d.eof:
        raise HttpError(400, "Content-Encoding gzip: the gzip body is truncated")
    return out


def _fmt(address: Any) -> str:
    host, port = address[0], address[1]
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
