"""Frame and file decoding: link types, IPv4/IPv6 (fragments, extension headers), L4 fields, damaged files."""

from __future__ import annotations

import random
import struct
from pathlib import Path

import pytest
from scapy.all import (
    ARP,
    DNS,
    DNSQR,
    ESP,
    GRE,
    ICMP,
    IP,
    TCP,
    UDP,
    CookedLinux,
    CookedLinuxV2,
    Dot1AD,
    Dot1Q,
    Ether,
    Loopback,
    Raw,
    fragment,
)
from scapy.layers.inet6 import (
    ICMPv6EchoRequest,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    fragment6,
)

from hcm_soc.collectors.network.packets import FrameDecoder, Packet, PcapError, decode_frame, iter_pcap
from hcm_soc.errors import HcmSocError
from tests.unit.network.builder import T0, eth, read, timed, write_pcap, write_pcapng


def _one(path: Path, decoder: FrameDecoder | None = None) -> Packet:
    packets = read(path, decoder)
    assert len(packets) == 1, packets
    return packets[0]


def test_ethernet_ipv4_tcp_every_field(tmp_path: Path) -> None:
    frame = (
        eth()
        / IP(src="10.20.0.7", dst="203.113.131.2", id=7)
        / TCP(sport=49152, dport=443, flags="PA", seq=123456789, ack=987654321)
        / b"hello"
    )
    p = _one(write_pcap(tmp_path / "a.pcap", timed([frame], start=T0 + 0.25)))
    assert (p.ts, p.ip_version, p.src_ip, p.dst_ip, p.proto) == (
        T0 + 0.25,
        4,
        "10.20.0.7",
        "203.113.131.2",
        6,
    )
    assert (p.src_port, p.dst_port, p.tcp_flags, p.seq, p.ack) == (49152, 443, 0x18, 123456789, 987654321)
    assert p.length == 20 + 20 + 5 and p.payload == b"hello"
    assert p.vlan is None and p.icmp_type is None and p.fragmented is False


def test_ethernet_padding_is_not_payload(tmp_path: Path) -> None:
    frame = eth() / IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=5000, dport=514) / b"x"
    raw = bytes(frame) + b"\x00" * (60 - len(bytes(frame)))  # what a NIC puts on the wire
    p = _one(write_pcap(tmp_path / "a.pcap", timed([Ether(raw)])))
    assert p.payload == b"x" and p.length == 29 and (p.src_port, p.dst_port) == (5000, 514)


def test_vlan_and_qinq_take_the_outer_id(tmp_path: Path) -> None:
    inner = IP(src="10.1.0.1", dst="10.1.0.2") / UDP(sport=1, dport=2) / b"v"
    frames = [eth() / Dot1Q(vlan=120) / inner, eth() / Dot1AD(vlan=300) / Dot1Q(vlan=20) / inner]
    a, b = read(write_pcap(tmp_path / "v.pcap", timed(frames)))
    assert (a.vlan, b.vlan) == (120, 300)
    assert a.payload == b.payload == b"v" and a.src_ip == b.src_ip == "10.1.0.1"


@pytest.mark.parametrize(
    ("layer", "linktype"),
    [(CookedLinux(proto=0x0800), 113), (CookedLinuxV2(proto=0x0800), 276)],
)
def test_linux_cooked_captures(tmp_path: Path, layer: object, linktype: int) -> None:
    frame = layer / IP(src="172.16.5.5", dst="172.16.5.6") / TCP(sport=1234, dport=22, flags="S")  # type: ignore[operator]
    path = write_pcap(tmp_path / "c.pcap", timed([frame]), linktype=linktype)
    assert struct.unpack_from("<I", path.read_bytes(), 20)[0] == linktype
    p = _one(path)
    assert (p.src_ip, p.dst_ip, p.src_port, p.dst_port, p.tcp_flags) == (
        "172.16.5.5",
        "172.16.5.6",
        1234,
        22,
        0x02,
    )


def test_raw_ip_and_null_loopback_link_types(tmp_path: Path) -> None:
    raw4 = IP(src="127.0.0.1", dst="127.0.0.1") / UDP(sport=9, dport=10) / b"r"
    raw6 = IPv6(src="::1", dst="::1") / UDP(sport=11, dport=12) / b"s"
    a, b = read(write_pcap(tmp_path / "raw.pcap", timed([raw4, raw6]), linktype=101))
    assert (a.ip_version, a.src_port, a.payload) == (4, 9, b"r")
    assert (b.ip_version, b.src_ip, b.dst_port, b.payload) == (6, "::1", 12, b"s")
    null = [Loopback(type=2) / raw4, Loopback(type=30) / raw6]  # AF_INET, AF_INET6 (macOS)
    c, d = read(write_pcap(tmp_path / "null.pcap", timed(null), linktype=0))
    assert (c.ip_version, c.payload, d.ip_version, d.payload) == (4, b"r", 6, b"s")


def test_pcapng_and_nanosecond_pcap_timestamps(tmp_path: Path) -> None:
    frames = timed(
        [eth() / IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=1, dport=2) / b"n" for _ in range(3)],
        step=0.5,
    )
    ng = read(write_pcapng(tmp_path / "a.pcapng", frames))
    assert [p.ts for p in ng] == [T0, T0 + 0.5, T0 + 1.0]
    assert all(p.payload == b"n" for p in ng)
    frames[0].time = T0 + 0.123456789
    nano = read(write_pcap(tmp_path / "n.pcap", frames, nano=True))
    assert nano[0].ts == pytest.approx(T0 + 0.123456789, abs=1e-6)


def test_ipv4_fragments_out_of_order_are_reassembled(tmp_path: Path) -> None:
    payload = bytes(range(256)) * 12  # 3072 bytes, four fragments of 1000
    datagram = IP(src="10.9.9.1", dst="10.9.9.2", id=4242) / UDP(sport=4000, dport=4001) / payload
    parts = [eth() / f for f in fragment(datagram, fragsize=1000)]
    assert len(parts) == 4
    random.Random(3).shuffle(parts)
    decoder = FrameDecoder()
    p = _one(write_pcap(tmp_path / "f.pcap", timed(parts)), decoder)
    assert p.fragmented and p.proto == 17 and (p.src_port, p.dst_port) == (4000, 4001)
    assert p.payload == payload and p.length == 20 + 8 + len(payload)
    assert decoder.stats()["fragments_reassembled"] == 1 and decoder.stats()["fragments_pending"] == 0


def test_ipv4_missing_fragment_yields_nothing_and_stays_bounded(tmp_path: Path) -> None:
    datagram = IP(src="10.9.9.1", dst="10.9.9.2", id=1) / UDP(sport=1, dport=2) / (b"z" * 3000)
    parts = [eth() / f for f in fragment(datagram, fragsize=1000)]
    decoder = FrameDecoder()
    assert read(write_pcap(tmp_path / "f.pcap", timed(parts[:1] + parts[2:])), decoder) == []
    assert decoder.stats()["fragments_pending"] == 1 and decoder.stats()["fragments_reassembled"] == 0


def test_ipv6_extension_headers_and_fragments(tmp_path: Path) -> None:
    ext = (
        eth()
        / IPv6(src="2001:db8::1", dst="2001:db8::2")
        / IPv6ExtHdrHopByHop()
        / IPv6ExtHdrDestOpt()
        / TCP(sport=40000, dport=80, flags="S")
    )
    big = IPv6(src="2001:db8::1", dst="2001:db8::3") / IPv6ExtHdrFragment(id=77) / UDP(sport=53, dport=5353)
    big = big / (b"q" * 2500)
    frags = [eth() / f for f in fragment6(big, 1280)]
    assert len(frags) >= 2
    decoder = FrameDecoder()
    a, b = read(write_pcap(tmp_path / "six.pcap", timed([ext, *reversed(frags)])), decoder)
    assert (a.ip_version, a.proto, a.src_port, a.dst_port, a.tcp_flags) == (6, 6, 40000, 80, 0x02)
    assert a.length == 40 + 8 + 8 + 20
    assert b.fragmented and (b.proto, b.src_port, b.dst_port) == (17, 53, 5353) and b.payload == b"q" * 2500
    assert b.length == 40 + 8 + 2500 and decoder.fragments_reassembled == 1


def test_icmp_icmpv6_gre_esp_and_non_ip(tmp_path: Path) -> None:
    frames = [
        eth() / IP(src="10.0.0.1", dst="10.0.0.2") / ICMP(type=3, code=13),
        eth() / IPv6(src="fe80::1", dst="fe80::2") / ICMPv6EchoRequest(id=5),
        eth() / IP(src="10.0.0.1", dst="10.0.0.9") / GRE() / IP(src="192.0.2.1", dst="192.0.2.2"),
        eth() / IP(src="10.0.0.1", dst="10.0.0.9") / ESP(spi=9, seq=1, data=b"\x00" * 16),
        eth() / ARP(psrc="10.0.0.1", pdst="10.0.0.2"),
    ]
    decoder = FrameDecoder()
    icmp, icmp6, gre, esp = read(write_pcap(tmp_path / "m.pcap", timed(frames)), decoder)
    assert (icmp.proto, icmp.icmp_type, icmp.icmp_code, icmp.src_port) == (1, 3, 13, 0)
    assert (icmp6.proto, icmp6.icmp_type, icmp6.icmp_code) == (58, 128, 0)
    assert (gre.proto, gre.src_port, gre.payload) == (47, 0, b"")
    assert (esp.proto, esp.length) == (50, 20 + 8 + 16)
    assert decoder.stats()["non_ip_frames"] == 1 and decoder.stats()["decode_errors"] == 0


def test_decode_errors_are_counted_by_reason() -> None:
    decoder = FrameDecoder()
    good = bytes(eth() / IP(src="10.0.0.1", dst="10.0.0.2") / TCP(sport=1, dport=2))
    assert decoder.decode(1, T0, good[: 14 + 20 + 10]) is None  # TCP header cut short
    assert decoder.decode(1, T0, good[:20]) is None  # IP header cut short
    assert decoder.decode(1, T0, good[:10]) is None
    bad_version = bytearray(good)
    bad_version[14] = 0x75
    assert decoder.decode(1, T0, bytes(bad_version)) is None
    assert decoder.decode(147, T0, good) is None  # a user DLT we do not know
    stats = decoder.stats()
    assert stats["decode_error.truncated_tcp_header"] == 1
    assert stats["decode_error.truncated_ip_header"] == 1
    assert stats["decode_error.truncated_link_header"] == 1
    assert stats["decode_error.bad_ip_header"] == 1
    assert stats["decode_error.unsupported_linktype_147"] == 1
    assert stats["decode_errors"] == 5


def test_decode_frame_for_live_capture_accepts_memoryview() -> None:
    frame = bytes(
        eth() / IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=7, dport=53) / DNS(qd=DNSQR(qname="a.vn"))
    )
    decoder = FrameDecoder()
    p = decode_frame(1, T0, memoryview(frame), decoder)
    assert p is not None and type(p.payload) is bytes and p.dst_port == 53
    q = decode_frame(1, T0, frame)  # the process-wide decoder
    assert q is not None and q.payload == p.payload


# ------------------------------------------------------------------ damaged files


def _three(tmp_path: Path) -> Path:
    frames = [
        eth() / IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=i, dport=9) / (b"d" * 50) for i in (1, 2, 3)
    ]
    return write_pcap(tmp_path / "ok.pcap", timed(frames))


def test_truncated_pcap_yields_what_was_read_then_raises(tmp_path: Path) -> None:
    data = _three(tmp_path).read_bytes()
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(data[:-20])  # the third packet ends early
    got: list[Packet] = []
    with pytest.raises(PcapError) as info:
        for p in iter_pcap(cut):
            got.append(p)
    assert [p.src_port for p in got] == [1, 2]
    err = info.value
    assert isinstance(err, HcmSocError)
    third_offset = 24 + 2 * (16 + 14 + 20 + 8 + 50)
    assert (err.packet, err.offset) == (3, third_offset)
    assert (
        str(cut) in str(err)
        and "truncated packet data" in str(err)
        and "2 packet(s) before it were read" in str(err)
    )

    cut.write_bytes(data[: third_offset + 7])  # inside the third record header
    with pytest.raises(PcapError, match=r"packet 3 at byte offset \d+: truncated record header"):
        assert len(list(iter_pcap(cut))) == 2


def test_corrupt_record_length_and_bad_magic(tmp_path: Path) -> None:
    data = bytearray(_three(tmp_path).read_bytes())
    second = 24 + 16 + 14 + 20 + 8 + 50
    struct.pack_into("<I", data, second + 8, 0x7FFFFFFF)  # captured length of packet 2
    bad = tmp_path / "bad.pcap"
    bad.write_bytes(bytes(data))
    got: list[Packet] = []
    with pytest.raises(PcapError, match="corrupt record header") as info:
        got.extend(iter_pcap(bad))
    assert len(got) == 1 and info.value.packet == 2 and info.value.offset == second
    junk = tmp_path / "junk.pcap"
    junk.write_bytes(b"GIF89a" + b"\x00" * 40)
    with pytest.raises(PcapError, match="not a pcap or pcapng file"):
        list(iter_pcap(junk))
    empty = tmp_path / "empty.pcap"
    empty.write_bytes(b"")
    with pytest.raises(PcapError, match="too short"):
        list(iter_pcap(empty))
    with pytest.raises(PcapError, match="cannot open"):
        list(iter_pcap(tmp_path / "missing.pcap"))


def test_truncated_pcapng_block(tmp_path: Path) -> None:
    frames = [
        eth() / IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=i, dport=9) / Raw(b"e" * 40) for i in (1, 2)
    ]
    data = write_pcapng(tmp_path / "a.pcapng", timed(frames)).read_bytes()
    cut = tmp_path / "cut.pcapng"
    cut.write_bytes(data[:-10])
    got: list[Packet] = []
    with pytest.raises(PcapError, match="truncated pcapng block") as info:
        got.extend(iter_pcap(cut))
    assert [p.src_port for p in got] == [1] and info.value.packet == 2


def test_progress_reports_bytes_read(tmp_path: Path) -> None:
    path = _three(tmp_path)
    seen: list[tuple[int, int]] = []
    assert len(list(iter_pcap(path, on_progress=lambda done, total: seen.append((done, total))))) == 3
    size = path.stat().st_size
    assert seen[-1] == (size, size) and all(total == size and done <= size for done, total in seen)


def test_stale_fragments_time_out(tmp_path: Path) -> None:
    lost = IP(src="10.9.9.1", dst="10.9.9.2", id=5) / UDP(sport=1, dport=2) / (b"z" * 3000)
    late = IP(src="10.9.9.1", dst="10.9.9.2", id=6) / UDP(sport=1, dport=2) / (b"y" * 3000)
    frames = timed([eth() / fragment(lost, fragsize=1000)[0]], start=T0)
    frames += timed([eth() / f for f in fragment(late, fragsize=1000)], start=T0 + 31)
    decoder = FrameDecoder()
    (p,) = read(write_pcap(tmp_path / "f.pcap", frames), decoder)
    assert p.payload == b"y" * 3000
    assert decoder.stats()["fragments_dropped"] == 1 and decoder.stats()["fragments_pending"] == 0


def test_mangled_frames_never_raise() -> None:
    """Every frame, however damaged, is a Packet, None or a counted error: never an exception."""
    seeds = [
        eth()
        / IP(src="10.0.0.1", dst="10.0.0.2", options=b"\x01\x01\x01\x00")
        / TCP(sport=1, dport=80)
        / b"GET /",
        eth() / Dot1Q(vlan=5) / IPv6(src="::1", dst="::2") / IPv6ExtHdrHopByHop() / UDP() / (b"x" * 20),
        eth() / IPv6(src="::1", dst="::2") / IPv6ExtHdrFragment(offset=0, m=1, id=9) / UDP() / (b"y" * 16),
        eth() / IP(src="10.0.0.1", dst="10.0.0.2", flags="MF", id=3) / UDP() / (b"z" * 16),
        eth() / IP(src="10.0.0.1", dst="10.0.0.2") / ICMP() / b"p",
    ]
    rng = random.Random(99)
    decoder = FrameDecoder()
    decoded = 0
    for _ in range(3000):
        frame = bytearray(bytes(rng.choice(seeds)))
        for _ in range(rng.randrange(1, 4)):
            frame[rng.randrange(len(frame))] = rng.randrange(256)
        if rng.random() < 0.3:
            del frame[rng.randrange(len(frame)) :]
        for linktype in (1, 0, 101, 113, 276):
            decoded += decoder.decode(linktype, T0, bytes(frame)) is not None
    assert decoded > 0 and decoder.stats()["decode_errors"] > 0


def test_corrupted_files_end_with_packets_or_a_pcap_error(tmp_path: Path) -> None:
    frames = timed(
        [eth() / IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=i, dport=9) / (b"c" * 30) for i in range(20)]
    )
    originals = [
        write_pcap(tmp_path / "a.pcap", frames).read_bytes(),
        write_pcapng(tmp_path / "a.pcapng", frames).read_bytes(),
    ]
    rng = random.Random(7)
    broken = tmp_path / "broken"
    outcomes = {"read": 0, "error": 0}
    for _ in range(300):
        data = bytearray(rng.choice(originals))
        for _ in range(rng.randrange(1, 6)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        broken.write_bytes(bytes(data[: rng.randrange(len(data) // 2, len(data) + 1)]))
        try:
            for p in iter_pcap(broken):
                assert isinstance(p, Packet)
            outcomes["read"] += 1
        except PcapError as exc:
            assert str(broken) in str(exc)
            outcomes["error"] += 1
    assert outcomes["read"] > 0 and outcomes["error"] > 0
