"""The arithmetic shortcuts of the record path give exactly what the general code gives.

Each test pins one helper that replaced a Python-level call for speed (issue 4, third
round): the id keys' start time (``fixed6`` for ``f"{ts:.6f}"``), the flow duration
(``_duration_ns`` for ``round``), the internal-range check's address parser
(``_dotted_quad`` for ``inet_aton``/``inet_ntoa``), slicing the C buffer (``cut``), the
flow table's Community ID path, and the TLS hellos that are no longer dataclasses. Run
compiled and with ``HCM_SOC_PURE_PYTHON=1``: both forms must agree with the reference.
"""

from __future__ import annotations

import random
import socket

import pytest

from hcm_soc.collectors.network import implementation
from hcm_soc.collectors.network.community_id import _dotted_quad, community_id, ports_community_id
from hcm_soc.collectors.network.ecs import fixed6
from hcm_soc.collectors.network.flowrecord import InternalRanges, _duration_ns
from hcm_soc.collectors.network.packet import cut
from hcm_soc.collectors.network.tls import parse_client_hello
from hcm_soc.collectors.network.tlshello import ClientHello, ServerHello
from tests.unit.network_proto.test_tls import _client_hello


def test_fixed6_formats_like_format_ties_included() -> None:
    rng = random.Random(11)
    values = [
        0.0,
        1.5,
        1_048_575.9999995,
        1_048_576.0,
        1_700_000_000.0078125,
        1_700_000_000.9999995,
        1e16,
        -3.25,
    ]
    for _ in range(20_000):
        sec = rng.randrange(1_048_576, 2**31)
        values.append(sec + rng.randrange(2**22) / 2**22)  # dyadic fractions: exact ties at the 7th digit
        values.append(rng.uniform(1.7e9, 1.8e9))
        values.append(sec + (rng.randrange(10**6) + 0.5) / 1e6)
    for value in values:
        assert fixed6(value) == f"{value:.6f}", value


def test_duration_rounds_half_even_like_round() -> None:
    rng = random.Random(12)
    pairs = [(0.0, 0.0), (1.0, 1.0000005), (1.0, 1.0000015), (5.0, 4.0), (0.0, 1e12)]
    for _ in range(20_000):
        first = rng.uniform(1.7e9, 1.8e9)
        pairs.append(
            (first, first + rng.choice([rng.uniform(0, 2), rng.uniform(0, 2000), rng.randrange(10**6) / 1e6]))
        )
    for first, last in pairs:
        assert _duration_ns(first, last) == round((last - first) * 1e6) * 1000, (first, last)


def _reference_quad(ip: str) -> int:
    try:
        packed = socket.inet_aton(ip)
    except (OSError, ValueError):
        return -1
    return int.from_bytes(packed, "big") if socket.inet_ntoa(packed) == ip else -1


def test_dotted_quad_takes_exactly_the_canonical_forms() -> None:
    rng = random.Random(13)
    cases = ["1.2.3.4", "0.0.0.0", "255.255.255.255", "256.1.1.1", "01.2.3.4", "1.2.3", "1.2.3.4.", "10.1"]
    cases += [
        "1..2.3",
        "1.2.3.04",
        "00.0.0.0",
        "0x1.2.3.4",
        "",
        " 1.2.3.4",
        "\u0661.2.3.4",
        "::1",
        "1.2.3.2555",
    ]
    for _ in range(20_000):
        cases.append(".".join(str(rng.randrange(300)) for _ in range(4)))
        cases.append("".join(rng.choice("0123456789.x ") for _ in range(rng.randrange(1, 17))))
    for ip in cases:
        assert _dotted_quad(ip) == _reference_quad(ip), ip


def test_internal_ranges_of_other_address_forms() -> None:
    inside = InternalRanges(["10.0.0.0/8", "fd00::/8"])
    assert inside("10.1.2.3") and not inside("11.1.2.3")
    assert inside("fd00::1") and not inside("2001:db8::1")
    assert not inside("not an address") and "not an address" not in inside.cache
    assert inside.direction("10.0.0.1", "8.8.8.8") == "outbound"
    assert inside.direction("8.8.8.8", "fd00::5") == "inbound"


def test_cut_is_a_slice() -> None:
    buf = bytes(range(40))
    for start, stop in [(0, 4), (5, 5), (6, 3), (30, 99), (40, 41), (0, 0), (12, 40), (-3, 40), (2, -1)]:
        assert cut(buf, start, stop) == buf[start:stop], (start, stop)
        assert type(cut(buf, start, stop)) is bytes


def test_ports_community_id_equals_community_id() -> None:
    rng = random.Random(14)
    flows = [
        ("10.0.0.1", "10.0.0.1", 6, 80, 79),  # same address: the ports order the endpoints
        ("192.168.1.2", "10.0.0.1", 17, 53, 5353),
        ("fd00::1", "fd00::2", 6, 1, 2),  # IPv6 and ICMP take the general path
        ("10.0.0.1", "10.0.0.2", 1, 8, 0),
        ("10.0.0.1", "10.0.0.2", 132, 9, 9),
    ]
    for _ in range(2_000):
        flows.append(
            (
                f"10.{rng.randrange(3)}.0.{rng.randrange(3)}",
                f"10.{rng.randrange(3)}.0.{rng.randrange(3)}",
                rng.choice([6, 17]),
                rng.randrange(3),
                rng.randrange(3),
            )
        )
    for flow in flows:
        assert ports_community_id(*flow) == community_id(*flow), flow
    # the published example of the spec (TCP 128.232.110.120:34855 -> 66.35.250.204:80)
    assert (
        ports_community_id("128.232.110.120", "66.35.250.204", 6, 34855, 80)
        == "1:LQU9qZlK+B5F3KDmev6m5PMibrg="
    )


def test_hellos_compare_by_value_and_are_read_only() -> None:
    first = parse_client_hello(_client_hello())
    second = parse_client_hello(_client_hello())
    assert first is not None and second is not None
    assert first == second and hash(first) == hash(second) and first is not second
    assert "server_name='" in repr(first) and repr(first).startswith("ClientHello(version=771, ")
    other = ClientHello(771, (1,), (), (), (), (), (), None, ())
    assert other != first and other.server_name is None
    server = ServerHello(771, 0x1301, (43,), 772, "h2")
    assert server == ServerHello(771, 0x1301, (43,), 772, "h2") and server != ServerHello(
        771, 1, (), None, None
    )
    assert server.version == 772 and server != first
    if implementation().startswith("compiled"):  # C structs: read-only fields (pure Python: slots)
        with pytest.raises(AttributeError):
            first.version = 1
