"""DNS decoding and query/response pairing on payloads built by scapy."""

from __future__ import annotations

import struct
from typing import Any

from scapy.layers.dns import DNS, DNSQR, DNSRR, DNSRRMX, DNSRRSOA, DNSRRSRV

from hcm_soc.collectors.network.dns import DnsPairing, parse_dns, parse_dns_tcp, split_domain


def _query(name: str, qtype: str = "A", ident: int = 0x1234) -> bytes:
    return bytes(DNS(id=ident, rd=1, qd=DNSQR(qname=name, qtype=qtype)))


def _response(name: str, answers: list[Any], ident: int = 0x1234, rcode: int = 0, qtype: str = "A") -> bytes:
    return bytes(
        DNS(id=ident, qr=1, rd=1, ra=1, aa=1, rcode=rcode, qd=DNSQR(qname=name, qtype=qtype), an=answers)
    )


def test_query_header_and_question() -> None:
    msg = parse_dns(_query("www.hochiminhcity.gov.vn", "AAAA", ident=77))
    assert msg is not None
    assert (msg.id, msg.is_response, msg.opcode, msg.rcode) == (77, False, 0, 0)
    assert msg.flags == ("RD",)
    assert msg.questions[0].name == "www.hochiminhcity.gov.vn"
    assert msg.questions[0].qtype == 28


def test_answers_of_many_types_with_compression() -> None:
    answers = [
        DNSRR(rrname="example.com", type="CNAME", rdata="web.example.com", ttl=60),
        DNSRR(rrname="web.example.com", type="A", rdata="93.184.216.34", ttl=120),
        DNSRR(rrname="web.example.com", type="AAAA", rdata="2606:2800:220:1::1"),
        DNSRR(rrname="example.com", type="TXT", rdata=[b"v=spf1 -all", "xin chào".encode()]),
        DNSRR(rrname="example.com", type="NS", rdata="ns1.example.com"),
        DNSRR(rrname="34.216.184.93.in-addr.arpa", type="PTR", rdata="web.example.com"),
        DNSRRMX(rrname="example.com", preference=10, exchange="mail.example.com"),
        DNSRRSOA(rrname="example.com", mname="ns1.example.com", rname="admin.example.com", serial=2024),
        DNSRRSRV(rrname="_sip._tcp.example.com", priority=1, weight=5, port=5060, target="sip.example.com"),
        DNSRR(rrname="example.com", type="HINFO", rdata=b"\x03abc\x03def"),
    ]
    raw = bytes(DNS(id=9, qr=1, qd=[DNSQR(qname="example.com")], an=answers).compress())
    # scapy compresses repeated names: the decoder must follow pointers.
    assert b"\xc0" in raw
    msg = parse_dns(raw)
    assert msg is not None
    data = {(a.name, a.rtype): a.data for a in msg.answers}
    assert data[("example.com", 5)] == "web.example.com"
    assert data[("web.example.com", 1)] == "93.184.216.34"
    assert data[("web.example.com", 28)] == "2606:2800:220:1::1"
    assert data[("example.com", 16)] == "v=spf1 -all xin chào"
    assert data[("example.com", 2)] == "ns1.example.com"
    assert data[("34.216.184.93.in-addr.arpa", 12)] == "web.example.com"
    assert data[("example.com", 15)] == "10 mail.example.com"
    assert data[("example.com", 6)].startswith("ns1.example.com admin.example.com 2024 ")
    assert data[("_sip._tcp.example.com", 33)] == "1 5 5060 sip.example.com"
    hinfo = next(a for a in msg.answers if a.rtype == 13)
    assert hinfo.data is None and hinfo.raw_length == 8


def test_compression_loop_and_truncation_return_none() -> None:
    header = struct.pack("!HHHHHH", 1, 0x0100, 1, 0, 0, 0)
    assert parse_dns(header + b"\xc0\x0c" + b"\x00\x01\x00\x01") is None  # pointer to itself
    two_cycle = header + b"\xc0\x0e\xc0\x0c\x00\x01\x00\x01"
    assert parse_dns(two_cycle) is None
    full = _response("example.com", [DNSRR(rrname="example.com", type="A", rdata="1.2.3.4")])
    for cut in range(len(full)):
        assert parse_dns(full[:cut]) is None, cut
    assert parse_dns(b"") is None
    assert parse_dns(b"\xff" * 40) is None


def test_tcp_stream_with_length_prefix() -> None:
    first, second = _query("a.example.com", ident=1), _query("b.example.com", ident=2)
    stream = struct.pack("!H", len(first)) + first + struct.pack("!H", len(second)) + second
    msgs = parse_dns_tcp(stream + b"\x00\x40partial")
    assert [m.questions[0].name for m in msgs] == ["a.example.com", "b.example.com"]


def test_split_domain_heuristic() -> None:
    assert split_domain("mail.sotttt.hochiminhcity.gov.vn") == {
        "registered_domain": "hochiminhcity.gov.vn",
        "top_level_domain": "gov.vn",
        "subdomain": "mail.sotttt",
    }
    assert split_domain("www.example.com") == {
        "registered_domain": "example.com",
        "top_level_domain": "com",
        "subdomain": "www",
    }
    assert split_domain("shop.com.vn") == {"registered_domain": "shop.com.vn", "top_level_domain": "com.vn"}
    assert split_domain("localhost") == {}


def test_pairing_emits_one_answer_event() -> None:
    events: list[dict[str, Any]] = []
    pairing = DnsPairing(events.append)
    pairing.add(
        1_700_000_000.0, "10.0.0.5", 53000, "8.8.8.8", 53, "udp", parse_dns(_query("www.example.com"))
    )
    assert events == []
    resp = _response("www.example.com", [DNSRR(rrname="www.example.com", type="A", rdata="1.2.3.4", ttl=30)])
    pairing.add(1_700_000_000.2, "8.8.8.8", 53, "10.0.0.5", 53000, "udp", parse_dns(resp))
    assert len(events) == 1
    ev = events[0]
    assert ev["@timestamp"] == "2023-11-14T22:13:20Z"
    assert ev["event"]["dataset"] == "network.dns"
    assert ev["source"] == {"ip": "10.0.0.5", "port": 53000}
    assert ev["destination"] == {"ip": "8.8.8.8", "port": 53}
    assert ev["network"] == {"protocol": "dns", "transport": "udp"}
    dns = ev["dns"]
    assert dns["type"] == "answer" and dns["id"] == 0x1234 and dns["op_code"] == "QUERY"
    assert dns["response_code"] == "NOERROR"
    assert set(dns["header_flags"]) == {"AA", "RD", "RA"}
    assert dns["question"]["name"] == "www.example.com" and dns["question"]["type"] == "A"
    assert dns["question"]["registered_domain"] == "example.com"
    assert dns["answers"] == [
        {"name": "www.example.com", "type": "A", "class": "IN", "ttl": 30, "data": "1.2.3.4"}
    ]
    assert dns["resolved_ip"] == ["1.2.3.4"]


def test_nxdomain_aaaa_and_unanswered_timeout() -> None:
    events: list[dict[str, Any]] = []
    pairing = DnsPairing(events.append, timeout=5)
    pairing.add(100.0, "10.0.0.5", 1000, "10.0.0.1", 53, "udp", parse_dns(_query("nope.example", "AAAA", 7)))
    pairing.add(
        100.1, "10.0.0.1", 53, "10.0.0.5", 1000, "udp", parse_dns(_response("nope.example", [], 7, 3, "AAAA"))
    )
    pairing.add(101.0, "10.0.0.5", 1001, "10.0.0.1", 53, "udp", parse_dns(_query("lost.example", ident=8)))
    pairing.add(101.0, "10.0.0.5", 1002, "10.0.0.1", 53, "tcp", parse_dns(_query("late.example", ident=9)))
    pairing.expire(102.0)
    assert len(events) == 1
    assert events[0]["dns"]["response_code"] == "NXDOMAIN"
    assert events[0]["dns"]["question"]["type"] == "AAAA"
    pairing.expire(106.0)
    assert [e["dns"]["question"]["name"] for e in events[1:]] == ["lost.example", "late.example"]
    assert all(e["dns"]["type"] == "query" and "answers" not in e["dns"] for e in events[1:])
    pairing.add(107.0, "10.0.0.5", 1003, "10.0.0.1", 53, "udp", parse_dns(_query("flush.example", ident=10)))
    pairing.flush()
    assert events[-1]["dns"]["question"]["name"] == "flush.example"


def test_malformed_counted_not_raised() -> None:
    events: list[dict[str, Any]] = []
    pairing = DnsPairing(events.append)
    pairing.add(1.0, "10.0.0.5", 1000, "10.0.0.1", 53, "udp", parse_dns(b"\x00\x01garbage"))
    assert pairing.malformed == 1 and events == []
