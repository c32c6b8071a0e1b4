"""Community ID v1 against the spec's published vectors and an independent implementation."""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import random

import pytest

from hcm_soc.collectors.network.community_id import community_id

# Published with the spec and Zeek's btest for community_id_v1 (seed 0 and 1).
VECTORS = [
    (("1.2.3.4", "5.6.7.8", 6, 1122, 3344), 0, "1:wCb3OG7yAFWelaUydu0D+125CLM="),
    (("1.2.3.4", "5.6.7.8", 17, 1122, 3344), 0, "1:0Mu9InQx6z4ZiCZM/7HXi2WMhOg="),
    (("1.2.3.4", "5.6.7.8", 6, 1122, 3344), 1, "1:HhA1B+6CoLbiKPEs5nhNYN4XWfk="),
    (("1.2.3.4", "5.6.7.8", 17, 1122, 3344), 1, "1:OShq+iKDAMVouh/4bMxB9Sz4amw="),
    (("1.2.3.4", "5.6.7.8", 46, 0, 0), 0, "1:ikv3kmf89luf73WPz1jOs49S768="),  # RSVP: no ports
]
ICMP_VECTORS = [
    (("1.2.3.4", "5.6.7.8", 1, 8, 0), 0, "1:crodRHL2FEsHjbv3UkRrfbs4bZ0="),
    (("5.6.7.8", "1.2.3.4", 1, 0, 0), 0, "1:crodRHL2FEsHjbv3UkRrfbs4bZ0="),  # the echo reply
    (("1.2.3.4", "5.6.7.8", 1, 8, 0), 1, "1:9pr4ZGTICiuZoIh90RRYE2RyXpU="),
    (("fe80:1:203:405:607:809:a0b:c0d", "fe80:1011:1213:1415:1617:1819:1a1b:1c1d", 58, 128, 0), 0,
     "1:0bf7hyMJUwt3fMED7z8LIfRpBeo="),
    (("fe80:1011:1213:1415:1617:1819:1a1b:1c1d", "fe80:1:203:405:607:809:a0b:c0d", 58, 129, 0), 0,
     "1:0bf7hyMJUwt3fMED7z8LIfRpBeo="),
    (("fe80:1:203:405:607:809:a0b:c0d", "fe80:1011:1213:1415:1617:1819:1a1b:1c1d", 58, 128, 0), 1,
     "1:IO27GQzPuCtNnwFvjWALMHu5tJE="),
]  # fmt: skip


@pytest.mark.parametrize(("flow", "seed", "expected"), VECTORS)
def test_published_vectors_both_directions(
    flow: tuple[str, str, int, int, int], seed: int, expected: str
) -> None:
    src, dst, proto, sport, dport = flow
    assert community_id(src, dst, proto, sport, dport, seed=seed) == expected
    assert community_id(dst, src, proto, dport, sport, seed=seed) == expected


@pytest.mark.parametrize(("flow", "seed", "expected"), ICMP_VECTORS)
def test_published_icmp_vectors(flow: tuple[str, str, int, int, int], seed: int, expected: str) -> None:
    src, dst, proto, itype, icode = flow
    assert community_id(src, dst, proto, icmp_type=itype, icmp_code=icode, seed=seed) == expected


def _reference(src: str, dst: str, proto: int, sport: int, dport: int, seed: int = 0) -> str:
    """Written from the spec text with ipaddress/int arithmetic, sharing no code with the module."""
    a, b = ipaddress.ip_address(src), ipaddress.ip_address(dst)
    if (int(a), sport) > (int(b), dport):
        a, b, sport, dport = b, a, dport, sport
    blob = seed.to_bytes(2, "big") + a.packed + b.packed + proto.to_bytes(1, "big") + b"\x00"
    if proto in (6, 17, 132):
        blob += sport.to_bytes(2, "big") + dport.to_bytes(2, "big")
    return "1:" + base64.b64encode(hashlib.sha1(blob).digest()).decode()


def test_matches_an_independent_implementation_on_random_flows() -> None:
    rng = random.Random(20251126)
    for _ in range(300):
        v6 = rng.random() < 0.3
        bits = 128 if v6 else 32
        make = ipaddress.IPv6Address if v6 else ipaddress.IPv4Address
        src, dst = str(make(rng.getrandbits(bits))), str(make(rng.getrandbits(bits)))
        if rng.random() < 0.1:
            dst = src  # same address: ports decide the order
        proto = rng.choice([6, 17, 132, 47, 50])
        sport, dport = rng.randrange(65536), rng.randrange(65536)
        seed = rng.choice([0, 0, 7])
        expected = _reference(src, dst, proto, sport, dport, seed)
        assert community_id(src, dst, proto, sport, dport, seed=seed) == expected
        assert community_id(dst, src, proto, dport, sport, seed=seed) == expected


def test_one_way_icmp_keeps_its_order() -> None:
    # Destination unreachable has no counterpart: the two directions are different flows.
    there = community_id("10.0.0.1", "10.0.0.2", 1, icmp_type=3, icmp_code=1)
    back = community_id("10.0.0.2", "10.0.0.1", 1, icmp_type=3, icmp_code=1)
    assert there != back
    assert there == _reference_icmp_one_way("10.0.0.1", "10.0.0.2", 3, 1)


def _reference_icmp_one_way(src: str, dst: str, itype: int, icode: int) -> str:
    blob = b"\x00\x00" + ipaddress.ip_address(src).packed + ipaddress.ip_address(dst).packed + b"\x01\x00"
    blob += itype.to_bytes(2, "big") + icode.to_bytes(2, "big")
    return "1:" + base64.b64encode(hashlib.sha1(blob).digest()).decode()
