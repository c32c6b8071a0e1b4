"""Flow records from scapy-built captures: Zeek conn states and history, originator, ICMP, timeouts, the cap."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from scapy.all import DNS, DNSQR, ESP, GRE, ICMP, IP, TCP, UDP, Dot1Q, fragment
from scapy.layers.inet6 import IPv6

from hcm_soc.collectors.network.community_id import community_id
from hcm_soc.collectors.network.flows import FlowTable
from hcm_soc.collectors.network.packets import iter_pcap
from tests.unit.network.builder import T0, Conversation, analyze, eth, of, timed, write_pcap

CLIENT, SERVER = "10.20.1.15", "203.113.131.40"


def _flows(tmp_path: Path, packets: list[Any], step: float = 0.001, **kwargs: Any) -> list[dict[str, Any]]:
    path = write_pcap(tmp_path / "t.pcap", timed(packets, step=step))
    records, _ = analyze(path, **kwargs)
    return of(records, "network.flow")


def _one(tmp_path: Path, packets: list[Any], **kwargs: Any) -> dict[str, Any]:
    flows = _flows(tmp_path, packets, **kwargs)
    assert len(flows) == 1, flows
    return flows[0]


def test_complete_connection_every_field(tmp_path: Path) -> None:
    c = Conversation(CLIENT, 51515, SERVER, 22)
    packets = [
        *c.handshake(),
        *c.data(True, b"SSH-2.0-client\r\n"),
        c.send(False, "A"),
        *c.data(False, b"SSH-2.0-srv\r\n"),
        *c.close(),
    ]
    flow = _one(tmp_path, packets)
    cid = community_id(CLIENT, SERVER, 6, 51515, 22)
    # sizes: 9 packets of 40 bytes IP+TCP headers, plus 16 and 13 payload bytes
    assert flow == {
        "@timestamp": "2025-11-13T02:13:20.000000Z",
        "event": {
            "dataset": "network.flow",
            "kind": "event",
            "category": ["network"],
            "type": ["connection", "end"],
            "start": "2025-11-13T02:13:20.000000Z",
            "end": "2025-11-13T02:13:20.008000Z",
            "duration": 8_000_000,
        },
        "source": {"ip": CLIENT, "port": 51515, "packets": 5, "bytes": 5 * 40 + 16},
        "destination": {"ip": SERVER, "port": 22, "packets": 4, "bytes": 4 * 40 + 13},
        "network": {
            "transport": "tcp",
            "iana_number": "6",
            "type": "ipv4",
            "community_id": cid,
            "direction": "outbound",
            "bytes": 9 * 40 + 29,
            "packets": 9,
            "protocol": "ssh",
        },
        "related": {"ip": [CLIENT, SERVER]},
        "zeek": {"connection": {"conn_state": "SF", "state": "SF", "history": "ShADadFf"}},
        "hcm": {
            "flow": {
                "id_key": f"{cid}|{T0:.6f}|0",
                "state_description": "normal establishment and termination",
                "segment": 0,
                "end_reason": "end_of_capture",
                "source_payload_bytes": 16,
                "destination_payload_bytes": 13,
            }
        },
    }


def _states() -> list[tuple[str, list[Any], str, str]]:
    def conv() -> Conversation:
        return Conversation(CLIENT, 40000, SERVER, 8081)

    c = conv()
    s0 = [c.pkt(True, "S"), c.pkt(True, "S")]  # a retried SYN repeats no letter
    c = conv()
    rej = [c.send(True, "S"), c.send(False, "RA")]
    c = conv()
    s1 = c.handshake()
    c = conv()
    sh = [c.send(True, "S"), c.send(True, "F")]
    c = conv()
    rsto = [*c.handshake(), c.send(True, "RA")]
    c = conv()
    rstr = [*c.handshake(), c.send(False, "R")]
    c = conv()
    rstos0 = [c.send(True, "S"), c.send(True, "R")]
    c = conv()
    shr = [c.send(False, "SA"), c.send(False, "FA")]  # we never saw the SYN
    c = conv()
    s2 = [*c.handshake(), c.send(True, "FA")]
    c = conv()
    s3 = [*c.handshake(), c.send(False, "FA")]
    c = conv()
    retrans = [*c.handshake(), c.pkt(True, "PA", b"abc"), c.send(True, "PA", b"abc"), *c.close()]
    c = Conversation(CLIENT, 40000, SERVER, 22)
    oth = [c.send(False, "PA", b"mid-stream"), c.send(True, "A")]  # capture started mid-connection
    return [
        ("S0", s0, "S", "connection attempt seen, no reply"),
        ("REJ", rej, "Sr", "connection attempt rejected"),
        ("S1", s1, "ShA", "connection established, not terminated"),
        (
            "SH",
            sh,
            "SF",
            "originator sent a SYN followed by a FIN, no SYN-ACK from the responder (half open)",
        ),
        ("RSTO", rsto, "ShAR", "established, originator aborted (sent a reset)"),
        ("RSTR", rstr, "ShAr", "responder sent a reset"),
        ("RSTOS0", rstos0, "SR", "originator sent a SYN followed by a reset, no SYN-ACK from the responder"),
        ("SHR", shr, "^hf", "responder sent a SYN-ACK followed by a FIN, no SYN from the originator"),
        ("S2", s2, "ShAF", "established, originator sent FIN but no reply from the responder"),
        ("S3", s3, "ShAf", "established, responder sent FIN but no reply from the originator"),
        ("SF", retrans, "ShADTFf", "normal establishment and termination"),
        ("OTH", oth, "^dA", "no SYN seen, just midstream traffic"),
    ]


@pytest.mark.parametrize(
    ("state", "packets", "history", "description"), _states(), ids=[s[0] for s in _states()]
)
def test_zeek_connection_states(
    tmp_path: Path, state: str, packets: list[Any], history: str, description: str
) -> None:
    flow = _one(tmp_path, packets)
    assert flow["zeek"]["connection"] == {"conn_state": state, "state": state, "history": history}
    assert flow["hcm"]["flow"]["state_description"] == description
    # Whoever sent first, the client is the originator.
    assert (flow["source"]["ip"], flow["source"]["port"]) == (CLIENT, 40000)
    assert flow["destination"]["ip"] == SERVER


def test_udp_originator_states_and_port_heuristic(tmp_path: Path) -> None:
    q = (
        eth()
        / IP(src=CLIENT, dst="10.0.0.53")
        / UDP(sport=33333, dport=53)
        / DNS(id=1, qd=DNSQR(qname="a.gov.vn"))
    )
    r = (
        eth()
        / IP(src="10.0.0.53", dst=CLIENT)
        / UDP(sport=53, dport=33333)
        / DNS(id=1, qr=1, qd=DNSQR(qname="a.gov.vn"))
    )
    lone = (
        eth()
        / IP(src=CLIENT, dst="10.0.0.53")
        / UDP(sport=33334, dport=53)
        / DNS(id=2, qd=DNSQR(qname="b.vn"))
    )
    late = (
        eth()
        / IP(src="10.0.0.53", dst=CLIENT)
        / UDP(sport=53, dport=33335)
        / DNS(id=3, qr=1, qd=DNSQR(qname="c.vn"))
    )
    flows = {f["source"]["port"]: f for f in _flows(tmp_path, [q, r, lone, late])}
    assert flows[33333]["zeek"]["connection"]["conn_state"] == "SF"
    assert (flows[33333]["source"]["packets"], flows[33333]["destination"]["packets"]) == (1, 1)
    assert flows[33333]["network"]["protocol"] == "dns" and flows[33333]["network"]["direction"] == "internal"
    assert flows[33334]["zeek"]["connection"]["conn_state"] == "S0"
    # A response seen without its query: the client is still the originator, and only the responder spoke.
    assert flows[33335]["destination"] == {
        "ip": "10.0.0.53",
        "port": 53,
        "packets": 1,
        "bytes": len(bytes(late[IP])),
    }
    assert flows[33335]["zeek"]["connection"] == {"conn_state": "SHR", "state": "SHR"}
    assert flows[33335]["hcm"]["flow"]["state_description"] == "only the responder sent packets"


def test_icmp_echo_is_one_flow_and_other_protocols_are_flows(tmp_path: Path) -> None:
    packets = [
        eth() / IP(src=CLIENT, dst=SERVER) / ICMP(type=8, id=7, seq=1),
        eth() / IP(src=SERVER, dst=CLIENT) / ICMP(type=0, id=7, seq=1),
        eth() / IP(src=CLIENT, dst=SERVER) / ICMP(type=8, id=7, seq=2),
        eth() / IP(src="192.0.2.1", dst=CLIENT) / ICMP(type=3, code=3),
        eth() / IP(src=CLIENT, dst="192.0.2.9") / GRE() / IP(src="1.1.1.1", dst="2.2.2.2"),
        eth() / IP(src=CLIENT, dst="192.0.2.9") / ESP(spi=1, seq=1, data=b"\x00" * 8),
    ]
    flows = _flows(tmp_path, packets)
    echo = next(f for f in flows if f["network"]["transport"] == "icmp" and f["source"]["ip"] == CLIENT)
    assert (echo["source"]["packets"], echo["destination"]["packets"]) == (2, 1)
    assert "port" not in echo["source"] and echo["zeek"]["connection"]["icmp"] == {"type": 8, "code": 0}
    assert echo["network"]["community_id"] == community_id(CLIENT, SERVER, 1, icmp_type=8, icmp_code=0)
    assert echo["zeek"]["connection"]["conn_state"] == "OTH" and "protocol" not in echo["network"]
    unreachable = next(f for f in flows if f["source"]["ip"] == "192.0.2.1")
    assert unreachable["zeek"]["connection"]["icmp"] == {"type": 3, "code": 3}
    assert unreachable["network"]["direction"] == "inbound"
    gre = next(f for f in flows if f["network"]["iana_number"] == "47")
    esp = next(f for f in flows if f["network"]["iana_number"] == "50")
    assert (gre["network"]["transport"], esp["network"]["transport"]) == ("gre", "esp")
    assert gre["network"]["community_id"] == community_id(CLIENT, "192.0.2.9", 47)
    assert gre["destination"] == {"ip": "192.0.2.9", "packets": 0, "bytes": 0}
    assert len(flows) == 4


def test_direction_vlan_ipv6_and_fragments(tmp_path: Path) -> None:
    udp = UDP(sport=5000, dport=6000) / (b"p" * 3000)
    packets = [
        eth() / Dot1Q(vlan=120) / IP(src="10.1.0.1", dst="10.2.0.1") / UDP(sport=1, dport=2),
        eth() / Dot1Q(vlan=121) / IP(src="10.1.0.1", dst="10.2.0.1") / UDP(sport=1, dport=2),
        eth() / IP(src="8.8.8.8", dst="100.64.0.1") / UDP(sport=3, dport=4),
        eth() / IPv6(src="2001:db8::1", dst="2001:db8:1::1") / UDP(sport=7, dport=8),
        *[eth() / f for f in fragment(IP(src="100.64.0.1", dst="8.8.4.4") / udp, fragsize=1400)],
    ]
    flows = _flows(tmp_path, packets, internal_networks=["10.0.0.0/8", "100.64.0.0/10", "2001:db8::/48"])
    by_vlan = {f["network"].get("vlan", {}).get("id"): f for f in flows if f["source"]["ip"] == "10.1.0.1"}
    assert set(by_vlan) == {"120", "121"} and by_vlan["120"]["network"]["direction"] == "internal"
    inbound = next(f for f in flows if f["source"]["ip"] == "8.8.8.8")
    assert inbound["network"]["direction"] == "inbound"
    six = next(f for f in flows if f["network"]["type"] == "ipv6")
    assert six["network"]["direction"] == "outbound" and six["network"]["iana_number"] == "17"
    frag = next(f for f in flows if f["destination"]["ip"] == "8.8.4.4")
    assert frag["source"]["packets"] == 1 and frag["source"]["bytes"] == 20 + 8 + 3000
    assert frag["network"]["direction"] == "outbound"


def test_idle_close_and_active_timeouts(tmp_path: Path) -> None:
    c = Conversation(CLIENT, 41000, SERVER, 8081)
    closed = [*c.handshake(), *c.close()]
    u1 = eth() / IP(src=CLIENT, dst=SERVER) / UDP(sport=9999, dport=9998) / b"1"
    u2 = eth() / IP(src=CLIENT, dst=SERVER) / UDP(sport=9999, dport=9998) / b"2"
    tick = eth() / IP(src="10.9.9.9", dst="10.9.9.8") / UDP(sport=1, dport=1)
    packets = timed([*closed, u1], start=T0, step=0.01)
    packets += timed([tick], start=T0 + 6)  # past the 5 s close delay: the TCP flow ends now
    packets += timed([u2], start=T0 + 100)  # past the 60 s idle timeout: a new UDP flow
    path = write_pcap(tmp_path / "t.pcap", packets)
    order: list[tuple[str, str]] = []
    records, _ = analyze(path)
    for ds, ev, _key in records:
        if ds == "network.flow":
            order.append((ev["network"]["transport"], ev["hcm"]["flow"]["end_reason"]))
    assert order[0] == ("tcp", "tcp_closed")
    # the first UDP flow and the tick ended idle; the same 5-tuple 94 s later is a new flow
    assert order.count(("udp", "idle_timeout")) == 2 and order[-1] == ("udp", "end_of_capture")
    assert len(order) == 4

    # Active timeout: a chatty flow is cut every 15 s and continues as the next segment.
    chatty = timed(
        [eth() / IP(src=CLIENT, dst=SERVER) / UDP(sport=7000, dport=7001) / b"x" for _ in range(8)], step=5.0
    )
    records, analyzer = analyze(write_pcap(tmp_path / "a.pcap", chatty), active_timeout=15, idle_timeout=60)
    segments = of(records, "network.flow")
    assert [s["hcm"]["flow"]["segment"] for s in segments] == [0, 1, 2]
    assert [s["source"]["packets"] for s in segments] == [3, 3, 2]
    assert [s["event"]["type"] for s in segments] == [["connection"], ["connection"], ["connection", "end"]]
    assert [s["hcm"]["flow"]["end_reason"] for s in segments] == [
        "active_timeout",
        "active_timeout",
        "end_of_capture",
    ]
    assert len({s["hcm"]["flow"]["id_key"] for s in segments}) == 3
    assert segments[1]["event"]["start"] == "2025-11-13T02:13:35.000000Z"
    assert analyzer.stats()["flows_split_active_timeout"] == 2


def test_port_reuse_after_close_starts_a_new_flow(tmp_path: Path) -> None:
    first = Conversation(CLIENT, 42000, SERVER, 8081, isn=100)
    second = Conversation(CLIENT, 42000, SERVER, 8081, isn=900_000)
    flows = _flows(tmp_path, [*first.handshake(), *first.close(), *second.handshake()])
    assert [f["zeek"]["connection"]["conn_state"] for f in flows] == ["SF", "S1"]


def test_flow_table_is_capped_and_evicts_the_least_recently_active(tmp_path: Path) -> None:
    packets = [
        eth() / IP(src=CLIENT, dst=SERVER) / TCP(sport=1000 + i, dport=8081, flags="S") for i in range(50)
    ]
    packets.append(eth() / IP(src=CLIENT, dst=SERVER) / TCP(sport=1000, dport=8081, flags="S"))  # 1000 again
    packets += [
        eth() / IP(src=CLIENT, dst=SERVER) / TCP(sport=2000 + i, dport=8081, flags="S") for i in range(5)
    ]
    emitted: list[dict[str, Any]] = []
    table = FlowTable(emitted.append, max_flows=10)
    for p in iter_pcap(write_pcap(tmp_path / "scan.pcap", timed(packets))):
        table.add(p)
        assert len(table) <= 10
    assert table.evicted == 46 and len(emitted) == 46
    assert all(e["hcm"]["flow"]["end_reason"] == "evicted" for e in emitted)
    still_open = {key[2] for key in table._flows}
    assert 1000 in still_open  # it was active again, so it was not the one to go
    assert still_open == {1000, 1046, 1047, 1048, 1049, 2000, 2001, 2002, 2003, 2004}
    table.flush()
    assert table.stats()["flows_emitted"] == 56 and table.stats()["flows_open"] == 0


def test_rereading_gives_the_same_id_keys(tmp_path: Path) -> None:
    c = Conversation(CLIENT, 43000, SERVER, 8081)
    packets = [*c.handshake(), *c.close(), eth() / IP(src=CLIENT, dst=SERVER) / ICMP()]
    path = write_pcap(tmp_path / "t.pcap", timed(packets))
    keys1 = [k for _, _, k in analyze(path)[0]]
    keys2 = [k for _, _, k in analyze(path)[0]]
    assert keys1 == keys2 and len(set(keys1)) == len(keys1) == 2


def test_icmpv6_echo_pair_is_one_flow(tmp_path: Path) -> None:
    from scapy.layers.inet6 import ICMPv6EchoReply, ICMPv6EchoRequest

    a, b = "2001:db8::10", "2001:db8::20"
    packets = [
        eth() / IPv6(src=b, dst=a) / ICMPv6EchoReply(id=1),  # the reply is seen first: still one flow,
        eth() / IPv6(src=a, dst=b) / ICMPv6EchoRequest(id=1),  # and the requester is the originator
    ]
    (flow,) = _flows(tmp_path, packets)
    assert flow["source"] == {"ip": a, "packets": 1, "bytes": 48}
    assert flow["destination"] == {"ip": b, "packets": 1, "bytes": 48}
    assert flow["network"]["transport"] == "ipv6-icmp" and flow["network"]["type"] == "ipv6"
    assert flow["network"]["community_id"] == community_id(a, b, 58, icmp_type=128, icmp_code=0)
