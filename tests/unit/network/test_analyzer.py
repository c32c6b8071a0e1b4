"""End to end on scapy-built captures: reassembled HTTP, TLS and DNS records, their ids and the counters."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

from scapy.all import DNS, DNSQR, DNSRR, IP, UDP

from hcm_soc.collectors.network.community_id import community_id
from hcm_soc.collectors.network.tls import parse_client_hello
from tests.unit.network.builder import Conversation, analyze, eth, of, timed, write_pcap, write_pcapng
from tests.unit.network_proto.test_tls import (
    _certificate_message,
    _client_hello,
    _record,
    _self_signed_der,
    _server_hello,
)

CLIENT, SERVER = "10.20.1.15", "203.113.131.40"


def _request(path: str, host: str = "dichvucong.hochiminhcity.gov.vn") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: Mozilla/5.0 (HCM)\r\n\r\n".encode()


def _response(body: bytes, status: str = "200 OK", ctype: str = "text/html; charset=utf-8") -> bytes:
    head = f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n\r\n"
    return head.encode() + body


def test_http_keep_alive_split_reordered_and_retransmitted(tmp_path: Path) -> None:
    c = Conversation(CLIENT, 50100, SERVER, 80)
    packets: list[Any] = [*c.handshake()]
    pages = [("/", b"<h1>Trang chu</h1>"), ("/tin-tuc?id=42", b"x" * 3000), ("/api/ho-so", b'{"ok":true}')]
    for i, (path, body) in enumerate(pages):
        req = c.data(True, _request(path), cuts=[5, 30])
        if i == 1:
            req = [req[2], req[0], req[1], req[0]]  # out of order, and a retransmission
        packets += req
        resp = c.data(
            False,
            _response(body, ctype="application/json" if path.startswith("/api") else "text/html"),
            cuts=[40, 1000],
        )
        if i == 1:
            resp.reverse()  # last segment first
        packets += resp
    packets += c.close()
    records, analyzer = analyze(write_pcap(tmp_path / "http.pcap", timed(packets)))
    http = of(records, "network.http")
    assert [e["url"]["original"] for e in http] == ["/", "/tin-tuc?id=42", "/api/ho-so"]
    assert [e["http"]["response"]["body"]["bytes"] for e in http] == [18, 3000, 11]
    assert [e["http"]["response"]["mime_type"] for e in http] == [
        "text/html",
        "text/html",
        "application/json",
    ]
    first = http[0]
    cid = community_id(CLIENT, SERVER, 6, 50100, 80)
    assert first["http"]["request"]["method"] == "GET" and first["http"]["response"]["status_code"] == 200
    assert first["url"]["domain"] == "dichvucong.hochiminhcity.gov.vn"
    assert first["user_agent"]["original"] == "Mozilla/5.0 (HCM)"
    assert first["source"] == {"ip": CLIENT, "port": 50100} and first["destination"] == {
        "ip": SERVER,
        "port": 80,
    }
    assert first["network"]["community_id"] == cid and first["network"]["direction"] == "outbound"
    keys = [k for ds, _, k in records if ds == "network.http"]
    assert keys == [f"network.http|{cid}|{packets[0].time:.6f}|{n}" for n in (1, 2, 3)]
    flow = of(records, "network.flow")[0]
    assert flow["network"]["protocol"] == "http" and flow["zeek"]["connection"]["conn_state"] == "SF"
    assert "T" in flow["zeek"]["connection"]["history"]
    stats = analyzer.stats()
    assert stats["tcp_retransmitted"] == 1 and stats["tcp_out_of_order"] == 3 and stats["tcp_gaps"] == 0
    assert stats["http_not_http"] == 0


def test_tls_hellos_and_certificate_split_across_segments(tmp_path: Path) -> None:
    c = Conversation(CLIENT, 50200, SERVER, 443)
    hello = _client_hello(tls13=False)
    server = _server_hello(tls13=False, cipher=0xC02F) + _record(22, _certificate_message(_self_signed_der()))
    packets = [
        *c.handshake(),
        *c.data(True, hello, cuts=[3, 60]),
        *c.data(False, server, cuts=[10, 200]),
        *c.data(True, _record(20, b"\x01")),
        *c.data(False, _record(20, b"\x01")),
        *c.close(),
    ]
    packets[4], packets[5] = packets[5], packets[4]  # the second part of the ClientHello arrives first
    records, analyzer = analyze(write_pcapng(tmp_path / "tls.pcapng", timed(packets)))
    (tls,) = of(records, "network.tls")
    parsed = parse_client_hello(hello)
    assert parsed is not None
    assert tls["tls"]["client"]["server_name"] == "dichvucong.hochiminhcity.gov.vn"
    assert tls["tls"]["client"]["ja3"] == parsed.ja3
    assert tls["tls"]["client"]["supported_protocols"] == ["h2", "http/1.1"]
    assert tls["tls"]["version"] == "1.2" and tls["tls"]["cipher"] == "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"
    assert tls["tls"]["server"]["x509"]["subject"]["common_name"] == "cổng-dịch-vụ.hcm.local"
    assert tls["tls"]["established"] is True
    assert tls["network"]["community_id"] == community_id(CLIENT, SERVER, 6, 50200, 443)
    assert of(records, "network.flow")[0]["network"]["protocol"] == "tls"
    assert analyzer.stats()["tls_malformed"] == 0 and analyzer.stats()["tcp_out_of_order"] == 1


def test_http_on_an_unusual_port_is_found_by_its_first_bytes(tmp_path: Path) -> None:
    c = Conversation(CLIENT, 50300, SERVER, 8181)
    packets = [
        *c.handshake(),
        *c.data(True, _request("/admin")),
        *c.data(False, _response(b"ok")),
        *c.close(),
    ]
    records, _ = analyze(write_pcap(tmp_path / "p.pcap", timed(packets)))
    (http,) = of(records, "network.http")
    assert http["url"]["path"] == "/admin" and http["destination"]["port"] == 8181
    assert of(records, "network.flow")[0]["network"]["protocol"] == "http"


def _dns_tcp(message: Any) -> bytes:
    raw = bytes(message)
    return struct.pack("!H", len(raw)) + raw


def test_dns_over_udp_and_tcp_and_malformed_messages(tmp_path: Path) -> None:
    resolver = "10.0.0.53"
    query = DNS(id=0x1001, rd=1, qd=DNSQR(qname="cong.hochiminhcity.gov.vn", qtype="A"))
    answer = DNS(
        id=0x1001, qr=1, rd=1, ra=1, qd=DNSQR(qname="cong.hochiminhcity.gov.vn"),
        an=DNSRR(rrname="cong.hochiminhcity.gov.vn", type="A", ttl=120, rdata="203.113.131.40"),
    )  # fmt: skip
    udp = [
        eth() / IP(src=CLIENT, dst=resolver) / UDP(sport=40001, dport=53) / query,
        eth() / IP(src=resolver, dst=CLIENT) / UDP(sport=53, dport=40001) / answer,
        eth()
        / IP(src=CLIENT, dst=resolver)
        / UDP(sport=40002, dport=53)
        / b"\x12\x34\x01",  # truncated header
    ]
    big = DNS(id=0x2002, qd=DNSQR(qname="hochiminhcity.gov.vn", qtype="TXT"))
    big_answer = DNS(
        id=0x2002, qr=1, qd=DNSQR(qname="hochiminhcity.gov.vn", qtype="TXT"),
        an=[DNSRR(rrname="hochiminhcity.gov.vn", type="TXT", ttl=60, rdata=f"v=spf{i} " + "a" * 200) for i in range(8)],
    )  # fmt: skip
    c = Conversation(CLIENT, 40003, resolver, 53)
    tcp = [
        *c.handshake(),
        *c.data(True, _dns_tcp(big), cuts=[1]),
        *c.data(False, _dns_tcp(big_answer), cuts=[700]),
        *c.close(),
    ]
    records, analyzer = analyze(write_pcap(tmp_path / "dns.pcap", timed(udp + tcp)))
    dns = of(records, "network.dns")
    assert len(dns) == 2
    by_transport = {e["network"]["transport"]: e for e in dns}
    a = by_transport["udp"]
    assert (
        a["dns"]["question"]["name"] == "cong.hochiminhcity.gov.vn" and a["dns"]["response_code"] == "NOERROR"
    )
    assert a["dns"]["answers"] == [
        {
            "name": "cong.hochiminhcity.gov.vn",
            "type": "A",
            "class": "IN",
            "ttl": 120,
            "data": "203.113.131.40",
        }
    ]
    assert a["dns"]["resolved_ip"] == ["203.113.131.40"] and a["source"] == {"ip": CLIENT, "port": 40001}
    assert a["network"]["community_id"] == community_id(CLIENT, resolver, 17, 40001, 53)
    t = by_transport["tcp"]
    assert t["dns"]["question"]["type"] == "TXT" and len(t["dns"]["answers"]) == 8
    assert t["source"] == {"ip": CLIENT, "port": 40003} and t["network"]["iana_number"] == "6"
    assert analyzer.stats()["dns_malformed"] == 1
    flows = {f["source"]["port"]: f for f in of(records, "network.flow")}
    assert flows[40001]["network"]["protocol"] == "dns" and flows[40003]["network"]["protocol"] == "dns"
    assert flows[40002]["network"]["protocol"] == "dns"  # by its port, though it did not decode


def test_rereading_a_capture_gives_identical_records_and_ids(tmp_path: Path) -> None:
    c = Conversation(CLIENT, 50400, SERVER, 80)
    packets = [
        *c.handshake(),
        *c.data(True, _request("/") + _request("/")),
        *c.data(False, _response(b"a") * 2),
    ]
    path = write_pcap(tmp_path / "r.pcap", timed([*packets, *c.close()]))
    first, _ = analyze(path)
    second, _ = analyze(path)
    assert first == second
    keys = [k for _, _, k in first]
    assert all(keys) and len(set(keys)) == len(keys) == 3  # two identical pipelined requests stay two records


def test_counters(tmp_path: Path) -> None:
    c = Conversation(CLIENT, 50500, SERVER, 8081)
    packets = [*c.handshake(), *c.close(), eth() / IP(src=CLIENT, dst=SERVER) / UDP(sport=1, dport=2) / b"z"]
    records, analyzer = analyze(write_pcap(tmp_path / "c.pcap", timed(packets)))
    stats = analyzer.stats()
    assert stats["packets"] == 7 and stats["bytes"] == 6 * 40 + 29
    assert stats["flows_created"] == stats["flows_emitted"] == 2 and stats["flows_open"] == 0
    assert stats["decode_errors"] == 0 and stats["flows_evicted"] == 0
    assert len(records) == 2


def test_http_over_ipv6(tmp_path: Path) -> None:
    client, server = "2001:db8:10::5", "2402:800::80"
    c = Conversation(client, 50600, server, 80)
    packets = [*c.handshake(), *c.data(True, _request("/v6")), *c.data(False, _response(b"six")), *c.close()]
    records, _ = analyze(
        write_pcap(tmp_path / "v6.pcap", timed(packets)), internal_networks=["2001:db8::/32"]
    )
    (http,) = of(records, "network.http")
    (flow,) = of(records, "network.flow")
    assert http["source"] == {"ip": client, "port": 50600} and http["network"]["type"] == "ipv6"
    assert http["network"]["direction"] == "outbound" and flow["network"]["direction"] == "outbound"
    assert http["network"]["community_id"] == flow["network"]["community_id"]
    assert flow["zeek"]["connection"]["conn_state"] == "SF" and flow["network"]["type"] == "ipv6"
