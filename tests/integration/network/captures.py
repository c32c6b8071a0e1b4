"""Captures built with scapy for the network collector's integration tests, with what they contain.

One capture holds every kind of traffic the collector must turn into records; the
constants below are what the tests expect to find in Elasticsearch afterwards.
"""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path
from typing import Any

from scapy.all import load_layer
from scapy.layers.dns import DNS, DNSQR, DNSRR
from scapy.layers.inet import ICMP, IP, TCP, UDP, fragment
from scapy.layers.l2 import Dot1Q, Ether
from scapy.packet import Packet, Raw
from scapy.utils import wrpcap

load_layer("tls")
from scapy.layers.tls.all import (  # noqa: E402
    TLS,
    ProtocolName,
    ServerName,
    TLS_Ext_ALPN,
    TLS_Ext_ServerName,
    TLS_Ext_SupportedGroups,
    TLS_Ext_SupportedPointFormat,
    TLS_Ext_Unknown,
    TLSClientHello,
    TLSServerHello,
)

T0 = 1_764_130_000.0  # 2025-11-26T04:06:40Z
CLIENT = "10.1.2.3"
WEB = "93.184.216.34"
RESOLVER = "10.0.0.53"
TLS_SERVER = "203.113.1.10"

HTTP_HOST = "dichvucong.hochiminhcity.gov.vn"
HTTP_UA = "Mozilla/5.0 (hcm-soc test)"
DNS_NAME = "dichvucong.hochiminhcity.gov.vn"
DNS_ADDRS = ["203.113.131.1", "203.113.131.2"]
DNS_TCP_NAME = "nothing.example.com.vn"
SNI = "www.tphcm.gov.vn"
CIPHERS = [0x0A0A, 0x1301, 0xC02F, 0x009C]  # the first is GREASE: not part of JA3
EXTENSIONS = [0x1A1A, 0, 10, 11, 16]  # as sent, GREASE first
GROUPS = [0x2A2A, 29, 23]


def expected_ja3() -> str:
    """JA3 from the values above, by the published definition (GREASE values removed)."""

    def join(values: list[int]) -> str:
        return "-".join(str(v) for v in values if (v & 0x0F0F) != 0x0A0A)

    text = f"771,{join(CIPHERS)},{join(EXTENSIONS)},{join(GROUPS)},0"
    return hashlib.md5(text.encode()).hexdigest()


def _client_hello() -> bytes:
    exts = [
        TLS_Ext_Unknown(type=0x1A1A, val=b""),
        TLS_Ext_ServerName(servernames=[ServerName(servername=SNI.encode())]),
        TLS_Ext_SupportedGroups(groups=GROUPS),
        TLS_Ext_SupportedPointFormat(ecpl=[0]),
        TLS_Ext_ALPN(protocols=[ProtocolName(protocol=b"h2"), ProtocolName(protocol=b"http/1.1")]),
    ]
    return bytes(TLS(msg=[TLSClientHello(version=0x0303, ciphers=CIPHERS, ext=exts)]))


def _server_hello() -> bytes:
    hello = TLSServerHello(
        version=0x0303, cipher=0xC02F, ext=[TLS_Ext_ALPN(protocols=[ProtocolName(protocol=b"h2")])]
    )
    return bytes(TLS(msg=[hello]))


class Conversation:
    """A TCP connection with correct sequence numbers; packets are appended to `out`."""

    def __init__(self, out: list[Packet], t: float, client: str, cport: int, server: str, sport: int) -> None:
        self.out, self.t = out, t
        self.c, self.cp, self.s, self.sp = client, cport, server, sport
        self.cseq, self.sseq = 1000, 5000

    def _emit(self, from_client: bool, flags: str, data: bytes = b"", seq: int | None = None) -> None:
        if from_client:
            pkt = IP(src=self.c, dst=self.s) / TCP(
                sport=self.cp,
                dport=self.sp,
                flags=flags,
                seq=self.cseq if seq is None else seq,
                ack=self.sseq,
            )
        else:
            pkt = IP(src=self.s, dst=self.c) / TCP(
                sport=self.sp,
                dport=self.cp,
                flags=flags,
                seq=self.sseq if seq is None else seq,
                ack=self.cseq,
            )
        if data:
            pkt = pkt / Raw(load=data)
        frame = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / pkt
        frame.time = self.t
        self.t += 0.001
        self.out.append(frame)

    def handshake(self) -> None:
        self._emit(True, "S")
        self.cseq += 1
        self._emit(False, "SA")
        self.sseq += 1
        self._emit(True, "A")

    def send(self, data: bytes, from_client: bool = True) -> None:
        self._emit(from_client, "PA", data)
        if from_client:
            self.cseq += len(data)
        else:
            self.sseq += len(data)

    def retransmit_last(self, data: bytes, from_client: bool = True) -> None:
        """The same segment again (same sequence number): must not be counted twice."""
        seq = (self.cseq if from_client else self.sseq) - len(data)
        self._emit(from_client, "PA", data, seq=seq)

    def send_out_of_order(self, first: bytes, second: bytes, from_client: bool = False) -> None:
        """Two segments of one message, the second on the wire first."""
        base = self.cseq if from_client else self.sseq
        self._emit(from_client, "PA", second, seq=base + len(first))
        self._emit(from_client, "PA", first, seq=base)
        if from_client:
            self.cseq += len(first) + len(second)
        else:
            self.sseq += len(first) + len(second)

    def close(self) -> None:
        self._emit(True, "FA")
        self.cseq += 1
        self._emit(False, "FA")
        self.sseq += 1
        self._emit(True, "A")


def _udp(
    t: float, src: str, sport: int, dst: str, dport: int, payload: Any, vlan: int | None = None
) -> Packet:
    l2 = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    if vlan is not None:
        l2 = l2 / Dot1Q(vlan=vlan)
    frame = l2 / IP(src=src, dst=dst) / UDP(sport=sport, dport=dport) / payload
    frame.time = t
    return frame


def mixed_packets() -> list[Packet]:
    """Every kind of traffic of the tests, in time order."""
    out: list[Packet] = []
    # HTTP keep-alive: two requests on one connection; a retransmitted request, a response out of order
    http = Conversation(out, T0, CLIENT, 51000, WEB, 80)
    http.handshake()
    req1 = f"GET /thu-tuc?id=1 HTTP/1.1\r\nHost: {HTTP_HOST}\r\nUser-Agent: {HTTP_UA}\r\n\r\n".encode()
    http.send(req1)
    http.retransmit_last(req1)
    http.send_out_of_order(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n",
        b"Content-Length: 5\r\n\r\nhello",
        from_client=False,
    )
    req2 = f"POST /api/ho-so HTTP/1.1\r\nHost: {HTTP_HOST}\r\nUser-Agent: {HTTP_UA}\r\nContent-Length: 4\r\n\r\nabcd".encode()
    http.send(req2)
    http.send(
        b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 0\r\n\r\n", from_client=False
    )
    http.close()
    # DNS over UDP (on VLAN 20), two A answers
    query = DNS(id=0x1111, rd=1, qd=DNSQR(qname=DNS_NAME, qtype="A"))
    answer = DNS(
        id=0x1111,
        qr=1,
        rd=1,
        ra=1,
        qd=DNSQR(qname=DNS_NAME, qtype="A"),
        an=[DNSRR(rrname=DNS_NAME, type="A", rdata=a, ttl=300) for a in DNS_ADDRS],
    )
    out.append(_udp(T0 + 1, CLIENT, 53001, RESOLVER, 53, query, vlan=20))
    out.append(_udp(T0 + 1.01, RESOLVER, 53, CLIENT, 53001, answer, vlan=20))
    # DNS over TCP: TXT query answered NXDOMAIN
    dns_tcp = Conversation(out, T0 + 2, CLIENT, 53002, RESOLVER, 53)
    dns_tcp.handshake()
    q = bytes(DNS(id=0x2222, rd=1, qd=DNSQR(qname=DNS_TCP_NAME, qtype="TXT")))
    r = bytes(DNS(id=0x2222, qr=1, rd=1, ra=1, rcode=3, qd=DNSQR(qname=DNS_TCP_NAME, qtype="TXT")))
    dns_tcp.send(len(q).to_bytes(2, "big") + q)
    dns_tcp.send(len(r).to_bytes(2, "big") + r, from_client=False)
    dns_tcp.close()
    # TLS 1.2 ClientHello / ServerHello
    tls = Conversation(out, T0 + 3, CLIENT, 51001, TLS_SERVER, 443)
    tls.handshake()
    tls.send(_client_hello())
    tls.send(_server_hello(), from_client=False)
    tls.close()
    # ICMP echo
    for i, (src, dst, kind) in enumerate([(CLIENT, "8.8.8.8", 8), ("8.8.8.8", CLIENT, 0)]):
        frame = Ether() / IP(src=src, dst=dst) / ICMP(type=kind, id=7, seq=1) / Raw(load=b"ping")
        frame.time = T0 + 4 + i * 0.01
        out.append(frame)
    # a rejected connection: SYN answered by RST
    syn = Ether() / IP(src=CLIENT, dst="10.9.9.9") / TCP(sport=51002, dport=23, flags="S", seq=1)
    syn.time = T0 + 5
    rst = Ether() / IP(src="10.9.9.9", dst=CLIENT) / TCP(sport=23, dport=51002, flags="RA", seq=0, ack=2)
    rst.time = T0 + 5.001
    out += [syn, rst]
    # a fragmented UDP datagram (2,000 bytes in three fragments)
    big = IP(src=CLIENT, dst="10.0.0.7", id=4242) / UDP(sport=40000, dport=9999) / Raw(load=b"x" * 2000)
    for i, frag in enumerate(fragment(big, fragsize=800)):
        frame = Ether() / frag
        frame.time = T0 + 6 + i * 0.001
        out.append(frame)
    return out


def write_mixed(path: Path, *, pcapng: bool = False) -> Path:
    """The mixed capture as pcap, or as pcapng with the very same timestamps and frames."""
    if pcapng:
        tmp = path.with_suffix(".tmp.pcap")
        wrpcap(str(tmp), mixed_packets())
        pcap_to_pcapng(tmp, path)
        tmp.unlink()
    else:
        wrpcap(str(path), mixed_packets())
    return path


def pcap_to_pcapng(src: Path, dst: Path) -> None:
    """Rewrite a little-endian microsecond pcap as pcapng (section, interface, enhanced packet
    blocks). scapy's own pcapng writer rounds float times differently from its pcap writer."""
    data = src.read_bytes()
    linktype = struct.unpack_from("<I", data, 20)[0]
    out = [struct.pack("<IIIHHqI", 0x0A0D0D0A, 28, 0x1A2B3C4D, 1, 0, -1, 28)]
    out.append(struct.pack("<IIHHII", 1, 20, linktype, 0, 65535, 20))
    pos = 24
    while pos < len(data):
        sec, usec, caplen, wirelen = struct.unpack_from("<IIII", data, pos)
        frame = data[pos + 16 : pos + 16 + caplen]
        pos += 16 + caplen
        padded = frame + b"\0" * (-len(frame) % 4)
        total = 32 + len(padded)
        ts = sec * 1_000_000 + usec
        out.append(struct.pack("<IIIIIII", 6, total, 0, ts >> 32, ts & 0xFFFFFFFF, caplen, wirelen))
        out.append(padded + struct.pack("<I", total))
    dst.write_bytes(b"".join(out))


def write_dns_only(path: Path, count: int, t0: float = T0) -> Path:
    """`count` answered DNS queries, one per second: a capture of known size for truncation tests."""
    packets = []
    for i in range(count):
        name = f"host{i}.example.com.vn"
        q = DNS(id=i, rd=1, qd=DNSQR(qname=name))
        a = DNS(id=i, qr=1, rd=1, ra=1, qd=DNSQR(qname=name), an=[DNSRR(rrname=name, rdata="192.0.2.1")])
        packets.append(_udp(t0 + i, CLIENT, 40000 + i, RESOLVER, 53, q))
        packets.append(_udp(t0 + i + 0.01, RESOLVER, 53, CLIENT, 40000 + i, a))
    wrpcap(str(path), packets)
    return path
