"""Kernel iptables/UFW packet lines -> ECS network events (golden file and edge cases)."""

from __future__ import annotations

import pytest

from hcm_soc.parsers.base import Event
from hcm_soc.parsers.netfilter import enrich_netfilter, valid_ip
from hcm_soc.parsers.syslog import parse_syslog
from tests.unit.parsers import GoldenCase, field_diff, load_golden

NETFILTER = load_golden("syslog", "netfilter")
TCP = "SRC=203.0.113.45 DST=10.10.20.11 LEN=60 TOS=0x00 PREC=0x00 TTL=49 ID=1 DF PROTO=TCP SPT=5 DPT=22 WINDOW=1 RES=0x00 SYN URGP=0"


def enrich(message: str) -> tuple[bool, Event]:
    event: Event = {"process": {"name": "kernel"}, "message": message}
    return enrich_netfilter(event, message), event


@pytest.mark.parametrize("case", NETFILTER, ids=lambda c: c.id)
def test_golden(case: GoldenCase) -> None:
    assert case.fields is not None
    problems = field_diff(parse_syslog(case.raw, case.ctx), case.fields)
    assert not problems, f"{case.id}: {case.raw!r}\n" + "\n".join(problems)


@pytest.mark.parametrize(
    ("prefix", "action", "types"),
    [
        ("[UFW BLOCK] ", "ufw-block", ["connection", "denied"]),
        ("[UFW ALLOW] ", "ufw-allow", ["connection", "allowed"]),
        ("[UFW AUDIT] ", "ufw-audit", ["connection"]),
        ("[UFW LIMIT BLOCK] ", "ufw-limit-block", ["connection", "denied"]),
        ("IPTABLES-DROP: ", "iptables-drop", ["connection", "denied"]),
        ("iptables denied: ", "iptables-denied", ["connection", "denied"]),
        ("REJECT ", "reject", ["connection", "denied"]),
        ("nft accept ", "nft-accept", ["connection", "allowed"]),
        ("[  812.000001] FW-IN-LOG ", "fw-in-log", ["connection"]),
        ("", "netfilter-log", ["connection"]),
    ],
)
def test_prefix_becomes_action_and_decision(prefix: str, action: str, types: list[str]) -> None:
    ok, event = enrich(f"{prefix}IN=eth0 OUT= {TCP}")
    assert ok
    assert event["event"]["action"] == action
    assert event["event"]["type"] == types
    assert event["event"]["category"] == ["network"]


@pytest.mark.parametrize(
    ("interfaces", "direction"),
    [("IN=eth0 OUT=", "ingress"), ("IN= OUT=eth0", "egress"), ("IN=eth1 OUT=eth0", "unknown")],
)
def test_direction_from_interfaces(interfaces: str, direction: str) -> None:
    ok, event = enrich(f"[UFW BLOCK] {interfaces} {TCP}")
    assert ok
    assert event["network"]["direction"] == direction


def test_embedded_packet_of_an_icmp_error_is_not_this_packet() -> None:
    ok, event = enrich(
        "DROP IN=eth0 OUT= SRC=203.0.113.1 DST=10.10.20.11 LEN=88 TOS=0x00 PREC=0xC0 TTL=254 ID=4000 PROTO=ICMP "
        "TYPE=3 CODE=3 [SRC=10.10.20.11 DST=203.0.113.1 LEN=60 TOS=0x00 PREC=0x00 TTL=64 ID=1 PROTO=UDP SPT=5353 "
        "DPT=33434 LEN=40 ]"
    )
    assert ok
    assert event["source"] == {"ip": "203.0.113.1"}
    assert event["destination"] == {"ip": "10.10.20.11"}
    assert event["network"]["transport"] == "icmp"
    assert event["iptables"]["icmp"] == {"type": 3, "code": 3}
    assert event["iptables"]["id"] == 4000


def test_transport_header_fields_do_not_shadow_ip_header_fields() -> None:
    ok, event = enrich(
        "X IN=eth0 OUT= SRC=10.0.0.1 DST=10.0.0.2 LEN=84 TTL=64 ID=11 PROTO=ICMP TYPE=0 CODE=0 ID=22 SEQ=3"
    )
    assert ok
    assert (event["iptables"]["id"], event["iptables"]["icmp"]["id"]) == (11, 22)
    assert event["network"]["bytes"] == 84


@pytest.mark.parametrize(
    "message",
    [
        "e1000e: eth0 NIC Link is Up 1000 Mbps Full Duplex",
        "[UFW BLOCK] IN=eth0 OUT= SRC=not-an-ip DST=999.1.1.1 LEN=1",
        "LOGIN=eth0 OUT= SRC=10.0.0.1 DST=10.0.0.2",  # "IN=" inside another word
        "IN=eth0 SRC=10.0.0.1 DST=10.0.0.2",  # no OUT=
        "",
    ],
)
def test_not_a_packet_line(message: str) -> None:
    ok, event = enrich(message)
    assert not ok
    assert event == {"process": {"name": "kernel"}, "message": message}


def test_malformed_mac_is_left_out() -> None:
    ok, event = enrich(f"[UFW BLOCK] IN=eth0 OUT= MAC=zz:16:3e {TCP}")
    assert ok
    assert "mac" not in event["source"] and "mac" not in event["destination"]


def test_numeric_protocol_is_named() -> None:
    ok, event = enrich("DROP IN=eth0 OUT= SRC=10.0.0.1 DST=10.0.0.2 LEN=64 PROTO=50")
    assert ok
    assert (event["network"]["transport"], event["network"]["iana_number"]) == ("esp", "50")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10.10.1.32", "10.10.1.32"),
        ("2402:0800:6314:0000:0000:0000:0000:0001", "2402:800:6314::1"),
        ("[::1]", "::1"),
        ("may-quet.example.net", None),
        ("999.1.1.1", None),
        ("", None),
    ],
)
def test_valid_ip(text: str, expected: str | None) -> None:
    assert valid_ip(text) == expected
