"""Capture files: classic pcap and pcapng read into decoded packets, with errors that keep what was read.

Responsible for reading classic pcap (micro- and nanosecond, either byte order) and
pcapng (section/interface/enhanced/simple/obsolete packet blocks, ``if_tsresol``)
in large chunks and handing each frame to a :class:`~.packets.FrameDecoder`.

API (re-exported by :mod:`.packets`):

- ``iter_pcap(path, *, on_progress=None, decoder=None) -> Iterator[Packet]``:
  ``on_progress(bytes_read, total_bytes)`` is called about once per MiB. A truncated
  or corrupt file raises :class:`PcapError` (file, packet number, byte offset,
  reason) only after every packet before the damage was yielded, so the caller
  keeps what was read.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import cython

from hcm_soc.collectors.network.packet import Packet
from hcm_soc.errors import HcmSocError

if TYPE_CHECKING:
    from hcm_soc.collectors.network.packets import FrameDecoder

__all__ = ["PcapError", "iter_pcap"]

_LINKTYPE_ETHERNET = 1
_MAX_CHUNK = 1 << 20
_MAX_RECORD = 1 << 18  # no link type we read has frames this large: a bigger length is corruption
_TCP_SEQ = struct.Struct("!HHII").unpack_from
_PORTS = struct.Struct("!HH").unpack_from


@cython.cfunc
@cython.inline
@cython.locals(buf=bytes, pos=cython.Py_ssize_t, a=cython.ulong, b=cython.ulong)
@cython.returns(cython.ulong)
def _be16(buf: bytes, pos: int) -> int:
    a = buf[pos]
    b = buf[pos + 1]
    return (a << 8) | b


@cython.cfunc
@cython.inline
@cython.locals(
    buf=bytes, pos=cython.Py_ssize_t, a=cython.ulong, b=cython.ulong, c=cython.ulong, d=cython.ulong
)
@cython.returns(cython.ulong)
def _be32(buf: bytes, pos: int) -> int:
    a = buf[pos]
    b = buf[pos + 1]
    c = buf[pos + 2]
    d = buf[pos + 3]
    return (a << 24) | (b << 16) | (c << 8) | d


@cython.cfunc
@cython.inline
@cython.locals(
    buf=bytes, pos=cython.Py_ssize_t, a=cython.ulong, b=cython.ulong, c=cython.ulong, d=cython.ulong
)
@cython.returns(cython.ulong)
def _le32(buf: bytes, pos: int) -> int:
    a = buf[pos]
    b = buf[pos + 1]
    c = buf[pos + 2]
    d = buf[pos + 3]
    return (d << 24) | (c << 16) | (b << 8) | a


@cython.cfunc
@cython.locals(cache=dict, addr=cython.ulong)
def _dotted(cache: dict[int, str], addr: int) -> str:
    """The dotted quad of an IPv4 address, kept in ``cache`` (bounded like the decoder's)."""
    if len(cache) >= 65_536:
        cache.clear()
    text = cache[addr] = f"{addr >> 24}.{(addr >> 16) & 255}.{(addr >> 8) & 255}.{addr & 255}"
    return text


class PcapError(HcmSocError):
    """A capture file cannot be read (further): says which file, where and why."""

    def __init__(self, path: Path | str, reason: str, *, packet: int | None = None, offset: int = 0) -> None:
        self.path = str(path)
        self.reason = reason
        self.packet = packet
        self.offset = offset
        where = f"packet {packet} at byte offset {offset}" if packet is not None else f"byte offset {offset}"
        kept = f"; the {packet - 1} packet(s) before it were read" if packet else ""
        super().__init__(
            f"{self.path}: {where}: {reason}{kept}. "
            "Check that the capture was copied completely (a capture still being written ends "
            "mid-packet); `capinfos`/`editcap` can show and cut the damaged part."
        )


_PCAP_MAGICS = {  # magic -> (byte order, timestamp fraction units per second)
    b"\xd4\xc3\xb2\xa1": ("<", 1e6),
    b"\xa1\xb2\xc3\xd4": (">", 1e6),
    b"\x4d\x3c\xb2\xa1": ("<", 1e9),
    b"\xa1\xb2\x3c\x4d": (">", 1e9),
}
_PCAPNG_SHB = b"\x0a\x0d\x0d\x0a"


class _Chunks:
    """A read buffer over a file that hands out contiguous byte ranges and tracks file offsets."""

    def __init__(self, f: object, total: int, on_progress: Callable[[int, int], None] | None) -> None:
        self.f = f
        self.total = total
        self.buf = b""
        self.pos = 0  # position in buf
        self.base = 0  # file offset of buf[0]
        self.on_progress = on_progress

    @property
    def offset(self) -> int:
        return self.base + self.pos

    def ensure(self, n: int) -> bool:
        """Make n bytes available at pos; False at end of file (fewer bytes left)."""
        if len(self.buf) - self.pos >= n:
            return True
        rest = self.buf[self.pos :]
        self.base += self.pos
        more = self.f.read(max(_MAX_CHUNK, n - len(rest)))  # type: ignore[attr-defined]
        self.buf = rest + more
        self.pos = 0
        if self.on_progress is not None and more:
            self.on_progress(self.base + len(self.buf), self.total)
        return len(self.buf) >= n

    def remaining(self) -> int:
        return len(self.buf) - self.pos


def iter_pcap(
    path: Path,
    *,
    on_progress: Callable[[int, int], None] | None = None,
    decoder: FrameDecoder | None = None,
) -> Iterator[Packet]:
    """Yield the IP packets of a pcap or pcapng file; raise :class:`PcapError` after the last good one."""
    from hcm_soc.collectors.network.packets import FrameDecoder  # at run time: packets imports this module

    path = Path(path)
    if decoder is None:
        decoder = FrameDecoder()
    try:
        total = os.path.getsize(path)
        f = open(path, "rb")  # noqa: SIM115 - closed in finally, the generator may stop early
    except OSError as exc:
        raise PcapError(path, f"cannot open the capture: {exc.strerror or exc}") from exc
    try:
        chunks = _Chunks(f, total, on_progress)
        if not chunks.ensure(4):
            raise PcapError(path, f"file too short to be a capture ({total} bytes)")
        magic = chunks.buf[:4]
        if magic in _PCAP_MAGICS:
            yield from _read_pcap(path, chunks, decoder)
        elif magic == _PCAPNG_SHB:
            yield from _read_pcapng(path, chunks, decoder)
        else:
            raise PcapError(
                path,
                f"not a pcap or pcapng file (magic bytes {magic.hex()}); "
                "compressed captures must be uncompressed first",
            )
        if on_progress is not None:
            on_progress(total, total)
    finally:
        f.close()


@cython.locals(
    buf=bytes,
    pos=cython.Py_ssize_t,
    size=cython.Py_ssize_t,
    start=cython.Py_ssize_t,
    stop=cython.Py_ssize_t,
    caplen=cython.Py_ssize_t,
    ip=cython.Py_ssize_t,
    l4=cython.Py_ssize_t,
    l4_end=cython.Py_ssize_t,
    ihl=cython.Py_ssize_t,
    total=cython.Py_ssize_t,
    doff=cython.Py_ssize_t,
    b0=cython.int,
    proto=cython.int,
    number=cython.long,
    sec=cython.ulong,
    frac=cython.ulong,
    sport=cython.long,
    dport=cython.long,
    seq=cython.ulong,
    ack=cython.ulong,
    little=cython.bint,
    ts=cython.double,
    resolution=cython.double,
    ethernet=cython.bint,
    made=Packet,
    ips=dict,  # the decoder's address cache: a C dict lookup, not a `.get` method call
    key=bytes,
    v4=dict,
    addr=cython.ulong,
)
def _read_pcap(path: Path, c: _Chunks, decoder: FrameDecoder) -> Iterator[Packet]:
    if not c.ensure(24):
        raise PcapError(path, "truncated pcap file header (24 bytes expected)")
    endian, resolution = _PCAP_MAGICS[c.buf[:4]]
    linktype = struct.unpack_from(endian + "I", c.buf, 20)[0] & 0x0FFFFFFF
    c.pos = 24
    rec = struct.Struct(endian + "IIII").unpack_from
    ethernet = linktype == _LINKTYPE_ETHERNET
    little = endian == "<"
    slow = decoder._decode
    ips = decoder._ips
    ip_string = decoder._ip_string
    v4: dict[int, str] = {}  # compiled: IPv4 address (as an integer) -> its dotted quad

    number = 0
    while True:
        # Records wholly inside the buffer, in a tight loop with the common frame (Ethernet II,
        # unfragmented IPv4, TCP/UDP) decoded inline: the same code as FrameDecoder._ethernet_fast,
        # repeated here because one call less per packet is a tenth of the time of a whole read.
        buf = c.buf
        pos = c.pos
        size = len(buf)
        while size - pos >= 16:
            if cython.compiled:  # byte reads are a few C instructions; struct builds a tuple
                if little:
                    sec = _le32(buf, pos)
                    frac = _le32(buf, pos + 4)
                    caplen = _le32(buf, pos + 8)
                else:
                    sec = _be32(buf, pos)
                    frac = _be32(buf, pos + 4)
                    caplen = _be32(buf, pos + 8)
            else:
                sec, frac, caplen, _wirelen = rec(buf, pos)
            start = pos + 16
            stop = start + caplen
            if stop > size or caplen > _MAX_RECORD:
                break
            number += 1
            pos = stop
            ts = sec + frac / resolution
            if ethernet:
                ip = start + 14
                if stop - ip >= 28 and buf[start + 12] == 8 and buf[start + 13] == 0:
                    b0 = buf[ip]
                    if b0 >> 4 == 4 and not (buf[ip + 6] & 0x3F or buf[ip + 7]):
                        ihl = (b0 & 0x0F) << 2
                        total = (buf[ip + 2] << 8) | buf[ip + 3]
                        l4 = ip + ihl
                        l4_end = ip + total
                        if l4_end > stop:
                            l4_end = stop
                        proto = buf[ip + 9]
                        if ihl >= 20 and total >= ihl:
                            # compiled, addresses are cached by their integer: no bytes object, no hashing
                            if cython.compiled:
                                addr = _be32(buf, ip + 12)
                                src = v4.get(addr)
                                if src is None:
                                    src = _dotted(v4, addr)
                                addr = _be32(buf, ip + 16)
                                dst = v4.get(addr)
                                if dst is None:
                                    dst = _dotted(v4, addr)
                            else:
                                key = buf[ip + 12 : ip + 16]
                                src = ips.get(key)
                                if src is None:
                                    src = ip_string(key)
                                key = buf[ip + 16 : ip + 20]
                                dst = ips.get(key)
                                if dst is None:
                                    dst = ip_string(key)
                            if proto == 6 and l4_end - l4 >= 20:
                                doff = (buf[l4 + 12] >> 4) << 2
                                if doff >= 20:
                                    if cython.compiled:
                                        sport = _be16(buf, l4)
                                        dport = _be16(buf, l4 + 2)
                                        seq = _be32(buf, l4 + 4)
                                        ack = _be32(buf, l4 + 8)
                                    else:
                                        sport, dport, seq, ack = _TCP_SEQ(buf, l4)
                                    if cython.compiled:  # the struct filled in place: no argument tuple
                                        made = Packet.__new__(Packet)
                                        made.ts = ts
                                        made.ip_version = 4
                                        made.src_ip = src
                                        made.dst_ip = dst
                                        made.proto = 6
                                        made.src_port = sport
                                        made.dst_port = dport
                                        made.tcp_flags = buf[l4 + 13]
                                        made.length = total
                                        made.payload = cython.cast(cython.p_char, buf)[l4 + doff : l4_end]
                                        made.seq = seq
                                        made.ack = ack
                                        yield made
                                    else:
                                        yield Packet(
                                            ts, 4, src, dst, 6, sport, dport, buf[l4 + 13], total,
                                            buf[l4 + doff : l4_end], None, None, None, seq, ack, False,
                                        )  # fmt: skip
                                    continue
                            elif proto == 17 and l4_end - l4 >= 8:
                                if cython.compiled:
                                    sport = _be16(buf, l4)
                                    dport = _be16(buf, l4 + 2)
                                else:
                                    sport, dport = _PORTS(buf, l4)
                                if cython.compiled:
                                    made = Packet.__new__(Packet)
                                    made.ts = ts
                                    made.ip_version = 4
                                    made.src_ip = src
                                    made.dst_ip = dst
                                    made.proto = 17
                                    made.src_port = sport
                                    made.dst_port = dport
                                    made.length = total
                                    made.payload = cython.cast(cython.p_char, buf)[l4 + 8 : l4_end]
                                    yield made
                                else:
                                    yield Packet(
                                        ts, 4, src, dst, 17, sport, dport, 0, total, buf[l4 + 8 : l4_end],
                                        None, None, None, 0, 0, False,
                                    )  # fmt: skip
                                continue
            p = slow(linktype, ts, buf, start, stop)
            if p is not None:
                yield p
        c.pos = pos  # the inner loop keeps the position in a local; the refill below needs it
        # A record that crosses the end of the buffer (or a damaged one): refill, check, decode.
        if not c.ensure(16):
            if c.remaining():
                raise PcapError(
                    path,
                    f"truncated record header ({c.remaining()} of 16 bytes)",
                    packet=number + 1,
                    offset=c.offset,
                )
            return
        number += 1
        sec, frac, caplen, _wirelen = rec(c.buf, c.pos)
        if caplen > _MAX_RECORD:
            raise PcapError(
                path, f"corrupt record header: captured length {caplen} bytes", packet=number, offset=c.offset
            )
        if not c.ensure(16 + caplen):
            raise PcapError(
                path,
                f"truncated packet data ({c.remaining() - 16} of {caplen} bytes)",
                packet=number,
                offset=c.offset,
            )
        start = c.pos + 16
        c.pos = start + caplen
        p = slow(linktype, sec + frac / resolution, c.buf, start, start + caplen)
        if p is not None:
            yield p


def _read_pcapng(path: Path, c: _Chunks, decoder: FrameDecoder) -> Iterator[Packet]:
    endian = "<"
    interfaces: list[tuple[int, float]] = []  # (linktype, timestamp units per second)
    decode = decoder._decode
    fast = decoder._ethernet_fast
    number = 0
    while True:
        if not c.ensure(12):
            if c.remaining():
                raise PcapError(
                    path,
                    f"truncated block header ({c.remaining()} bytes)",
                    packet=number + 1,
                    offset=c.offset,
                )
            return
        head = c.buf[c.pos : c.pos + 4]
        if head == _PCAPNG_SHB:
            bom = c.buf[c.pos + 8 : c.pos + 12]
            if bom == b"\x4d\x3c\x2b\x1a":
                endian = "<"
            elif bom == b"\x1a\x2b\x3c\x4d":
                endian = ">"
            else:
                raise PcapError(path, "corrupt pcapng section header (byte-order magic)", offset=c.offset)
            interfaces = []
        btype, blen = struct.unpack_from(endian + "II", c.buf, c.pos)
        if blen < 12 or blen % 4 or blen > _MAX_RECORD + 64:
            raise PcapError(
                path,
                f"corrupt pcapng block (type {btype:#x}, length {blen})",
                packet=number + 1,
                offset=c.offset,
            )
        if not c.ensure(blen):
            raise PcapError(
                path,
                f"truncated pcapng block (type {btype:#x}: {c.remaining()} of {blen} bytes)",
                packet=number + 1,
                offset=c.offset,
            )
        body = c.pos + 8
        block_end = c.pos + blen - 4
        offset = c.offset
        c.pos += blen
        if btype == 1:  # interface description
            linktype = struct.unpack_from(endian + "H", c.buf, body)[0]
            interfaces.append((linktype, _if_tsresol(c.buf, body + 8, block_end, endian)))
        elif btype == 6 or btype == 2:  # enhanced / obsolete packet block
            number += 1
            if btype == 6:
                iface, hi, lo, caplen, _wire = struct.unpack_from(endian + "IIIII", c.buf, body)
                data = body + 20
            else:
                iface, _drops, hi, lo, caplen, _wire = struct.unpack_from(endian + "HHIIII", c.buf, body)
                data = body + 20
            if iface >= len(interfaces):
                raise PcapError(
                    path,
                    f"packet names interface {iface}, which is not described",
                    packet=number,
                    offset=offset,
                )
            if data + caplen > block_end:
                raise PcapError(
                    path, f"captured length {caplen} exceeds its block", packet=number, offset=offset
                )
            linktype, unit = interfaces[iface]
            if linktype == _LINKTYPE_ETHERNET:
                p = fast(((hi << 32) | lo) / unit, c.buf, data, data + caplen)
            else:
                p = decode(linktype, ((hi << 32) | lo) / unit, c.buf, data, data + caplen)
            if p is not None:
                yield p
        elif btype == 3:  # simple packet block: interface 0, no timestamp
            number += 1
            if not interfaces:
                raise PcapError(
                    path, "simple packet block before any interface", packet=number, offset=offset
                )
            wire = struct.unpack_from(endian + "I", c.buf, body)[0]
            caplen = min(wire, block_end - body - 4)
            p = decode(interfaces[0][0], 0.0, c.buf, body + 4, body + 4 + caplen)
            if p is not None:
                yield p
        # other blocks (name resolution, statistics, custom…) carry nothing we analyse


def _if_tsresol(buf: bytes, pos: int, end: int, endian: str) -> float:
    while pos + 4 <= end:
        code, length = struct.unpack_from(endian + "HH", buf, pos)
        if code == 0:
            break
        if code == 9 and length >= 1:
            v = buf[pos + 4]
            return 2.0 ** (v & 0x7F) if v & 0x80 else 10.0**v
        pos += 4 + ((length + 3) & ~3)
    return 1e6
