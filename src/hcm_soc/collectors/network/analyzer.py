"""Packets in, ECS records out: the flow table, TCP reassembly and the DNS, HTTP and TLS analyzers.

Responsible for wiring :mod:`packets` → :mod:`flows` (every packet) and, for the
connections worth it, :mod:`tcpstream` → HTTP/TLS/DNS-over-TCP analyzers; UDP port
53 goes straight to the DNS decoder. Which TCP connections are analysed: those to
a known HTTP/TLS/DNS port, and those whose first client payload looks like HTTP
or a TLS handshake (so a web server on port 8081 is still seen); and each direction
only until its analyzer says nothing more from it can change a record (TLS after
the ChangeCipherSpec, a direction that is not HTTP): later segments skip
reassembly, so ``stats()``'s ``tcp_*`` counters cover the analysed bytes only.

API for the collector and the CLI::

    analyzer = NetworkAnalyzer(emit, internal_networks=[...], max_flows=200_000,
                               active_timeout=1800, idle_timeout=60)
    for packet in iter_pcap(path, on_progress=..., decoder=analyzer.decoder):
        analyzer.add(packet)
    analyzer.finish()          # end of input: emits everything still open
    analyzer.stats()           # counters: packets, bytes, decode errors by reason, …

or ``analyzer.add_frame(linktype, ts, frame)`` for live capture.
``emit(dataset, event, id_key)`` receives every record: ``dataset`` is one of
``network.flow``/``network.dns``/``network.http``/``network.tls`` and ``id_key`` a
stable string for the deterministic document id (same capture, same keys).
Application records carry the Community ID of their connection, so flows and
protocol records of one connection can be joined.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import cython

from hcm_soc.collectors.network.community_id import community_id
from hcm_soc.collectors.network.dns import DnsPairing, parse_dns
from hcm_soc.collectors.network.ecs import fixed6
from hcm_soc.collectors.network.flowrecord import Flow
from hcm_soc.collectors.network.flows import FlowTable, flow_community_id
from hcm_soc.collectors.network.http import HttpTracker
from hcm_soc.collectors.network.packet import Packet
from hcm_soc.collectors.network.packets import FrameDecoder, iter_pcap
from hcm_soc.collectors.network.tcpstream import TcpStream
from hcm_soc.collectors.network.tls import TlsTracker

__all__ = ["HTTP_PORTS", "TLS_PORTS", "Emit", "NetworkAnalyzer"]

Emit = Callable[[str, dict[str, Any], str | None], None]  # (dataset, event, id_key)

HTTP_PORTS = frozenset({80, 3128, 8000, 8008, 8080, 8088, 8888})
TLS_PORTS = frozenset({443, 465, 636, 853, 993, 995, 5061, 8443})
_HTTP_STARTS = (b"GET ", b"POST ", b"PUT ", b"HEAD ", b"DELETE ", b"OPTIONS ", b"PATCH ", b"CONNECT ")
_MAX_DNS_TCP_BUFFER = 2 + 65_535
_PROTOCOLS = {"network.dns": "dns", "network.http": "http", "network.tls": "tls"}
_EXPIRE_EVERY = 1.0  # seconds of capture time between timeout sweeps
_EMPTY: dict[str, Any] = {}  # read-only stand-in for a missing part of a record


@cython.no_gc  # streams and buffers only, never its flow
@cython.freelist(16)  # created and freed per connection or message: reuse the memory
@cython.cclass
class _Conn:
    """Analyzer state of one TCP connection that is being analysed (``Flow.ext``)."""

    __slots__ = ("app", "client_is_orig", "dns_buf", "done", "endpoints", "records", "to_client", "to_server")

    def __init__(self, app: str, client_is_orig: bool, flow: Flow) -> None:
        self.app = app
        self.client_is_orig = client_is_orig
        if client_is_orig:
            self.endpoints = (flow.orig_ip, flow.orig_port, flow.resp_ip, flow.resp_port)
        else:
            self.endpoints = (flow.resp_ip, flow.resp_port, flow.orig_ip, flow.orig_port)
        self.to_server = TcpStream()
        self.to_client = TcpStream()
        self.records = 0
        self.done = 0  # bit 1: client-to-server direction finished, bit 2: server-to-client
        self.dns_buf: tuple[bytearray, bytearray] | None = (
            (bytearray(), bytearray()) if app == "dns" else None
        )


_SKIP = object()  # Flow.ext of TCP connections that are not analysed


def _classify(flow: Flow, payload: bytes) -> Any:
    """At the first payload: _Conn for connections we analyse, _SKIP for the others."""
    conn = _port_conn(flow.resp_port, True, flow)
    if conn is None and flow.resp_port >= 1024:  # the originator may be the server (its SYN was missed)
        conn = _port_conn(flow.orig_port, False, flow)
    if conn is not None:
        return conn
    if flow.from_orig:  # the client's first bytes tell HTTP or TLS on another port
        if payload.startswith(_HTTP_STARTS):
            return _Conn("http", True, flow)
        if len(payload) >= 3 and payload[0] == 0x16 and payload[1] == 0x03:
            return _Conn("tls", True, flow)
    return _SKIP


def _port_conn(port: int, client_is_orig: bool, flow: Flow) -> _Conn | None:
    """The analyzer of a connection whose server side is on ``port``, if it is a known one."""
    if port in HTTP_PORTS:
        return _Conn("http", client_is_orig, flow)
    if port in TLS_PORTS:
        return _Conn("tls", client_is_orig, flow)
    if port == 53:
        return _Conn("dns", client_is_orig, flow)
    return None


class NetworkAnalyzer:
    """See the module docstring."""

    def __init__(
        self,
        emit: Emit,
        *,
        internal_networks: list[str] | None = None,
        max_flows: int = 200_000,
        active_timeout: float = 1800.0,
        idle_timeout: float = 60.0,
        decoder: FrameDecoder | None = None,
    ) -> None:
        self._emit = emit
        self.decoder = decoder if decoder is not None else FrameDecoder()
        self.flows = FlowTable(
            self._emit_flow,
            max_flows,
            internal_networks=internal_networks,
            active_timeout=active_timeout,
            idle_timeout=idle_timeout,
            on_end=self._flow_end,
        )
        self.dns = DnsPairing(on_emit=self._app_emitter("network.dns"))
        self.http = HttpTracker(self._app_emitter("network.http"))
        self.tls = TlsTracker(self._app_emitter("network.tls"))
        self.packets = 0
        self.bytes = 0
        self._current: Flow | None = None  # the flow whose packet is being analysed (for record ids)
        self._last_expire = 0.0
        self._tcp_counters = {
            "tcp_retransmitted": 0,
            "tcp_out_of_order": 0,
            "tcp_gaps": 0,
            "tcp_missed_bytes": 0,
        }

    # ------------------------------------------------------------------ input

    def add(self, p: Packet) -> None:
        self.packets += 1
        self.bytes += p.length
        if p.ts - self._last_expire >= _EXPIRE_EVERY:  # before adding: a long pause ends flows first
            self.expire(p.ts)
        flow = self.flows.add(p)
        proto = p.proto
        if proto == 6:
            if p.payload:  # a bare ACK/FIN/RST moves no stream bytes (the flow table has its flags)
                ext = flow.ext
                if ext is not _SKIP:
                    self._tcp(flow, p, ext)
        elif proto == 17 and (p.src_port == 53 or p.dst_port == 53) and p.payload:
            message = parse_dns(p.payload)
            if message is not None:
                flow.protocol = "dns"
            self._current = flow
            self.dns.add(p.ts, p.src_ip, p.src_port, p.dst_ip, p.dst_port, "udp", message)
            self._current = None

    def add_frame(self, linktype: int, ts: float, frame: bytes) -> None:
        """Live capture: decode one frame (DLT ``linktype``) and analyse it."""
        packet = self.decoder.decode(linktype, ts, frame)
        if packet is not None:
            self.add(packet)

    def read_pcap(self, path: Path, on_progress: Callable[[int, int], None] | None = None) -> None:
        """Analyse a whole capture file (without :meth:`finish`, so several files can form one run).
        Raises ``PcapError`` after analysing every packet before a damaged part."""
        for packet in iter_pcap(path, on_progress=on_progress, decoder=self.decoder):
            self.add(packet)

    def run(self, packets: Iterable[Packet]) -> None:
        for p in packets:
            self.add(p)
        self.finish()

    def expire(self, now: float) -> None:
        """Timeouts by capture time (or wall-clock time in live capture when traffic is quiet)."""
        self._last_expire = now
        self.flows.expire(now)
        self.dns.expire(now)

    def finish(self) -> None:
        """End of input: emit everything still open."""
        self.flows.flush()  # closes the HTTP/TLS state of each flow through _flow_end
        self.http.flush()
        self.tls.flush()
        self.dns.flush()

    def stats(self) -> dict[str, int]:
        out: dict[str, int] = {"packets": self.packets, "bytes": self.bytes}
        out.update(self.decoder.stats())
        out.update(self.flows.stats())
        out.update(self._tcp_counters)
        out["dns_malformed"] = self.dns.malformed
        out["http_not_http"] = self.http.non_http
        out["tls_malformed"] = self.tls.malformed
        return out

    # ------------------------------------------------------------------ TCP

    def _tcp(self, flow: Flow, p: Packet, ext: Any) -> None:
        """One TCP segment with payload; ``ext`` is the flow's ``_Conn`` or None (not classified yet:
        the flow table keeps the SYNs' sequence numbers until the first payload)."""
        payload = p.payload
        if ext is None:
            ext = flow.ext = _classify(flow, payload)
            if ext is _SKIP:
                return
            # Start both streams at their SYN when it was seen, so a first segment that arrives
            # after a later one is still delivered in order.
            conn = ext
            if conn.client_is_orig:
                client_isn = flow.oisn
                server_isn = flow.risn
            else:
                client_isn = flow.risn
                server_isn = flow.oisn
            if client_isn is not None:
                conn.to_server.start(client_isn)
            if server_isn is not None:
                conn.to_client.start(server_isn)
        conn = ext
        if flow.from_orig == conn.client_is_orig:
            if conn.done & 1:  # the analyzer has all it wants from the client: no reassembly
                return
            chunks = conn.to_server.segment(p.seq, p.tcp_flags, payload)
            if chunks:
                self._deliver(flow, conn, p.ts, True, chunks)
        else:
            if conn.done & 2:
                return
            chunks = conn.to_client.segment(p.seq, p.tcp_flags, payload)
            if chunks:
                self._deliver(flow, conn, p.ts, False, chunks)

    def _deliver(self, flow: Flow, conn: _Conn, ts: float, from_client: bool, chunks: list[bytes]) -> None:
        """Hand in-order bytes to the connection's analyzer; a direction it needs no more of is
        marked done, and its later segments skip reassembly altogether."""
        self._current = flow
        more = True
        try:
            app = conn.app
            if app == "http":
                http = self.http  # compiled: a C call per chunk, not a bound-method call
                key = flow.key
                endpoints = conn.endpoints
                for chunk in chunks:
                    if not http.add_segment(ts, key, from_client, chunk, endpoints):
                        more = False
                        break
            elif app == "tls":
                tls = self.tls
                key = flow.key
                endpoints = conn.endpoints
                for chunk in chunks:
                    if not tls.add_segment(ts, key, from_client, chunk, endpoints):
                        more = False
                        break
            else:
                self._dns_tcp(flow, conn, ts, from_client, chunks)
        finally:
            self._current = None
        if not more:
            conn.done |= 1 if from_client else 2

    def _dns_tcp(self, flow: Flow, conn: _Conn, ts: float, from_client: bool, chunks: list[bytes]) -> None:
        assert conn.dns_buf is not None
        buf = conn.dns_buf[0 if from_client else 1]
        for chunk in chunks:
            buf += chunk
        client = conn.endpoints
        src = client if from_client else (client[2], client[3], client[0], client[1])
        while len(buf) >= 2:
            length = (buf[0] << 8) | buf[1]
            if len(buf) < 2 + length:
                break
            message = parse_dns(bytes(buf[2 : 2 + length]))
            del buf[: 2 + length]
            if message is not None:
                flow.protocol = "dns"
            self.dns.add(ts, src[0], src[1], src[2], src[3], "tcp", message)
        if len(buf) > _MAX_DNS_TCP_BUFFER:
            buf.clear()

    def _flow_end(self, flow: Flow, final: bool) -> None:
        if not final or not isinstance(flow.ext, _Conn):
            return
        conn = flow.ext
        self._current = flow
        try:
            self._finish_stream(flow, conn, True, conn.to_server)
            self._finish_stream(flow, conn, False, conn.to_client)
            if conn.app == "http":
                self.http.close(flow.key)
            elif conn.app == "tls":
                self.tls.close(flow.key)
        finally:
            self._current = None

    def _finish_stream(self, flow: Flow, conn: _Conn, from_client: bool, stream: TcpStream) -> None:
        """End of one direction: deliver what reassembly still holds, count what it saw."""
        rest = stream.finish()
        if rest and not conn.done & (1 if from_client else 2):
            self._deliver(flow, conn, flow.last, from_client, rest)
        self._current = flow
        if stream.retransmitted or stream.out_of_order or stream.gaps:  # missed bytes need a gap
            counters = self._tcp_counters
            counters["tcp_retransmitted"] += stream.retransmitted
            counters["tcp_out_of_order"] += stream.out_of_order
            counters["tcp_gaps"] += stream.gaps
            counters["tcp_missed_bytes"] += stream.missed_bytes

    # ------------------------------------------------------------------ records

    def _emit_flow(self, event: dict[str, Any]) -> None:
        """A flow record to the sink (a C method when compiled: the flow table calls it per flow)."""
        self._emit("network.flow", event, event["hcm"]["flow"]["id_key"])

    def _app_emitter(self, dataset: str) -> Callable[[dict[str, Any]], None]:
        def emit(event: dict[str, Any]) -> None:
            self._emit(dataset, event, self._decorate(dataset, event))

        return emit

    def _decorate(self, dataset: str, event: dict[str, Any]) -> str:
        """Add the connection's Community ID, direction and VLAN; return the record's id key."""
        network = event.get("network")
        if network is None:
            network = event["network"] = {}
        src = event.get("source", _EMPTY)
        dst = event.get("destination", _EMPTY)
        proto = 6 if network.get("transport") == "tcp" else 17
        flow = self._current
        if flow is not None and flow.proto == proto:
            flow.protocol = _PROTOCOLS[dataset]  # a record was decoded: the flow speaks this protocol
            cid = flow.cid
            if cid is None:
                cid = flow_community_id(flow)
            if flow.vlan is not None:
                network["vlan"] = {"id": str(flow.vlan)}
            network["type"] = "ipv6" if flow.ip_version == 6 else "ipv4"
        else:
            cid = community_id(
                src.get("ip", ""), dst.get("ip", ""), proto, src.get("port", 0), dst.get("port", 0)
            )
            network["type"] = "ipv6" if ":" in str(src.get("ip", "")) else "ipv4"
        network["community_id"] = cid
        network["iana_number"] = "6" if proto == 6 else "17"
        s_ip = src.get("ip")  # one lookup each, not a test and a read
        d_ip = dst.get("ip")
        if s_ip is not None and d_ip is not None:
            network["direction"] = self.flows.internal.direction(s_ip, d_ip)
            event["related"] = {"ip": [s_ip] if s_ip == d_ip else [s_ip, d_ip]}
        if dataset == "network.dns":
            dns = event.get("dns", _EMPTY)
            question = dns.get("question", _EMPTY)
            return (
                f"{dataset}|{cid}|{event.get('@timestamp', '')}|{dns.get('id')}|"
                f"{question.get('name')}|{question.get('type')}"
            )
        if flow is not None:
            ext = flow.ext
            if isinstance(ext, _Conn):
                conn = ext  # typed when compiled: C field access
                conn.records += 1
                return f"{dataset}|{cid}|{fixed6(flow.conn_start)}|{conn.records}"
        return f"{dataset}|{cid}|{event.get('@timestamp', '')}"
