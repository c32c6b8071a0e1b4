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

__all__ = ["community_id", "icmp_ports", "ports_community_id"]

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
# one struct call packs the whole hash input of an IPv4 flow (seed, addresses, protocol, pad, ports)
_V4_PORTS = struct.Struct("!H4s4sBxHH").pack
_V4 = struct.Struct("!H4s4sBx").pack
_PACKED: dict[str, bytes] = {}  # address string -> its network-order bytes (bounded, see _packed)


def _packed(ip: str) -> bytes:
    """``inet_aton``/``inet_pton`` of an address, cached: a capture's flows share few addresses
    and the socket functions cost more than the rest of the hash."""
    cache = _PACKED  # a typed local when compiled: C dict calls
    packed = cache.get(ip)
    if packed is None:
        packed = _pton(_AF6, ip) if ":" in ip else _aton(ip)
        if len(cache) >= 65_536:
            cache.clear()
        cache[ip] = packed
    return packed


def ports_community_id(src_ip: str, dst_ip: str, proto: int, src_port: int, dst_port: int) -> str:
    """``community_id(src_ip, dst_ip, proto, src_port, dst_port)`` for TCP, UDP and SCTP: the
    flow table's common case, a C function when compiled (no keyword parsing, no Python calls
    but the hash's own)."""
    if (proto != 6 and proto != 17 and proto != 132) or ":" in src_ip or ":" in dst_ip:
        return community_id(src_ip, dst_ip, proto, src_port, dst_port)
    saddr = _packed(src_ip)
    daddr = _packed(dst_ip)
    if len(saddr) != 4 or len(daddr) != 4:
        return community_id(src_ip, dst_ip, proto, src_port, dst_port)
    if saddr > daddr or (saddr == daddr and src_port > dst_port):
        saddr, daddr = daddr, saddr
        src_port, dst_port = dst_port, src_port
    digest = sha1(_V4_PORTS(0, saddr, daddr, proto, src_port, dst_port)).digest()
    return "1:" + b2a_base64(digest, newline=False).decode("ascii")


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
        saddr = _packed(src_ip)
        daddr = _packed(dst_ip)
    one_way = False
    if proto == 1 or proto == 58:
        src_port, dst_port, one_way = icmp_ports(proto, icmp_type or 0, icmp_code or 0)
    # Order the endpoints so both directions hash alike (one-way ICMP keeps its order).
    if not one_way and (saddr > daddr or (saddr == daddr and src_port > dst_port)):
        saddr, daddr = daddr, saddr
        src_port, dst_port = dst_port, src_port
    if seed == 0 and len(saddr) == 4 and len(daddr) == 4:
        if proto in _PORT_PROTOS:
            data = _V4_PORTS(0, saddr, daddr, proto, src_port, dst_port)
        else:
            data = _V4(0, saddr, daddr, proto)
    else:
        data = (_SEED0 if seed == 0 else seed.to_bytes(2, "big")) + saddr + daddr + bytes((proto, 0))
        if proto in _PORT_PROTOS:
            data += _PORTS(src_port, dst_port)
    return "1:" + b2a_base64(sha1(data).digest(), newline=False).decode("ascii")
