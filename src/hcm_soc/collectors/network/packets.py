"""Packets from raw frames, decoded with ``struct`` (no scapy on the hot path).

Responsible for decoding link layers (Ethernet with 802.1Q/802.1ad/QinQ tags, Linux cooked
SLL and SLL2, raw IP, BSD null/loopback), IPv4 (with bounded fragment reassembly),
IPv6 (extension headers, bounded fragment reassembly), TCP, UDP, SCTP ports and
ICMP/ICMPv6 type/code into small :class:`Packet` objects.

API used by the collector and the CLI:

- ``iter_pcap`` and ``PcapError``: reading capture files, in :mod:`.pcapfile`
  (re-exported here).
- ``decode_frame(linktype, ts, frame, decoder=None) -> Packet | None`` for live
  capture (``linktype`` is the DLT number, e.g. 1 for Ethernet). ``None`` means
  "nothing to analyse": a non-IP frame, a decode error (counted) or a fragment
  held for reassembly.
- ``FrameDecoder`` keeps the fragment buffers and the decode counters
  (``stats()``); pass the analyzer's (``NetworkAnalyzer.decoder``) to both
  functions so its ``stats()`` include decode errors by reason.
"""

from __future__ import annotations

import socket
import struct

from hcm_soc.collectors.network.packet import Packet
from hcm_soc.collectors.network.pcapfile import PcapError, iter_pcap

__all__ = [
    "LINKTYPE_ETHERNET",
    "LINKTYPE_LINUX_SLL",
    "LINKTYPE_LINUX_SLL2",
    "LINKTYPE_NULL",
    "LINKTYPE_RAW",
    "FrameDecoder",
    "Packet",
    "PcapError",
    "decode_frame",
    "iter_pcap",
]

LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
LINKTYPE_LOOP = 108
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = 276
_RAW_ALIASES = frozenset({12, 14, LINKTYPE_RAW})  # DLT_RAW differs between BSDs and Linux

_ETH_IPV4, _ETH_IPV6 = 0x0800, 0x86DD
_VLAN_TAGS = frozenset({0x8100, 0x88A8, 0x9100})
_AF_INET6 = frozenset({10, 24, 28, 30})  # AF_INET6 on Linux, NetBSD/OpenBSD, FreeBSD, macOS
_IPV6_EXT = frozenset({0, 43, 60, 135, 139, 140})  # hop-by-hop, routing, dest opts, mobility, HIP, shim6

_FRAG_TIMEOUT = 30.0  # seconds a partial datagram waits for its other fragments
_MAX_FRAG_DATAGRAMS = 4096
_MAX_FRAG_BYTES = 65_535 + 8

_ntoa = socket.inet_ntoa
_ntop = socket.inet_ntop
_AF6 = socket.AF_INET6
_U16 = struct.Struct("!H").unpack_from
_U32 = struct.Struct("!I").unpack_from
_TCP_SEQ = struct.Struct("!HHII").unpack_from
_PORTS = struct.Struct("!HH").unpack_from


class _Fragments:
    __slots__ = ("first_ts", "header", "parts", "size", "total")

    def __init__(self, ts: float) -> None:
        self.first_ts = ts
        self.parts: dict[int, bytes] = {}
        self.size = 0
        self.total = -1  # datagram payload length, known once the last fragment arrived
        self.header: tuple[int, int] | None = None  # (next protocol, header length) of the first fragment


class FrameDecoder:
    """Decodes frames into :class:`Packet`; owns the fragment buffers and the counters."""

    def __init__(self) -> None:
        self.errors: dict[str, int] = {}  # decode errors by reason
        self.non_ip = 0  # ARP, LLDP, STP…: not errors, not analysed
        self.fragments_reassembled = 0
        self.fragments_dropped = 0  # parts of datagrams that timed out or overflowed the buffers
        self._frags: dict[tuple[object, ...], _Fragments] = {}
        self._ips: dict[bytes, str] = {}
        self._frag_sweep = 0.0

    def _ip_string(self, packed: bytes) -> str:
        if len(self._ips) >= 65_536:
            self._ips.clear()
        text = self._ips[packed] = _ntoa(packed)
        return text

    def stats(self) -> dict[str, int]:
        out = {
            "decode_errors": sum(self.errors.values()),
            "non_ip_frames": self.non_ip,
            "fragments_reassembled": self.fragments_reassembled,
            "fragments_dropped": self.fragments_dropped,
            "fragments_pending": len(self._frags),
        }
        for reason, count in sorted(self.errors.items()):
            out[f"decode_error.{reason}"] = count
        return out

    def _error(self, reason: str) -> None:
        self.errors[reason] = self.errors.get(reason, 0) + 1

    def decode(self, linktype: int, ts: float, frame: bytes) -> Packet | None:
        """Decode one frame; None for non-IP frames, decode errors (counted) and held fragments."""
        if type(frame) is not bytes:  # memoryview/bytearray from a socket: payload slices must be bytes
            frame = bytes(frame)
        if linktype == LINKTYPE_ETHERNET:
            return self._ethernet_fast(ts, frame, 0, len(frame))
        return self._decode(linktype, ts, frame, 0, len(frame))

    def _ethernet_fast(self, ts: float, buf: bytes, off: int, end: int) -> Packet | None:
        """The common case inline (Ethernet II, unfragmented IPv4, TCP/UDP); the rest via _decode.
        One call instead of four per packet is most of the decoding time saved."""
        ip = off + 14
        if end - ip >= 28 and buf[off + 12] == 8 and buf[off + 13] == 0:
            b0 = buf[ip]
            if b0 >> 4 == 4 and not (buf[ip + 6] & 0x3F or buf[ip + 7]):
                ihl = (b0 & 0x0F) << 2
                total = (buf[ip + 2] << 8) | buf[ip + 3]
                pos = ip + ihl
                l4_end = ip + total
                if l4_end > end:
                    l4_end = end
                proto = buf[ip + 9]
                if ihl >= 20 and total >= ihl:
                    # Address strings from a bounded cache: faster than inet_ntoa, and flows of one
                    # host share one string instead of holding a copy each.
                    ips = self._ips
                    key = buf[ip + 12 : ip + 16]
                    src = ips.get(key)
                    if src is None:
                        src = self._ip_string(key)
                    key = buf[ip + 16 : ip + 20]
                    dst = ips.get(key)
                    if dst is None:
                        dst = self._ip_string(key)
                    if proto == 6 and l4_end - pos >= 20:
                        doff = (buf[pos + 12] >> 4) << 2
                        if doff >= 20:
                            sport, dport, seq, ack = _TCP_SEQ(buf, pos)
                            return Packet(
                                ts, 4, src, dst, 6,
                                sport, dport, buf[pos + 13], total, buf[pos + doff : l4_end],
                                None, None, None, seq, ack, False,
                            )  # fmt: skip
                    elif proto == 17 and l4_end - pos >= 8:
                        sport, dport = _PORTS(buf, pos)
                        return Packet(
                            ts, 4, src, dst, 17,
                            sport, dport, 0, total, buf[pos + 8 : l4_end], None, None, None, 0, 0, False,
                        )  # fmt: skip
        return self._decode(LINKTYPE_ETHERNET, ts, buf, off, end)

    def _decode(self, linktype: int, ts: float, buf: bytes, off: int, end: int) -> Packet | None:
        vlan: int | None = None
        if linktype == LINKTYPE_ETHERNET:
            if end - off < 14:
                self._error("truncated_link_header")
                return None
            etype = (buf[off + 12] << 8) | buf[off + 13]
            off += 14
            while etype in _VLAN_TAGS:
                if end - off < 4:
                    self._error("truncated_vlan_tag")
                    return None
                if vlan is None:  # QinQ: the outer (service) tag names the segment
                    vlan = ((buf[off] << 8) | buf[off + 1]) & 0x0FFF
                etype = (buf[off + 2] << 8) | buf[off + 3]
                off += 4
            if etype == _ETH_IPV4:
                return self._ipv4(ts, buf, off, end, vlan)
            if etype == _ETH_IPV6:
                return self._ipv6(ts, buf, off, end, vlan)
            self.non_ip += 1
            return None
        if linktype in _RAW_ALIASES or linktype in (LINKTYPE_IPV4, LINKTYPE_IPV6):
            return self._ip_by_version(ts, buf, off, end, None)
        if linktype in (LINKTYPE_LINUX_SLL, LINKTYPE_LINUX_SLL2):
            hlen = 16 if linktype == LINKTYPE_LINUX_SLL else 20
            if end - off < hlen:
                self._error("truncated_link_header")
                return None
            at = off + 14 if linktype == LINKTYPE_LINUX_SLL else off
            etype = (buf[at] << 8) | buf[at + 1]
            off += hlen
            while etype in _VLAN_TAGS and end - off >= 4:
                if vlan is None:
                    vlan = ((buf[off] << 8) | buf[off + 1]) & 0x0FFF
                etype = (buf[off + 2] << 8) | buf[off + 3]
                off += 4
            if etype == _ETH_IPV4:
                return self._ipv4(ts, buf, off, end, vlan)
            if etype == _ETH_IPV6:
                return self._ipv6(ts, buf, off, end, vlan)
            self.non_ip += 1
            return None
        if linktype in (LINKTYPE_NULL, LINKTYPE_LOOP):
            if end - off < 4:
                self._error("truncated_link_header")
                return None
            # NULL stores the address family in the capturing host's byte order, LOOP in network order.
            family = int.from_bytes(buf[off : off + 4], "big" if linktype == LINKTYPE_LOOP else "little")
            if family > 0xFFFF:
                family = int.from_bytes(buf[off : off + 4], "big")
            off += 4
            if family == 2:
                return self._ipv4(ts, buf, off, end, None)
            if family in _AF_INET6:
                return self._ipv6(ts, buf, off, end, None)
            self.non_ip += 1
            return None
        self._error(f"unsupported_linktype_{linktype}")
        return None

    def _ip_by_version(self, ts: float, buf: bytes, off: int, end: int, vlan: int | None) -> Packet | None:
        if end <= off:
            self._error("truncated_ip_header")
            return None
        version = buf[off] >> 4
        if version == 4:
            return self._ipv4(ts, buf, off, end, vlan)
        if version == 6:
            return self._ipv6(ts, buf, off, end, vlan)
        self._error("bad_ip_version")
        return None

    def _ipv4(self, ts: float, buf: bytes, off: int, end: int, vlan: int | None) -> Packet | None:
        if end - off < 20:
            self._error("truncated_ip_header")
            return None
        b0 = buf[off]
        ihl = (b0 & 0x0F) << 2
        if b0 >> 4 != 4 or ihl < 20:
            self._error("bad_ip_header")
            return None
        total = (buf[off + 2] << 8) | buf[off + 3]
        if total < ihl:
            if total == 0:  # TCP segmentation offload on the capturing host: trust the capture length
                total = end - off
            else:
                self._error("bad_ip_length")
                return None
        if end - off < ihl:
            self._error("truncated_ip_header")
            return None
        # Ethernet pads short frames: the IP total length, not the frame, says where the packet ends.
        l4_end = off + total if off + total < end else end
        proto = buf[off + 9]
        src = _ntoa(buf[off + 12 : off + 16])
        dst = _ntoa(buf[off + 16 : off + 20])
        frag = (buf[off + 6] << 8) | buf[off + 7]
        if frag & 0x3FFF:  # MF set or a non-zero offset
            key = (4, src, dst, (buf[off + 4] << 8) | buf[off + 5], proto, vlan)
            data = self._reassemble(
                key, ts, (frag & 0x1FFF) << 3, bool(frag & 0x2000), bytes(buf[off + ihl : l4_end]), proto, ihl
            )
            if data is None:
                return None
            return self._l4(ts, 4, src, dst, proto, data, 0, len(data), ihl + len(data), vlan, True)
        return self._l4(ts, 4, src, dst, proto, buf, off + ihl, l4_end, total, vlan, False)

    def _ipv6(self, ts: float, buf: bytes, off: int, end: int, vlan: int | None) -> Packet | None:
        if end - off < 40:
            self._error("truncated_ip_header")
            return None
        if buf[off] >> 4 != 6:
            self._error("bad_ip_header")
            return None
        plen = (buf[off + 4] << 8) | buf[off + 5]
        nxt = buf[off + 6]
        src = _ntop(_AF6, buf[off + 8 : off + 24])
        dst = _ntop(_AF6, buf[off + 24 : off + 40])
        total = 40 + plen
        l4_end = off + total if plen and off + total < end else end
        pos = off + 40
        while nxt in _IPV6_EXT or nxt == 44 or nxt == 51:
            if l4_end - pos < 8:
                self._error("truncated_ipv6_extension")
                return None
            if nxt == 44:  # fragment header
                field = (buf[pos + 2] << 8) | buf[pos + 3]
                ident = _U32(buf, pos + 4)[0]
                frag_next = buf[pos]
                pos += 8
                key = (6, src, dst, ident, vlan)
                unfrag = pos - off - 8  # bytes of IPv6 header + extensions before the fragment header
                data = self._reassemble(
                    key, ts, field & 0xFFF8, bool(field & 1), bytes(buf[pos:l4_end]), frag_next, unfrag
                )
                if data is None:
                    return None
                header = self._frags_done_header
                return self._ipv6_upper(
                    ts, src, dst, header[0], data, 0, len(data), header[1] + len(data), vlan
                )
            ext_len = (buf[pos + 1] + 2) * 4 if nxt == 51 else (buf[pos + 1] + 1) * 8
            nxt = buf[pos]
            pos += ext_len
        if pos > l4_end:
            self._error("truncated_ipv6_extension")
            return None
        return self._l4(ts, 6, src, dst, nxt, buf, pos, l4_end, total, vlan, False)

    def _ipv6_upper(
        self,
        ts: float,
        src: str,
        dst: str,
        proto: int,
        data: bytes,
        pos: int,
        end: int,
        length: int,
        vlan: int | None,
    ) -> Packet | None:
        # The reassembled payload may still start with extension headers (e.g. destination options).
        while proto in _IPV6_EXT or proto == 51:
            if end - pos < 8:
                self._error("truncated_ipv6_extension")
                return None
            ext_len = (data[pos + 1] + 2) * 4 if proto == 51 else (data[pos + 1] + 1) * 8
            proto = data[pos]
            pos += ext_len
        return self._l4(ts, 6, src, dst, proto, data, pos, end, length, vlan, True)

    _frags_done_header: tuple[int, int] = (0, 0)

    def _reassemble(
        self,
        key: tuple[object, ...],
        ts: float,
        offset: int,
        more: bool,
        data: bytes,
        proto: int,
        header_len: int,
    ) -> bytes | None:
        """Hold a fragment; return the datagram's payload when it is complete (else None)."""
        entry = self._frags.get(key)
        if entry is None:
            if ts - self._frag_sweep > _FRAG_TIMEOUT:  # datagrams whose other parts never came
                self._frag_sweep = ts
                self._expire_fragments(ts)
            if len(self._frags) >= _MAX_FRAG_DATAGRAMS:
                self._expire_fragments(ts, force=True)
            entry = self._frags[key] = _Fragments(ts)
        elif ts - entry.first_ts > _FRAG_TIMEOUT:
            self.fragments_dropped += len(entry.parts)
            entry = self._frags[key] = _Fragments(ts)
        if offset == 0:
            entry.header = (proto, header_len)
        if not more:
            entry.total = offset + len(data)
        if offset not in entry.parts:  # first copy wins, as most stacks do
            entry.parts[offset] = data
            entry.size += len(data)
        if entry.size > _MAX_FRAG_BYTES or (entry.total >= 0 and entry.total > _MAX_FRAG_BYTES):
            self.fragments_dropped += len(entry.parts)
            self._error("fragment_overflow")
            del self._frags[key]
            return None
        if entry.total < 0 or entry.header is None:
            return None
        out = bytearray()
        for start in sorted(entry.parts):
            if start > len(out):
                return None  # a hole: wait for the missing part
            part = entry.parts[start]
            if start + len(part) > len(out):
                out += part[len(out) - start :]
        if len(out) < entry.total:
            return None
        del self._frags[key]
        self.fragments_reassembled += 1
        self._frags_done_header = entry.header
        return bytes(out[: entry.total])

    def _expire_fragments(self, now: float, force: bool = False) -> None:
        for key, entry in list(self._frags.items()):
            if force or now - entry.first_ts > _FRAG_TIMEOUT:
                self.fragments_dropped += len(entry.parts)
                del self._frags[key]
                if force and len(self._frags) < _MAX_FRAG_DATAGRAMS // 2:
                    break

    def _l4(
        self,
        ts: float,
        version: int,
        src: str,
        dst: str,
        proto: int,
        buf: bytes,
        pos: int,
        end: int,
        length: int,
        vlan: int | None,
        fragmented: bool,
    ) -> Packet | None:
        avail = end - pos
        if proto == 6:
            if avail < 20:
                self._error("truncated_tcp_header")
                return None
            sport, dport, seq, ack = _TCP_SEQ(buf, pos)
            doff = (buf[pos + 12] >> 4) << 2
            if doff < 20:
                self._error("bad_tcp_header")
                return None
            return Packet(
                ts, version, src, dst, 6, sport, dport, buf[pos + 13], length,
                bytes(buf[pos + doff : end]) if avail > doff else b"", vlan, None, None, seq, ack, fragmented,
            )  # fmt: skip
        if proto == 17:
            if avail < 8:
                self._error("truncated_udp_header")
                return None
            return Packet(
                ts, version, src, dst, 17, (buf[pos] << 8) | buf[pos + 1], (buf[pos + 2] << 8) | buf[pos + 3],
                0, length, bytes(buf[pos + 8 : end]), vlan, None, None, 0, 0, fragmented,
            )  # fmt: skip
        if proto == 1 or proto == 58:
            if avail < 4:
                self._error("truncated_icmp_header")
                return None
            return Packet(
                ts,
                version,
                src,
                dst,
                proto,
                0,
                0,
                0,
                length,
                b"",
                vlan,
                buf[pos],
                buf[pos + 1],
                0,
                0,
                fragmented,
            )
        if proto == 132 and avail >= 4:  # SCTP: ports only, they are part of the flow key
            return Packet(
                ts, version, src, dst, 132, (buf[pos] << 8) | buf[pos + 1], (buf[pos + 2] << 8) | buf[pos + 3],
                0, length, b"", vlan, None, None, 0, 0, fragmented,
            )  # fmt: skip
        return Packet(ts, version, src, dst, proto, 0, 0, 0, length, b"", vlan, None, None, 0, 0, fragmented)


_default_decoder: FrameDecoder | None = None


def decode_frame(
    linktype: int, ts: float, frame: bytes, decoder: FrameDecoder | None = None
) -> Packet | None:
    """Decode one captured frame (live capture). Without ``decoder`` a process-wide one is used."""
    global _default_decoder
    if decoder is None:
        if _default_decoder is None:
            _default_decoder = FrameDecoder()
        decoder = _default_decoder
    return decoder.decode(linktype, ts, frame)
