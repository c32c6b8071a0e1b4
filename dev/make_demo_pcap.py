"""Writes src/hcm_soc/data/demo-pcap/city-segment.pcap: a few minutes of a city network segment.

Run from the repository root with the project's Python (scapy installed):
    .venv/bin/python dev/make_demo_pcap.py
The output is committed; the demo reads it with `hcm-soc pcap`. Every packet is built here, so the
capture is reproducible (fixed start time, fixed random seed).

What it contains (internal city range 10.10.0.0/16):
- normal DNS lookups of city portals from workstations, answered by the city resolver 10.10.0.53;
- DNS tunnelling: 10.10.5.23 sends 80 TXT queries with long encoded labels under one domain;
- a TCP SYN port scan from 203.0.113.66 against 10.10.1.20 (ports 1-300; most reset, 22/80/443 open);
- clear-text HTTP to the e-government portal 10.10.2.10 on a keep-alive connection, including a
  sqlmap SQL-injection probe from 198.51.100.77;
- TLS 1.2 handshakes (ClientHello with SNI + ALPN, ServerHello) from 10.10.5.23 to a suspicious domain;
- beaconing: 10.10.5.60 opens a short TCP connection to 192.0.2.99:8443 every 60 s;
- ICMP echo between workstations and the resolver.
"""

from __future__ import annotations

import random
from pathlib import Path

from scapy.all import DNS, DNSQR, DNSRR, ICMP, IP, TCP, UDP, Ether, Raw, wrpcap  # type: ignore[attr-defined]
from scapy.layers.tls.extensions import ProtocolName, ServerName, TLS_Ext_ALPN, TLS_Ext_ServerName
from scapy.layers.tls.handshake import TLSClientHello, TLSServerHello
from scapy.layers.tls.record import TLS

START = 1795568400.0  # 2026-11-25T01:00:00Z (08:00 in Ho Chi Minh City), the day of the bundled logs
OUT = Path("src/hcm_soc/data/demo-pcap/city-segment.pcap")
rng = random.Random(2026)
packets: list = []


def add(ts: float, pkt) -> None:
    pkt.time = ts
    packets.append(pkt)


def eth(src_ip: str, dst_ip: str):
    return Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / IP(src=src_ip, dst=dst_ip)


def tcp_session(
    ts: float, cli: str, cport: int, srv: str, sport: int, requests: list[tuple[bytes, bytes]]
) -> float:
    """Handshake, request/response pairs (each response after its request), FIN both ways."""
    cseq, sseq = rng.randrange(1 << 31), rng.randrange(1 << 31)
    add(ts, eth(cli, srv) / TCP(sport=cport, dport=sport, flags="S", seq=cseq))
    add(ts + 0.001, eth(srv, cli) / TCP(sport=sport, dport=cport, flags="SA", seq=sseq, ack=cseq + 1))
    add(ts + 0.002, eth(cli, srv) / TCP(sport=cport, dport=sport, flags="A", seq=cseq + 1, ack=sseq + 1))
    cseq, sseq, t = cseq + 1, sseq + 1, ts + 0.003
    for req, resp in requests:
        add(t, eth(cli, srv) / TCP(sport=cport, dport=sport, flags="PA", seq=cseq, ack=sseq) / Raw(req))
        cseq += len(req)
        add(
            t + 0.01,
            eth(srv, cli) / TCP(sport=sport, dport=cport, flags="PA", seq=sseq, ack=cseq) / Raw(resp),
        )
        sseq += len(resp)
        t += 0.05
    add(t, eth(cli, srv) / TCP(sport=cport, dport=sport, flags="FA", seq=cseq, ack=sseq))
    add(t + 0.001, eth(srv, cli) / TCP(sport=sport, dport=cport, flags="FA", seq=sseq, ack=cseq + 1))
    add(t + 0.002, eth(cli, srv) / TCP(sport=cport, dport=sport, flags="A", seq=cseq + 1, ack=sseq + 1))
    return t + 0.003


def dns(ts: float, cli: str, qname: str, qtype: str, answers: list) -> None:
    qid, port = rng.randrange(65536), rng.randrange(20000, 60000)
    add(
        ts,
        eth(cli, "10.10.0.53")
        / UDP(sport=port, dport=53)
        / DNS(id=qid, rd=1, qd=DNSQR(qname=qname, qtype=qtype)),
    )
    an = None
    for rr in answers:
        an = rr if an is None else an / rr
    add(
        ts + 0.004,
        eth("10.10.0.53", cli)
        / UDP(sport=53, dport=port)
        / DNS(id=qid, qr=1, rd=1, ra=1, qd=DNSQR(qname=qname, qtype=qtype), an=an),
    )


def http_response(body: bytes, status: str = "200 OK", ctype: str = "text/html; charset=utf-8") -> bytes:
    head = (
        f"HTTP/1.1 {status}\r\nServer: nginx\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def main() -> None:
    # normal DNS
    for i, host in enumerate(["dichvucong.hochiminhcity.gov.vn", "mail.tphcm.gov.vn", "www.google.com"] * 4):
        dns(
            START + i * 7.3,
            f"10.10.5.{30 + i % 5}",
            host,
            "A",
            [DNSRR(rrname=host, type="A", ttl=300, rdata=f"10.10.2.{10 + i % 3}")],
        )
    # DNS tunnelling
    alphabet = "abcdefghijklmnopqrstuvwxyz234567"
    for i in range(80):
        label = "".join(rng.choice(alphabet) for _ in range(52))
        name = f"{label}.{i:04x}.t.exfil-tunnel.example"
        dns(
            START + 20 + i * 1.5,
            "10.10.5.23",
            name,
            "TXT",
            [DNSRR(rrname=name, type="TXT", ttl=0, rdata="ok")],
        )
    # port scan
    for port in range(1, 301):
        ts = START + 60 + port * 0.01
        sport = 40000 + port
        add(ts, eth("203.0.113.66", "10.10.1.20") / TCP(sport=sport, dport=port, flags="S", seq=1000))
        if port in (22, 80, 443):
            add(
                ts + 0.001,
                eth("10.10.1.20", "203.0.113.66")
                / TCP(sport=port, dport=sport, flags="SA", seq=5000, ack=1001),
            )
            add(
                ts + 0.002,
                eth("203.0.113.66", "10.10.1.20") / TCP(sport=sport, dport=port, flags="R", seq=1001),
            )
        else:
            add(
                ts + 0.001,
                eth("10.10.1.20", "203.0.113.66") / TCP(sport=port, dport=sport, flags="RA", seq=0, ack=1001),
            )
    # HTTP keep-alive: a citizen, then sqlmap
    page = b"<html><body>Cong dich vu cong</body></html>"
    t = tcp_session(
        START + 100,
        "198.51.100.20",
        51000,
        "10.10.2.10",
        80,
        [
            (
                b"GET /dvc/ HTTP/1.1\r\nHost: dichvucong.hochiminhcity.gov.vn\r\nUser-Agent: Mozilla/5.0 (Windows NT 10.0; Win64; x64)\r\nAccept: */*\r\n\r\n",
                http_response(page),
            ),
            (
                b"GET /dvc/thu-tuc?id=12 HTTP/1.1\r\nHost: dichvucong.hochiminhcity.gov.vn\r\nUser-Agent: Mozilla/5.0 (Windows NT 10.0; Win64; x64)\r\nAccept: */*\r\n\r\n",
                http_response(page),
            ),
        ],
    )
    probes = [
        "/dvc/thu-tuc?id=12%27%20UNION%20ALL%20SELECT%20NULL%2CNULL--%20-",
        "/dvc/thu-tuc?id=12%20AND%201%3D1",
        "/dvc/../../../../etc/passwd",
    ]
    tcp_session(
        t + 5,
        "198.51.100.77",
        52000,
        "10.10.2.10",
        80,
        [
            (
                f"GET {p} HTTP/1.1\r\nHost: dichvucong.hochiminhcity.gov.vn\r\nUser-Agent: sqlmap/1.7.2#stable (https://sqlmap.org)\r\nAccept: */*\r\n\r\n".encode(),
                http_response(b"forbidden", "403 Forbidden"),
            )
            for p in probes
        ],
    )
    # TLS
    hello = TLS(
        msg=[
            TLSClientHello(
                version=0x0303,
                ciphers=[0xC02F, 0xC030, 0x009E, 0x002F],
                ext=[
                    TLS_Ext_ServerName(servernames=[ServerName(servername=b"update.bad-domain.example")]),
                    TLS_Ext_ALPN(
                        protocols=[ProtocolName(protocol=b"h2"), ProtocolName(protocol=b"http/1.1")]
                    ),
                ],
            )
        ]
    )
    server = TLS(msg=[TLSServerHello(version=0x0303, cipher=0xC02F)])
    tcp_session(START + 130, "10.10.5.23", 53000, "192.0.2.44", 443, [(bytes(hello), bytes(server))])
    # beaconing
    for i in range(30):
        tcp_session(
            START + 140 + i * 60 + rng.random() * 0.5,
            "10.10.5.60",
            54000 + i,
            "192.0.2.99",
            8443,
            [(b"\x17\x03\x03\x00\x10" + bytes(16), b"\x17\x03\x03\x00\x10" + bytes(16))],
        )
    # ICMP
    for i in range(4):
        add(START + 150 + i, eth("10.10.5.31", "10.10.0.53") / ICMP(type=8, id=7, seq=i))
        add(START + 150.001 + i, eth("10.10.0.53", "10.10.5.31") / ICMP(type=0, id=7, seq=i))
    packets.sort(key=lambda p: float(p.time))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    wrpcap(str(OUT), packets)
    print(f"{OUT}: {len(packets)} packets")


if __name__ == "__main__":
    main()
