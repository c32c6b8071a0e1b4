"""The syslog network listener: UDP (RFC 5426), TCP (RFC 6587) and TLS (RFC 5425).

`SyslogCollector` binds the socket its source definition names, splits what
arrives into messages and hands each to the sink as a `RawRecord` whose `fields`
carry `log.source.address` (the sender's ip:port). One UDP datagram is one
message; on TCP and TLS `FrameDecoder` (`syslog_framing.py`) finds the messages,
telling RFC 6587 octet counting (`LEN SP MSG`) from newline framing (LF, CRLF or
NUL) message by message. A message longer than `max_message_bytes` is cut (at a
UTF-8 character boundary) and tagged `_truncated`; invalid UTF-8 is decoded with
U+FFFD and a message holding control bytes (other than TAB, CR, LF) is tagged
`_binary`. Nothing a sender writes can stop the listener: one connection's failure
closes that connection only.

Threads, not asyncio: `run()` starts one I/O thread that owns every socket through
a `selectors` loop (non-blocking sockets, TLS handshakes driven by hand), and the
calling thread feeds the sink from a bounded queue. A selector loop serves many
connections with one thread; since no call in it blocks, a slow, silent or
half-open client (even one stuck in its TLS handshake) never holds up the others,
and idle ones are closed on a timer. The sink runs in its own thread because it
is the slow part (parsing, then HTTP to Elasticsearch): while the bulk writer
waits for Elasticsearch the I/O thread keeps reading and framing (the GIL is free
during the request), and when Elasticsearch falls behind the full queue stops the
reads, so TCP senders are slowed down instead of messages being lost. asyncio
would add per-message overhead and still need a thread for the blocking sink.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import re
import selectors
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from hcm_soc.collectors.base import RawRecord, Sink
from hcm_soc.collectors.definition import SourceDefinition, SyslogInput
from hcm_soc.collectors.syslog_framing import Frame, FrameDecoder, cut_utf8
from hcm_soc.errors import HcmSocError
from hcm_soc.parsers.base import BINARY_TAG, TRUNCATED_TAG

log = logging.getLogger(__name__)

Progress = Callable[[str], None]

_CONTROL = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")  # TAB, LF and CR are text
_RECV_BYTES = 64 * 1024
_UDP_BURST = 256  # datagrams read per readiness event, so TCP clients get their turn
_TLS_READS = 64  # TLS records read per readiness event, same reason
_UDP_RCVBUF = 8 * 1024 * 1024
_SO_RXQ_OVFL = getattr(socket, "SO_RXQ_OVFL", 40)  # Linux: kernel drop counter as ancillary data
# batches (one per read) waiting for the sink: a few tens of thousands of records at most, so
# memory stays flat and the GC has little to scan when Elasticsearch is the slower side
_QUEUE_BATCHES = 32
_HANDSHAKE_TIMEOUT = 10.0
_BUSY = 5000  # records per flush interval above which the sink is left to flush by size


def parse_listen(listen: str) -> tuple[str, int]:
    """'0.0.0.0:5514' -> ('0.0.0.0', 5514); '[::1]:5514' -> ('::1', 5514)."""
    host, _, port = listen.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


def format_peer(addr: Any) -> str:
    """'ip:port', '[v6]:port'; IPv4 clients of a dual-stack socket appear as plain IPv4."""
    host, port = str(addr[0]), int(addr[1])
    if host.startswith("::ffff:") and "." in host:
        host = host[7:]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass(eq=False, slots=True)
class _Conn:
    sock: socket.socket
    peer: str
    id_prefix: str
    decoder: FrameDecoder
    last: float
    handshaking: bool
    mask: int = selectors.EVENT_READ
    seq: int = 0
    clean: bool = True  # the bytes the decoder holds have no control byte


class SyslogCollector:
    """Listens as `definition.syslog` says and feeds every message to `sink`.

    `start()` binds (port 0: the OS picks; see `address`), `run(stop)` serves until
    `stop` is set or `close()` is called, then flushes the sink and closes.
    """

    def __init__(
        self,
        definition: SourceDefinition,
        sink: Sink,
        *,
        progress: Progress | None = None,
        idle_timeout: float = 3600.0,
        flush_interval: float = 1.0,
        max_connections: int = 4096,
    ) -> None:
        self.definition = definition
        self.config: SyslogInput = definition.syslog or SyslogInput()
        self.sink = sink
        self.progress = progress
        self.idle_timeout = idle_timeout
        self.flush_interval = flush_interval
        self.max_connections = max_connections
        self.protocol = self.config.protocol
        self._sock: socket.socket | None = None
        self._tls: ssl.SSLContext | None = None
        self._sel: selectors.DefaultSelector | None = None
        self._conns: set[_Conn] = set()
        self._queue: queue.Queue[list[RawRecord]] = queue.Queue(_QUEUE_BATCHES)
        self._closed = threading.Event()
        self._running = False
        self._draining = False
        self._io_error: BaseException | None = None
        self._start_ns = 0
        self._udp_prefix = ""
        self._seq = 0  # datagrams (UDP) or accepted connections (TCP/TLS)
        names = "messages bytes connections truncated binary framing_errors dropped tls_failures idle_closed"
        self._counters = dict.fromkeys((*names.split(), "refused", "sink_errors"), 0)
        self._kernel_drops = 0  # UDP datagrams the kernel dropped (full receive buffer), SO_RXQ_OVFL
        self.rcvbuf = 0

    # -- public API ------------------------------------------------------------
    @property
    def address(self) -> tuple[str, int]:
        if self._sock is None:
            raise HcmSocError(f"syslog source {self.definition.name}: start() has not bound a socket yet")
        host, port = self._sock.getsockname()[:2]
        return str(host), int(port)

    def start(self) -> None:
        """Bind and listen; return at once. Errors name the source, the address and the fix."""
        if self._sock is not None:
            return
        self._closed.clear()
        name, cfg = self.definition.name, self.config
        if self.protocol == "tls":
            self._tls = _tls_context(name, cfg)
        host, port = parse_listen(cfg.listen)
        kind = socket.SOCK_DGRAM if self.protocol == "udp" else socket.SOCK_STREAM
        sock = _bind(name, cfg.listen, host, port, kind)
        if self.protocol == "udp":
            self.rcvbuf = _raise_rcvbuf(sock)
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, _SO_RXQ_OVFL, 1)
        else:
            sock.listen(1024)
        sock.setblocking(False)
        self._sock = sock
        self._start_ns = time.time_ns()
        self._udp_prefix = f"syslog:{name}:udp:{self._start_ns}:"
        self._sel = selectors.DefaultSelector()
        self._sel.register(sock, selectors.EVENT_READ, None)
        where = format_peer(self.address)
        extra: dict[str, Any] = {"protocol": self.protocol, "address": where}
        if self.protocol == "udp":
            extra["rcvbuf"] = self.rcvbuf
            if self.rcvbuf < _UDP_RCVBUF:
                msg = "UDP receive buffer smaller than asked; raise net.core.rmem_max to 8388608 or more"
                self._log(logging.WARNING, msg, **extra, asked=_UDP_RCVBUF)
        self._log(logging.INFO, "syslog listener started", **extra)
        if self.progress:
            self.progress(f"{name}: syslog over {self.protocol} listening on {where}")

    def run(self, stop: threading.Event) -> None:
        """Serve until `stop` is set or `close()` is called; then deliver what was read, flush, close."""
        self.start()
        self._running = self._draining = True
        io = threading.Thread(
            target=self._io_main, args=(stop,), name=f"syslog-io-{self.definition.name}", daemon=True
        )
        io.start()
        try:
            self._feed_sink(stop, io)
        finally:
            self._draining = False
            self._closed.set()
            io.join(timeout=10)
            self._running = False
            self.close()
        if self._io_error is not None:
            raise HcmSocError(
                f"syslog source {self.definition.name}: the listener failed: {self._io_error!r}"
            ) from self._io_error

    def close(self) -> None:
        """Stop serving; when `run()` is active it finishes its work and returns."""
        self._closed.set()
        if self._running:
            return
        for conn in list(self._conns):
            self._end(conn, "listener closed", emit=False)
        if self._sel is not None:
            self._sel.close()
            self._sel = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None
            self._log(logging.INFO, "syslog listener closed", stats=self.stats())
            if self.progress:
                self.progress(f"{self.definition.name}: syslog listener closed, {self.stats()}")

    def stats(self) -> dict[str, int]:
        return {
            **self._counters,
            "dropped": self._counters["dropped"] + self._kernel_drops,
            "active_connections": len(self._conns),
            "udp_rcvbuf": self.rcvbuf,
            "queued_batches": self._queue.qsize(),
        }

    # -- the sink thread -------------------------------------------------------
    def _feed_sink(self, stop: threading.Event, io: threading.Thread) -> None:
        """Hand every record to the sink; flush at most every `flush_interval` seconds, and only
        when fewer than _BUSY records went by since: a busier sink flushes itself by size, and
        forcing small extra batches on it costs Elasticsearch a request (and an fsync) each."""
        pending_since: float | None = None  # start of the window of records not yet flushed
        handed, backoff = 0, 0.0
        while True:
            try:
                batch: list[RawRecord] | None = self._queue.get(timeout=0.25)
            except queue.Empty:
                batch = None
            now = time.monotonic()
            if batch:
                for record in batch:
                    try:
                        self.sink.handle(record)
                        backoff = 0.0
                    except Exception:  # isolation boundary: a failing sink must not end the listener
                        backoff = self._sink_failed("handle", record.id_key, backoff)
                pending_since = pending_since or now
                handed += len(batch)
            if stop.is_set():
                self._closed.set()  # the I/O thread ends its connections, then exits
            done = batch is None and not io.is_alive() and self._queue.empty()
            if pending_since is not None and (done or now - pending_since >= self.flush_interval):
                if done or handed < _BUSY:
                    try:
                        self.sink.flush()
                        pending_since, backoff = None, 0.0
                    except Exception:  # isolation boundary, as above; retried on the next turn
                        backoff = self._sink_failed("flush", None, backoff)
                        pending_since = now
                else:
                    pending_since = now  # look again after one more window
                handed = 0
            if done:
                return

    def _sink_failed(self, what: str, id_key: str | None, backoff: float) -> float:
        self._counters["sink_errors"] += 1
        self._log(logging.ERROR, "syslog sink failed", exc=True, call=what, id_key=id_key)
        backoff = min(max(backoff * 2, 0.1), 5.0)
        time.sleep(backoff)  # Elasticsearch down without a spool: slow down, the queue pushes back
        return backoff

    # -- the I/O thread --------------------------------------------------------
    def _io_main(self, stop: threading.Event) -> None:
        try:
            self._io_loop(stop)
        except BaseException as e:  # reported by run() so that the supervisor restarts the source
            self._io_error = e
            self._log(logging.ERROR, "syslog listener loop failed", exc=True)
        finally:
            for conn in list(self._conns):
                self._end(conn, "listener stopping")

    def _io_loop(self, stop: threading.Event) -> None:
        assert self._sel is not None
        next_sweep = time.monotonic() + 1.0
        ready: list[_Conn] = []  # TLS connections with decrypted data the selector cannot see
        while not (stop.is_set() or self._closed.is_set()):
            events = self._sel.select(0 if ready else 0.25)
            todo, ready = dict.fromkeys(ready), []
            for key, _mask in events:
                if key.data is not None:
                    todo[key.data] = None
                elif self.protocol == "udp":
                    self._read_udp()
                else:
                    self._accept()
            for conn in todo:
                if conn in self._conns and self._service(conn):
                    ready.append(conn)
            now = time.monotonic()
            if now >= next_sweep:
                next_sweep = now + 1.0
                self._sweep(now)

    def _accept(self) -> None:
        assert self._sock is not None and self._sel is not None
        for _ in range(64):
            try:
                sock, addr = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:  # EMFILE and friends: log, keep serving who is connected
                self._log(logging.WARNING, "syslog accept failed", error=str(e))
                return
            peer = format_peer(addr)
            if len(self._conns) >= self.max_connections:
                self._counters["refused"] += 1
                self._log(logging.WARNING, "too many syslog connections; refused", peer=peer)
                sock.close()
                continue
            sock.setblocking(False)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)  # half-open peers end eventually
            if self._tls is not None:
                sock = self._tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
            self._seq += 1
            self._counters["connections"] += 1
            id_prefix = f"syslog:{self.definition.name}:{self.protocol}:{peer}:{self._start_ns}:{self._seq}:"
            decoder = FrameDecoder(self.config.framing, self.config.max_message_bytes)
            conn = _Conn(sock, peer, id_prefix, decoder, time.monotonic(), self._tls is not None)
            self._conns.add(conn)
            self._sel.register(sock, selectors.EVENT_READ, conn)
            self._log(logging.DEBUG, "syslog connection", peer=peer)

    def _service(self, conn: _Conn) -> bool:
        """Handle a readiness event; True when TLS holds decrypted data still to read."""
        try:
            if conn.handshaking and not self._handshake(conn):
                return False
            return self._read(conn)
        except Exception:  # isolation boundary: one connection's trouble closes that connection only
            self._log(logging.ERROR, "syslog connection failed", exc=True, peer=conn.peer)
            self._end(conn, "error")
            return False

    def _handshake(self, conn: _Conn) -> bool:
        assert isinstance(conn.sock, ssl.SSLSocket)
        try:
            conn.sock.do_handshake()
        except ssl.SSLWantReadError:
            self._want(conn, selectors.EVENT_READ)
            return False
        except ssl.SSLWantWriteError:
            self._want(conn, selectors.EVENT_READ | selectors.EVENT_WRITE)
            return False
        except OSError as e:  # bad or missing client certificate, not TLS at all, reset, …
            self._counters["tls_failures"] += 1
            self._log(logging.WARNING, "syslog TLS handshake failed", peer=conn.peer, error=str(e))
            self._end(conn, "tls handshake failed", emit=False)
            return False
        conn.handshaking = False
        conn.last = time.monotonic()
        self._want(conn, selectors.EVENT_READ)
        cert = conn.sock.getpeercert() or {}
        subject = ", ".join("=".join(pair) for rdn in cert.get("subject", ()) for pair in rdn) or None
        version = conn.sock.version()
        self._log(logging.INFO, "syslog TLS client", peer=conn.peer, tls=version, client_subject=subject)
        return True

    def _read(self, conn: _Conn) -> bool:
        sock, chunks, reason = conn.sock, [], None
        tls = isinstance(sock, ssl.SSLSocket)
        for _ in range(_TLS_READS if tls else 1):
            try:
                data = sock.recv(_RECV_BYTES)
            except (BlockingIOError, InterruptedError, ssl.SSLWantReadError):
                break
            except ssl.SSLWantWriteError:
                self._want(conn, selectors.EVENT_READ | selectors.EVENT_WRITE)
                break
            except OSError as e:  # reset, TLS alert, …: the peer is gone
                reason = f"{type(e).__name__}: {e}"
                break
            if not data:
                reason = "closed by peer"
                break
            chunks.append(data)
            if isinstance(sock, ssl.SSLSocket):
                self._want(conn, selectors.EVENT_READ)
                if not sock.pending():
                    break
        if chunks:
            conn.last = time.monotonic()
            errors = conn.decoder.framing_errors
            # one scan of the whole read instead of one per message; bytes held over from a read
            # with control bytes keep the next frames on the per-message check
            clean = conn.clean and not any(_CONTROL.search(data) for data in chunks)
            frames: list[Frame] = []
            for data in chunks:
                self._counters["bytes"] += len(data)
                frames += conn.decoder.feed(data)
            conn.clean = clean or not conn.decoder.buffered
            self._framing(conn, errors)
            self._emit(frames, conn, clean)
        if reason is not None:
            self._end(conn, reason)
            return False
        return isinstance(sock, ssl.SSLSocket) and bool(chunks) and sock.pending() > 0

    def _read_udp(self) -> None:
        assert self._sock is not None
        records: list[RawRecord] = []
        now = datetime.now(UTC)
        limit = self.config.max_message_bytes
        for _ in range(_UDP_BURST):
            try:
                data, anc, flags, addr = self._sock.recvmsg(65536, socket.CMSG_SPACE(4))
            except (BlockingIOError, InterruptedError):
                break
            except OSError as e:
                self._log(logging.WARNING, "syslog UDP receive failed", error=str(e))
                break
            for level, kind, cdata in anc:
                if level == socket.SOL_SOCKET and kind == _SO_RXQ_OVFL and len(cdata) >= 4:
                    self._kernel_drops = struct.unpack("=I", cdata[:4])[0]
            self._counters["bytes"] += len(data)
            truncated = bool(flags & socket.MSG_TRUNC)
            if len(data) > limit:
                data, truncated = cut_utf8(data, limit), True
            data = data.rstrip(b"\r\n\0")
            if data:
                self._seq += 1
                peer = format_peer(addr)
                records.append(
                    self._record(data, truncated, f"{self._udp_prefix}{peer}:{self._seq}", peer, now)
                )
        self._handoff(records)

    def _emit(self, frames: list[Frame], conn: _Conn, clean: bool = False) -> None:
        """`clean`: the bytes of these frames are known to hold no control byte."""
        if not frames:
            return
        now = datetime.now(UTC)  # one clock read per read(): these messages arrived together
        peer, prefix, seq = conn.peer, conn.id_prefix, conn.seq
        records = []
        for data, truncated in frames:
            seq += 1
            records.append(self._record(data, truncated, f"{prefix}{seq}", peer, now, clean))
        conn.seq = seq
        self._handoff(records)

    def _record(
        self, data: bytes, truncated: bool, id_key: str, peer: str, now: datetime, clean: bool = False
    ) -> RawRecord:
        c = self._counters
        c["messages"] += 1
        tags: tuple[str, ...] = ()
        if not clean and _CONTROL.search(data) is not None:
            tags = (BINARY_TAG,)
            c["binary"] += 1
        if truncated:
            tags += (TRUNCATED_TAG,)
            c["truncated"] += 1
        fields = {"log": {"source": {"address": peer}}}
        return RawRecord(data.decode("utf-8", "replace"), id_key, now, fields, tags)

    def _handoff(self, records: list[RawRecord]) -> None:
        """Queue records for the sink thread; block while it is behind (that is the back pressure)."""
        if not records:
            return
        while True:
            try:
                self._queue.put(records, timeout=0.25)
                return
            except queue.Full:
                if not self._draining:  # nobody will ever take them
                    self._counters["dropped"] += len(records)
                    return

    def _framing(self, conn: _Conn, before: int) -> None:
        errors = conn.decoder.framing_errors - before
        if errors:
            self._counters["framing_errors"] += errors
            msg = "syslog framing error: a bad length prefix, or a frame cut by the end of the connection"
            self._log(logging.WARNING, msg, peer=conn.peer, errors=errors)

    def _want(self, conn: _Conn, mask: int) -> None:
        if conn.mask != mask and self._sel is not None:
            self._sel.modify(conn.sock, mask, conn)
            conn.mask = mask

    def _sweep(self, now: float) -> None:
        for conn in list(self._conns):
            limit = _HANDSHAKE_TIMEOUT if conn.handshaking else self.idle_timeout
            if now - conn.last > limit:
                self._counters["idle_closed"] += 1
                self._end(conn, "tls handshake timed out" if conn.handshaking else "idle")

    def _end(self, conn: _Conn, reason: str, *, emit: bool = True) -> None:
        if conn not in self._conns:
            return
        self._conns.discard(conn)
        if emit and not conn.handshaking:
            errors = conn.decoder.framing_errors
            frames = conn.decoder.finish()
            self._framing(conn, errors)
            self._emit(frames, conn)
        if self._sel is not None:
            with contextlib.suppress(KeyError, ValueError):
                self._sel.unregister(conn.sock)
        with contextlib.suppress(OSError):
            conn.sock.close()
        self._log(logging.DEBUG, "syslog connection closed", peer=conn.peer, messages=conn.seq, reason=reason)

    def _log(self, level: int, msg: str, *, exc: bool = False, **extra: Any) -> None:
        log.log(level, msg, exc_info=exc, extra={"source": self.definition.name, **extra})


def _tls_context(name: str, cfg: SyslogInput) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(str(cfg.tls_cert), str(cfg.tls_key))
        if cfg.tls_client_ca is not None:
            ctx.load_verify_locations(cafile=str(cfg.tls_client_ca))
            ctx.verify_mode = ssl.CERT_REQUIRED
    except (OSError, ssl.SSLError) as e:
        raise HcmSocError(
            f"syslog source {name}: cannot load the TLS certificate, key or client CA "
            f"({cfg.tls_cert}, {cfg.tls_key}, {cfg.tls_client_ca}): {e}; check the PEM files and their permissions"
        ) from e
    return ctx


def _bind(name: str, listen: str, host: str, port: int, kind: socket.SocketKind) -> socket.socket:
    try:
        family, _, proto, _, addr = socket.getaddrinfo(
            host or None, port, type=kind, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, kind, proto)
    except OSError as e:
        raise HcmSocError(f"syslog source {name}: cannot listen on {listen}: {e}; check syslog.listen") from e
    try:
        if kind == socket.SOCK_STREAM:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # restart while TIME_WAIT lingers
        if family == socket.AF_INET6 and host in ("::", ""):
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)  # [::] also takes IPv4 senders
        sock.bind(addr)
    except OSError as e:
        sock.close()
        raise HcmSocError(
            f"syslog source {name}: cannot listen on {listen}: {e.strerror or e}; "
            "is another process using the port, or does a port below 1024 need privileges?"
        ) from e
    return sock


def _raise_rcvbuf(sock: socket.socket) -> int:
    """Ask for an 8 MiB receive buffer (bursts of UDP wait there); return what the OS granted."""
    force = getattr(socket, "SO_RCVBUFFORCE", None)
    try:
        if force is None:
            raise PermissionError
        sock.setsockopt(socket.SOL_SOCKET, force, _UDP_RCVBUF)  # beyond rmem_max, needs CAP_NET_ADMIN
    except OSError:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _UDP_RCVBUF)
    return int(sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF))
