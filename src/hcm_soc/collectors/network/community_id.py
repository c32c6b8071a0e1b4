"""Community ID v1 flow hashes (https://github.com/corelight/community-id-spec).

Responsible for the one string that lets an analyst pivot between our flow, DNS,
HTTP and TLS records and those of Zeek, Suricata or Elastic Agent for the same
connection: ``"1:" + base64(sha1(seed, ordered addresses, protocol, 0, ports))``.
ICMP type/code stand in for ports, with request/reply types paired so both halves
of an echo exchange hash alike; protocols without ports hash addresses only.
"""

from __future__ import annotations

import socket
import struct
from binascii import b2a_base64

try:  # CPython's own SHA-1: for 40-byte inputs about a third cheaper than OpenSSL's through hashlib
    from _sha1 import sha1
except ImportError:  # other interpreters
    from hashlib import sha1

__all__ = ["community_id", "icmp_ports"]

# ICMP message types that have a counterpart (request <-> reply); others are one-way.
_ICMP4_PAIRS = {8: 0, 0: 8, 13: 14, 14: 13, 15: 16, 16: 15, 10: 9, 9: 10, 17: 18, 18: 17}
_ICMP6_PAIRS = {
    128: 129, 129: 128, 130: 131, 131: 130, 133: 134, 134: 133,
    135: 136, 136: 135, 139: 140, 140: 139, 144: 145, 145: 144,
}  # fmt: skip
_PORT_PROTOS = frozenset({1, 6, 17, 58, 132})
_PORTS = struct.Struct("!HH").pack
_SEED0 = b"\x00\x00"
_AF6 = socket.AF_INET6
_pton = socket.inet_pton
_aton = socket.inet_aton


def icmp_ports(proto: int, icmp_type: int, icmp_code: int) -> tuple[int, int, bool]:
    """(pseudo source port, pseudo destination port, one_way) for an ICMP message, as the spec maps them."""
    pairs = _ICMP6_PAIRS if proto == 58 else _ICMP4_PAIRS
    counterpart = pairs.get(icmp_type)
    if counterpart is None:
        return icmp_type, icmp_code, True
    return icmp_type, counterpart, False


def community_id(
    src_ip: str,
    dst_ip: str,
    proto: int,
    src_port: int = 0,
    dst_port: int = 0,
    *,
    icmp_type: int | None = None,
    icmp_code: int | None = None,
    seed: int = 0,
) -> str:
    """The Community ID v1 string of a flow. For ICMP/ICMPv6 pass ``icmp_type``/``icmp_code``
    (ports are ignored); for other protocols without ports the ports are ignored too."""
    if ":" in src_ip:
        saddr = _pton(_AF6, src_ip)
        daddr = _pton(_AF6, dst_ip)
    else:
        saddr = _aton(src_ip)
        daddr = _aton(dst_ip)
    one_way = False
    if proto == 1 or proto == 58:
        src_port, dst_port, one_way = icmp_ports(proto, icmp_type or 0, icmp_code or 0)
    # Order the endpoints so both directions hash alike (one-way ICMP keeps its order).
    if not one_way and (saddr > daddr or (saddr == daddr and src_port > dst_port)):
        saddr, daddr = daddr, saddr
        src_port, dst_port = dst_port, src_port
    data = (_SEED0 if seed == 0 else seed.to_bytes(2, "big")) + saddr + daddr + bytes((proto, 0))
    if proto in _PORT_PROTOS:
        data += _PORTS(src_port, dst_port)
    return "1:" + b2a_base64(sha1(data).digest(), newline=False).decode("ascii")
