"""The shortcuts of the hot path give the same answers as the general code they bypass.

Each test pins one shortcut taken for speed: the pcap reader's inline Ethernet/IPv4
decoding, the per-second timestamp cache, the direction cache, the DNS name decoder,
HTTP bodies counted without buffering, and TLS connections no longer reassembled once
their handshake can no longer change the record.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from scapy.all import ICMP, IP, TCP, UDP, Dot1Q, Raw
from scapy.layers.inet6 import IPv6

from hcm_soc.collectors.network import packets, pcapfile
from hcm_soc.collectors.network.dns import _read_name, parse_dns
from hcm_soc.collectors.network.ecs import _micros, iso, iso_us
from hcm_soc.collectors.network.flowrecord import InternalRanges
from hcm_soc.collectors.network.http import HttpTracker
from hcm_soc.collectors.network.packets import FrameDecoder
from hcm_soc.collectors.network.tls import TlsTracker
from tests.unit.network.builder import T0, Conversation, analyze, eth, of, timed, write_pcap
from tests.unit.network_proto.test_tls import _client_hello, _record, _server_hello

CLIENT, SERVER = "10.20.1.15", "203.113.131.40"
_FIELDS = packets.Packet.__slots__


def test_pcap_reader_inline_decoding_equals_the_frame_decoder(tmp_path: Path) -> None:
    frames = [
        eth()
        / IP(src=CLIENT, dst=SERVER)
        / TCP(sport=50000, dport=80, flags="PA", seq=7, ack=9)
        / Raw(b"GET /"),
        eth() / IP(src=CLIENT, dst=SERVER) / UDP(sport=5353, dport=53) / Raw(b"\x00" * 12),
        eth() / IP(src=CLIENT, dst=SERVER, options=b"\x01\x01\x01\x00") / TCP(sport=1, dport=2, flags="S"),
        eth() / IP(src=CLIENT, dst=SERVER) / ICMP(type=8) / Raw(b"ping"),
        eth() / Dot1Q(vlan=42) / IP(src=CLIENT, dst=SERVER) / UDP(sport=1, dport=123) / Raw(b"x"),
        eth() / IPv6(src="fd00::1", dst="2001:db8::2") / TCP(sport=3, dport=443, flags="A"),
        eth() / IP(src=CLIENT, dst=SERVER) / TCP(sport=4, dport=80, dataofs=4),  # bad header: an error
        eth() / IP(src=CLIENT, dst=SERVER) / UDP(sport=9, dport=10) / Raw(b"padded"),
    ]
    path = write_pcap(tmp_path / "mix.pcap", timed(frames))
    inline_decoder = FrameDecoder()
    read = list(pcapfile.iter_pcap(path, decoder=inline_decoder))
    reference_decoder = FrameDecoder()
    expected = [
        reference_decoder.decode(1, float(f.time), bytes(f)) for f in timed(frames)
    ]  # the same timestamps
    expected_packets = [p for p in expected if p is not None]
    assert len(read) == len(expected_packets) == 7
    for got, want in zip(read, expected_packets, strict=True):
        assert {k: getattr(got, k) for k in _FIELDS if k != "ts"} == {
            k: getattr(want, k) for k in _FIELDS if k != "ts"
        }
        assert abs(got.ts - want.ts) < 1e-6
    assert inline_decoder.stats() == reference_decoder.stats()
    assert inline_decoder.stats()["decode_error.bad_tcp_header"] == 1
    assert packets.iter_pcap is pcapfile.iter_pcap and packets.PcapError is pcapfile.PcapError


def test_cached_timestamps_equal_datetime_formatting() -> None:
    rng = random.Random(7)
    values = [T0, T0 + 0.5, 1_764_000_000.9999996, 1.0000005, 1.0000015, 0.0, 951_782_400.25]  # 2000-02-29
    values += [rng.randint(0, 2**32) + rng.random() for _ in range(20_000)]
    values += [T0 + i * 0.00003 for i in range(2_000)]
    for ts in values:
        stamp = datetime.fromtimestamp(ts, tz=UTC)
        assert iso(ts) == stamp.isoformat().replace("+00:00", "Z"), ts
        assert iso_us(ts) == stamp.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), ts
    assert iso(T0) == "2025-11-13T02:13:20Z" and iso_us(T0) == "2025-11-13T02:13:20.000000Z"
    assert iso(-1.5) == "1969-12-31T23:59:58.500000Z"


def test_microsecond_rounding_is_round_half_even() -> None:
    # _micros replaces round(fraction * 1e6) with C arithmetic when compiled: the same result,
    # ties (x.5 exactly) to even included
    ties = [(n + 0.5) / 1e6 for n in range(0, 1_000_000, 331)] + [n / 2**21 for n in range(1, 2**21, 4099)]
    exact = [0.5e-6, 1.5e-6, 2.5e-6, 0.0000035, 0.9999995, 0.9999996, 0.0, 0.5, 0.25, 0.125]
    rng = random.Random(4)
    for fraction in ties + exact + [rng.random() for _ in range(20_000)]:
        assert _micros(fraction) == round(fraction * 1e6), fraction
    assert _micros(2**-1 / 1e6 * 5) == round(2.5) == 2 and _micros(3.5e-6) == round(3.5e-6 * 1e6)


def test_direction_cache_and_address_forms() -> None:
    ranges = InternalRanges(["10.0.0.0/8", "172.16.0.0/12", "fc00::/7"])
    assert ranges.direction("10.1.2.3", "8.8.8.8") == "outbound"
    assert ranges.direction("8.8.8.8", "172.31.255.255") == "inbound"
    assert ranges.direction("10.0.0.1", "fd00::1") == "internal"
    assert ranges.direction("172.32.0.0", "2001:db8::1") == "external"
    # inet_aton reads "10.1" and "010.0.0.1" too; as before, only canonical addresses are inside
    assert not ranges("10.1") and not ranges("010.0.0.1") and not ranges("not an address")
    assert ranges("10.255.255.255") and ranges("10.255.255.255")  # the second answer from the cache


def test_dns_names_decode_bad_utf8_label_by_label() -> None:
    # a name whose first label ends inside a UTF-8 sequence and whose second starts with a continuation byte
    name = b"\x03ab\xe2\x02\x82x\x03vn\xc3\x00"
    decoded, end = _read_name(name, 0)
    labels = [b"ab\xe2", b"\x82x", b"vn\xc3"]
    assert decoded == ".".join(label.decode("utf-8", "backslashreplace") for label in labels)
    assert decoded == "ab\\xe2.\\x82x.vn\\xc3" and end == len(name)
    # a compressed answer name (pointer to the question) decodes to the question's name
    header = b"\x12\x34\x81\x80\x00\x01\x00\x01\x00\x00\x00\x00"
    question = b"\x04cong\x03hcm\x03gov\x02vn\x00\x00\x01\x00\x01"
    answer = b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x01\x2c\x00\x04\x0a\x00\x00\x01"
    message = parse_dns(header + question + answer)
    assert message is not None and message.answers[0].name == "cong.hcm.gov.vn"
    assert message.answers[0].data == "10.0.0.1" and message.flags == ("RD", "RA")


def test_http_body_counted_without_buffering_then_next_message() -> None:
    events: list[dict[str, Any]] = []
    tracker = HttpTracker(events.append)
    key = (CLIENT, 50000, SERVER, 80)
    body = 1400 * 50
    assert tracker.add_segment(1.0, key, True, b"GET /tai-lieu.pdf HTTP/1.1\r\nHost: a.vn\r\n\r\n", key)
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/pdf\r\nContent-Length: %d\r\n\r\n" % body
    assert tracker.add_segment(1.1, key, False, head, key)
    side = tracker._conns[key].resp
    for _ in range(49):
        assert tracker.add_segment(1.2, key, False, b"\x00" * 1400, key)
        assert not side.buf  # counted, never copied into the buffer
    # the last body segment arrives with the next response's head
    assert tracker.add_segment(1.3, key, True, b"GET /2 HTTP/1.1\r\nHost: a.vn\r\n\r\n", key)
    assert tracker.add_segment(1.4, key, False, b"\x00" * 1400 + b"HTTP/1.1 204 No Content\r\n\r\n", key)
    assert [e["http"]["response"]["body"]["bytes"] for e in events] == [body, 0]
    assert [e["http"]["response"]["status_code"] for e in events] == [200, 204]
    assert not tracker.add_segment(1.5, key, True, b"\x16\x03\x01 not http", key)  # this side is done


def test_tls_tracker_says_when_a_side_is_done() -> None:
    key = (CLIENT, 50200, SERVER, 443)
    tracker = TlsTracker(lambda event: None)
    # TLS 1.2: the server is done after its ChangeCipherSpec, the client after its CCS and data
    assert tracker.add_segment(1.0, key, True, _client_hello(tls13=False), key)
    assert tracker.add_segment(1.1, key, False, _server_hello(tls13=False, cipher=0xC02F), key)
    assert not tracker.add_segment(1.2, key, False, _record(20, b"\x01") + _record(22, bytes(40)), key)
    assert tracker.add_segment(1.3, key, True, _record(20, b"\x01"), key)
    assert not tracker.add_segment(1.4, key, True, _record(23, bytes(40)), key)
    # TLS 1.3 without compatibility CCS: encrypted records end both sides once the version is known
    other = (CLIENT, 50201, SERVER, 443)
    assert tracker.add_segment(2.0, other, True, _client_hello(), other)
    assert not tracker.add_segment(2.1, other, False, _server_hello() + _record(23, bytes(60)), other)
    assert not tracker.add_segment(2.2, other, True, _record(23, bytes(40)), other)
    assert not tracker.add_segment(2.3, other, True, b"garbage", other) and tracker.malformed == 1


def test_tls_bytes_after_the_handshake_skip_reassembly(tmp_path: Path) -> None:
    def capture(name: str, after: list[tuple[bool, bytes]]) -> tuple[list[Any], Any]:
        c = Conversation(CLIENT, 50300, SERVER, 443)
        pkts = [
            *c.handshake(),
            *c.data(True, _client_hello(tls13=False)),
            *c.data(False, _server_hello(tls13=False, cipher=0xC02F) + _record(20, b"\x01")),
            *c.data(True, _record(20, b"\x01") + _record(23, bytes(32))),
        ]
        for from_client, data in after:
            segments = c.data(from_client, data, cuts=[700])
            pkts += segments[::-1]  # out of order: would be held for reassembly if it were still done
        pkts += c.close()
        return analyze(write_pcap(tmp_path / name, timed(pkts)))

    plain, plain_analyzer = capture("plain.pcap", [])
    download = [(False, _record(23, bytes(1395))), (True, b"not TLS at all" * 10), (False, bytes(2000))]
    busy, busy_analyzer = capture("busy.pcap", download)
    (tls,) = of(busy, "network.tls")
    (reference,) = of(plain, "network.tls")
    assert tls == reference and tls["tls"]["established"] is True
    stats = busy_analyzer.stats()
    assert stats["tls_malformed"] == 0 and stats["tcp_out_of_order"] == 0  # never looked at
    flow = of(busy, "network.flow")[0]
    assert flow["destination"]["packets"] == of(plain, "network.flow")[0]["destination"]["packets"] + 4
    assert plain_analyzer.stats()["packets"] + 6 == stats["packets"]
