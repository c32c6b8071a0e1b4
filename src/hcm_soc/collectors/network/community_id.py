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

import cython

try:  # CPython's own SHA-1: for 40-byte inputs about a third cheaper than OpenSSL's through hashlib
    from _sha1 import sha1
except ImportError:  # other interpreters
    from hashlib import sha1

__all__ = ["community_id", "icmp_ports", "ports_community_id"]

# SHA-1's constants (FIPS 180-4) and the 32-bit mask; C 32-bit constants when compiled (a literal
# above 2**31 would be a Python int there, and every operation with it a Python call)
_M32 = 0xFFFFFFFF
_K0 = 0x5A827999
_K1 = 0x6ED9EBA1
_K2 = 0x8F1BBCDC
_K3 = 0xCA62C1D6
_H0 = 0x67452301
_H1 = 0xEFCDAB89
_H2 = 0x98BADCFE
_H3 = 0x10325476
_H4 = 0xC3D2E1F0
_B64 = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

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
    flow table's common case. Canonical dotted quads are hashed from their 32-bit values by
    :func:`_v4_ports_id` (C code when compiled: no bytes objects, no Python calls at all); any
    other form takes the general path."""
    if proto != 6 and proto != 17 and proto != 132:
        return community_id(src_ip, dst_ip, proto, src_port, dst_port)
    saddr = _dotted_quad(src_ip)
    daddr = _dotted_quad(dst_ip)
    if saddr < 0 or daddr < 0 or not (0 <= src_port <= 0xFFFF and 0 <= dst_port <= 0xFFFF):
        return community_id(src_ip, dst_ip, proto, src_port, dst_port)
    if saddr > daddr or (saddr == daddr and src_port > dst_port):
        return _v4_ports_id(daddr, saddr, proto, dst_port, src_port)
    return _v4_ports_id(saddr, daddr, proto, src_port, dst_port)


def _v4_ports_id(saddr: int, daddr: int, proto: int, sport: int, dport: int) -> str:
    """The Community ID of ordered IPv4 endpoints with ports (seed 0): SHA-1 of the 16-byte input
    (seed, addresses, protocol, pad, ports: one 64-byte block once padded) and its base64, both
    written out here so that the compiled form is plain C arithmetic. The same code runs pure
    (`test_fastpaths_exact` checks it against ``hashlib`` and ``b2a_base64`` in both forms)."""
    w = cython.declare(cython.uint[80])
    # the padded block: 16 message bytes, the 0x80 end marker, zeros, the length in bits (128)
    w[0] = saddr >> 16
    w[1] = ((saddr & 0xFFFF) << 16) | (daddr >> 16)
    w[2] = ((daddr & 0xFFFF) << 16) | (proto << 8)
    w[3] = (sport << 16) | dport
    w[4] = 0x80000000
    for t in range(5, 15):
        w[t] = 0
    w[15] = 128
    for t in range(16, 80):
        x = w[t - 3] ^ w[t - 8] ^ w[t - 14] ^ w[t - 16]
        w[t] = ((x << 1) | (x >> 31)) & _M32
    a = _H0
    b = _H1
    c = _H2
    d = _H3
    e = _H4
    # the 80 rounds as four loops of 20 (no per-round branch on the round's function)
    for t in range(20):
        x = (((a << 5) | (a >> 27)) + ((((b & c) | (~b & d)) + _K0) & _M32) + e + w[t]) & _M32
        e = d
        d = c
        c = ((b << 30) | (b >> 2)) & _M32
        b = a
        a = x
    for t in range(20, 40):
        x = (((a << 5) | (a >> 27)) + ((b ^ c ^ d) + _K1) + e + w[t]) & _M32
        e = d
        d = c
        c = ((b << 30) | (b >> 2)) & _M32
        b = a
        a = x
    for t in range(40, 60):
        x = (((a << 5) | (a >> 27)) + (((b & c) | (b & d) | (c & d)) + _K2) + e + w[t]) & _M32
        e = d
        d = c
        c = ((b << 30) | (b >> 2)) & _M32
        b = a
        a = x
    for t in range(60, 80):
        x = (((a << 5) | (a >> 27)) + ((b ^ c ^ d) + _K3) + e + w[t]) & _M32
        e = d
        d = c
        c = ((b << 30) | (b >> 2)) & _M32
        b = a
        a = x
    # the 20-byte digest, base64 (6 groups of 3 bytes, then 2 bytes and "=") after "1:"
    h = cython.declare(cython.uint[5])
    h[0] = (_H0 + a) & _M32
    h[1] = (_H1 + b) & _M32
    h[2] = (_H2 + c) & _M32
    h[3] = (_H3 + d) & _M32
    h[4] = (_H4 + e) & _M32
    table = _B64
    out = cython.declare(cython.char[30])
    out[0] = 49  # "1"
    out[1] = 58  # ":"
    pos = 2
    acc = 0  # bits not yet written, `bits` of them, high first
    bits = 0
    for t in range(5):
        acc = (acc << 32) | h[t]
        bits += 32
        while bits >= 6:
            bits -= 6
            out[pos] = table[(acc >> bits) & 63]
            pos += 1
        acc &= (1 << bits) - 1
    out[pos] = table[(acc << (6 - bits)) & 63]  # the last 2 bits, padded with zeros
    out[pos + 1] = 61  # "="
    if not cython.compiled:
        return bytes([out[i] for i in range(30)]).decode("ascii")
    return out[:30].decode("ascii")  # compiled: straight from the C buffer to the string


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


def _dotted_quad(ip: str) -> int:
    """The 32-bit value of a canonical dotted quad (four decimal numbers 0-255 without leading
    zeros, as ``inet_ntoa`` writes them), else -1: the strings ``inet_aton`` takes but does not
    write back ("10.1", "010.0.0.1") are left to ``ipaddress`` and ``inet_aton``, as before. One
    pass over the characters (C code when compiled: a first-seen address is that cheap)."""
    value = 0
    octet = 0
    digits = 0
    dots = 0
    for ch in ip:
        if ch == ".":
            if digits == 0 or dots == 3:
                return -1
            value = (value << 8) | octet
            octet = 0
            digits = 0
            dots += 1
        elif "0" <= ch <= "9":
            if digits == 1 and octet == 0:  # a leading zero
                return -1
            octet = octet * 10 + (ord(ch) - 48)
            if octet > 255:
                return -1
            digits += 1
        else:
            return -1
    if dots != 3 or digits == 0:
        return -1
    return (value << 8) | octet
