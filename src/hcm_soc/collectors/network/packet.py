"""The decoded packet: the one object every packet becomes, from files and live capture alike.

Kept in its own module so the pcap reader, the frame decoder and the flow table share one
type without importing each other; ``packet.pxd`` gives its fields C types when the
module is compiled (see :mod:`hcm_soc.collectors.network`), so the flow table reads
them without a dictionary or attribute lookup.
"""

from __future__ import annotations

import cython

__all__ = ["Packet", "cut"]


def cut(buf: bytes, start: int, stop: int) -> bytes:
    """``buf[start:stop]``. Compiled, a slice of the C buffer (one bytes allocation) instead of
    slicing the object, which first builds a slice object: the decoders' field slices cost half
    as much. Same result as the slice, bounds clamped alike."""
    if cython.compiled and start >= 0 and stop >= 0:
        size = len(buf)
        if stop > size:
            stop = size
        if start >= stop:
            return b""
        return cython.cast(cython.p_char, buf)[start:stop]
    return buf[start:stop]


@cython.no_gc  # holds no containers of objects: no cycles, no cyclic-GC bookkeeping per packet
@cython.freelist(16)  # one packet lives at a time: reuse its memory instead of a malloc/free per packet
@cython.cclass
class Packet:
    """One decoded IP packet. Ports are 0 when the protocol has none; ``length`` is the IP
    length on the wire (header + payload, the whole datagram for reassembled fragments);
    ``payload`` is the TCP/UDP/SCTP payload as captured (empty for other protocols)."""

    __slots__ = (
        "ack",
        "dst_ip",
        "dst_port",
        "fragmented",
        "icmp_code",
        "icmp_type",
        "ip_version",
        "length",
        "payload",
        "proto",
        "seq",
        "src_ip",
        "src_port",
        "tcp_flags",
        "ts",
        "vlan",
    )

    def __init__(
        self,
        ts: float,
        ip_version: int,
        src_ip: str,
        dst_ip: str,
        proto: int,
        src_port: int = 0,
        dst_port: int = 0,
        tcp_flags: int = 0,
        length: int = 0,
        payload: bytes = b"",
        vlan: int | None = None,
        icmp_type: int | None = None,
        icmp_code: int | None = None,
        seq: int = 0,
        ack: int = 0,
        fragmented: bool = False,
    ) -> None:
        self.ts = ts
        self.ip_version = ip_version
        self.src_ip = src_ip
        self.dst_ip = dst_ip
        self.proto = proto
        self.src_port = src_port
        self.dst_port = dst_port
        self.tcp_flags = tcp_flags
        self.length = length
        self.payload = payload
        self.vlan = vlan
        self.icmp_type = icmp_type
        self.icmp_code = icmp_code
        self.seq = seq
        self.ack = ack
        self.fragmented = fragmented

    def __repr__(self) -> str:
        return (
            f"Packet(ts={self.ts}, {self.src_ip}:{self.src_port} -> {self.dst_ip}:{self.dst_port}, "
            f"proto={self.proto}, flags=0x{self.tcp_flags:02x}, len={self.length}, payload={len(self.payload)})"
        )
