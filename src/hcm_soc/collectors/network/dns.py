"""DNS metadata from raw UDP/TCP payloads, as ECS ``network.dns`` events.

Responsible for decoding DNS messages with ``struct`` (no scapy in the hot path),
pairing queries with responses Zeek-style (one event per transaction, unanswered
queries emitted on timeout) and counting malformed messages instead of raising.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from collections.abc import Callable
from typing import Any

import cython

from hcm_soc.collectors.network.ecs import iso
from hcm_soc.collectors.network.packet import cut

__all__ = [
    "DnsAnswer",
    "DnsMessage",
    "DnsPairing",
    "DnsQuestion",
    "parse_dns",
    "parse_dns_tcp",
    "split_domain",
]

TYPE_NAMES = {
    1: "A", 2: "NS", 5: "CNAME", 6: "SOA", 12: "PTR", 15: "MX", 16: "TXT", 28: "AAAA",
    33: "SRV", 41: "OPT", 43: "DS", 46: "RRSIG", 47: "NSEC", 48: "DNSKEY", 65: "HTTPS", 255: "ANY",
}  # fmt: skip
CLASS_NAMES = {1: "IN", 3: "CH", 4: "HS", 255: "ANY"}
RCODE_NAMES = {
    0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED",
    6: "YXDOMAIN", 7: "YXRRSET", 8: "NXRRSET", 9: "NOTAUTH", 10: "NOTZONE",
}  # fmt: skip
OPCODE_NAMES = {0: "QUERY", 1: "IQUERY", 2: "STATUS", 4: "NOTIFY", 5: "UPDATE"}
# Second-level labels under which registrations happen (e.g. example.com.vn).
_TWO_LEVEL_SLDS = frozenset(
    {"com", "net", "org", "gov", "edu", "ac", "co", "info", "biz", "int", "pro", "health"}
)
_TWO_LEVEL_TLDS = frozenset(
    {"vn", "uk", "au", "jp", "kr", "cn", "sg", "th", "id", "my", "nz", "br", "in", "tw"}
)
_MAX_POINTERS = 64  # more jumps than this in one name means a loop
_HEADER_FLAGS = (
    ("AA", 0x0400),
    ("TC", 0x0200),
    ("RD", 0x0100),
    ("RA", 0x0080),
    ("AD", 0x0020),
    ("CD", 0x0010),
)
_FLAG_MASK = sum(bit for _, bit in _HEADER_FLAGS)
_FLAG_NAMES: dict[int, tuple[str, ...]] = {}  # at most 64 combinations
_HEADER = struct.Struct("!HHHHHH").unpack_from
_QUESTION = struct.Struct("!HH").unpack_from
_RECORD = struct.Struct("!HHIH").unpack_from
_ntoa = socket.inet_ntoa
_DOMAINS: dict[str, dict[str, str]] = {}  # split_domain results: few names, asked again and again


class DnsFormatError(ValueError):
    """Internal: a message does not decode; callers of the public API never see it."""


# The decoded message. Plain classes with slots, read-only by convention (compiled, by type:
# dns.pxd makes them C structs with read-only fields, built without a frozen dataclass's
# per-field object.__setattr__, a third of the cost of decoding a small message).


@cython.no_gc  # strings, numbers and tuples of these: no cycles
@cython.freelist(16)  # created and freed per connection or message: reuse the memory
@cython.cclass
class DnsQuestion:
    __slots__ = ("name", "qclass", "qtype")

    def __init__(self, name: str, qtype: int, qclass: int) -> None:
        self.name = name
        self.qtype = qtype
        self.qclass = qclass

    def __repr__(self) -> str:
        return f"DnsQuestion(name={self.name!r}, qtype={self.qtype}, qclass={self.qclass})"


@cython.no_gc
@cython.freelist(16)  # created and freed per connection or message: reuse the memory
@cython.cclass
class DnsAnswer:
    __slots__ = ("data", "name", "raw_length", "rclass", "rtype", "ttl")

    def __init__(
        self, name: str, rtype: int, rclass: int, ttl: int, data: str | None, raw_length: int
    ) -> None:
        self.name = name
        self.rtype = rtype
        self.rclass = rclass
        self.ttl = ttl
        self.data = data  # decoded rdata, None for types we do not decode
        self.raw_length = raw_length

    def __repr__(self) -> str:
        return (
            f"DnsAnswer(name={self.name!r}, rtype={self.rtype}, rclass={self.rclass}, ttl={self.ttl}, "
            f"data={self.data!r}, raw_length={self.raw_length})"
        )


@cython.no_gc
@cython.freelist(16)  # created and freed per connection or message: reuse the memory
@cython.cclass
class DnsMessage:
    __slots__ = (
        "additional_count",
        "answers",
        "authority_count",
        "flags",
        "id",
        "is_response",
        "opcode",
        "questions",
        "rcode",
    )

    def __init__(
        self,
        id: int,
        is_response: bool,
        opcode: int,
        rcode: int,
        flags: tuple[str, ...],
        questions: tuple[DnsQuestion, ...],
        answers: tuple[DnsAnswer, ...],
        authority_count: int = 0,
        additional_count: int = 0,
    ) -> None:
        self.id = id
        self.is_response = is_response
        self.opcode = opcode
        self.rcode = rcode
        self.flags = flags
        self.questions = questions
        self.answers = answers
        self.authority_count = authority_count
        self.additional_count = additional_count

    def __repr__(self) -> str:
        return (
            f"DnsMessage(id={self.id}, is_response={self.is_response}, opcode={self.opcode}, rcode={self.rcode}, "
            f"questions={self.questions!r}, answers={self.answers!r})"
        )


def _read_name(buf: bytes, offset: int) -> tuple[str, int]:
    """Decode a possibly compressed name; returns (name, offset after the name in place).
    Labels are joined as bytes and decoded once: the "." between them ends any UTF-8
    sequence, so this decodes (and escapes bad bytes) exactly as label by label would."""
    labels: list[bytes] = []
    end = -1
    jumps = 0
    pos = offset
    total = 0
    size = len(buf)
    while True:
        if pos >= size:
            raise DnsFormatError("name runs past the message")
        length = buf[pos]
        if length == 0:
            if end < 0:
                end = pos + 1
            break
        if length < 0x40:
            stop = pos + 1 + length
            if stop > size:
                raise DnsFormatError("truncated label")
            total += length + 1
            if total > 255:
                raise DnsFormatError("name too long")
            labels.append(cut(buf, pos + 1, stop))
            pos = stop
            continue
        if length & 0xC0 != 0xC0:
            raise DnsFormatError("reserved label type")
        if pos + 1 >= size:
            raise DnsFormatError("truncated pointer")
        jumps += 1
        if jumps > _MAX_POINTERS:
            raise DnsFormatError("compression loop")
        if end < 0:
            end = pos + 2
        pos = ((length & 0x3F) << 8) | buf[pos + 1]
    return b".".join(labels).decode("utf-8", "backslashreplace"), end


def _rdata(buf: bytes, rtype: int, start: int, length: int) -> str | None:
    rd = cut(buf, start, start + length)
    if rtype == 1:
        if length != 4:
            raise DnsFormatError("bad A length")
        if cython.compiled:  # C byte loads and integer formatting instead of a socket call
            return f"{buf[start]}.{buf[start + 1]}.{buf[start + 2]}.{buf[start + 3]}"
        return _ntoa(rd)
    if rtype == 28:
        if length != 16:
            raise DnsFormatError("bad AAAA length")
        return str(ipaddress.IPv6Address(rd))
    if rtype in (2, 5, 12):
        return _read_name(buf, start)[0]
    if rtype == 15:
        (pref,) = struct.unpack_from("!H", buf, start)
        return f"{pref} {_read_name(buf, start + 2)[0]}"
    if rtype == 16:
        parts, pos = [], 0
        while pos < length:
            n = rd[pos]
            chunk = rd[pos + 1 : pos + 1 + n]
            if len(chunk) != n:
                raise DnsFormatError("truncated TXT")
            parts.append(chunk.decode("utf-8", "backslashreplace"))
            pos += 1 + n
        return " ".join(parts)
    if rtype == 6:
        mname, pos = _read_name(buf, start)
        rname, pos = _read_name(buf, pos)
        serial, refresh, retry, expire, minimum = struct.unpack_from("!IIIII", buf, pos)
        return f"{mname} {rname} {serial} {refresh} {retry} {expire} {minimum}"
    if rtype == 33:
        prio, weight, port = struct.unpack_from("!HHH", buf, start)
        return f"{prio} {weight} {port} {_read_name(buf, start + 6)[0]}"
    return None


def _parse(buf: bytes) -> DnsMessage:
    # Compiled, the header fields are byte loads and the message objects are filled in place:
    # no struct tuples, argument tuples or keyword parsing (a third of the parser's time).
    if len(buf) < 12:
        raise DnsFormatError("short header")
    if cython.compiled:
        ident = (buf[0] << 8) | buf[1]
        flags = (buf[2] << 8) | buf[3]
        qd = (buf[4] << 8) | buf[5]
        an = (buf[6] << 8) | buf[7]
        ns = (buf[8] << 8) | buf[9]
        ar = (buf[10] << 8) | buf[11]
    else:
        ident, flags, qd, an, ns, ar = _HEADER(buf, 0)
    pos = 12
    questions = []
    for _ in range(qd):
        name, pos = _read_name(buf, pos)
        if pos + 4 > len(buf):
            raise DnsFormatError("truncated question")
        if cython.compiled:
            q = DnsQuestion.__new__(DnsQuestion)
            q.name = name
            q.qtype = (buf[pos] << 8) | buf[pos + 1]
            q.qclass = (buf[pos + 2] << 8) | buf[pos + 3]
            questions.append(q)
        else:
            qtype, qclass = _QUESTION(buf, pos)
            questions.append(DnsQuestion(name, qtype, qclass))
        pos += 4
    answers = []
    for _ in range(an):
        name, pos = _read_name(buf, pos)
        if pos + 10 > len(buf):
            raise DnsFormatError("truncated record header")
        if cython.compiled:
            rtype = (buf[pos] << 8) | buf[pos + 1]
            rclass = (buf[pos + 2] << 8) | buf[pos + 3]
            ttl = (buf[pos + 4] << 24) | (buf[pos + 5] << 16) | (buf[pos + 6] << 8) | buf[pos + 7]
            rdlen = (buf[pos + 8] << 8) | buf[pos + 9]
        else:
            rtype, rclass, ttl, rdlen = _RECORD(buf, pos)
        pos += 10
        if pos + rdlen > len(buf):
            raise DnsFormatError("truncated rdata")
        if cython.compiled:
            a = DnsAnswer.__new__(DnsAnswer)
            a.name = name
            a.rtype = rtype
            a.rclass = rclass
            a.ttl = ttl
            a.data = _rdata(buf, rtype, pos, rdlen)
            a.raw_length = rdlen
            answers.append(a)
        else:
            answers.append(DnsAnswer(name, rtype, rclass, ttl, _rdata(buf, rtype, pos, rdlen), rdlen))
        pos += rdlen
    if cython.compiled:
        msg = DnsMessage.__new__(DnsMessage)
        msg.id = ident
        msg.is_response = bool(flags & 0x8000)
        msg.opcode = (flags >> 11) & 0xF
        msg.rcode = flags & 0xF
        msg.flags = _header_flags(flags)
        msg.questions = tuple(questions)
        msg.answers = tuple(answers)
        msg.authority_count = ns
        msg.additional_count = ar
        return msg
    return DnsMessage(
        id=ident,
        is_response=bool(flags & 0x8000),
        opcode=(flags >> 11) & 0xF,
        rcode=flags & 0xF,
        flags=_header_flags(flags),
        questions=tuple(questions),
        answers=tuple(answers),
        authority_count=ns,
        additional_count=ar,
    )


def _header_flags(flags: int) -> tuple[str, ...]:
    cache = _FLAG_NAMES  # a typed local when compiled: a C dict lookup
    names = cache.get(flags & _FLAG_MASK)
    if names is None:
        names = cache[flags & _FLAG_MASK] = _flag_names(flags & _FLAG_MASK)
    return names


def _flag_names(flags: int) -> tuple[str, ...]:
    return tuple(n for n, bit in _HEADER_FLAGS if flags & bit)


def parse_dns(payload: bytes) -> DnsMessage | None:
    """Decode one DNS message; None when it is malformed (never raises)."""
    try:
        return _parse(payload)
    except (DnsFormatError, struct.error, ValueError, IndexError):
        return None


def parse_dns_tcp(stream_bytes: bytes) -> list[DnsMessage]:
    """Decode length-prefixed DNS messages of a TCP stream; stops at the first bad or partial one."""
    out: list[DnsMessage] = []
    pos = 0
    while pos + 2 <= len(stream_bytes):
        (length,) = struct.unpack_from("!H", stream_bytes, pos)
        chunk = stream_bytes[pos + 2 : pos + 2 + length]
        if len(chunk) != length:
            break
        msg = parse_dns(chunk)
        if msg is None:
            break
        out.append(msg)
        pos += 2 + length
    return out


def split_domain(name: str) -> dict[str, str]:
    """registered_domain / subdomain / top_level_domain by a last-labels heuristic (no PSL)."""
    return dict(_domain_parts(name))


def _domain_parts(name: str) -> dict[str, str]:
    """split_domain, cached; the caller must not change the dict."""
    cache = _DOMAINS  # a typed local when compiled: C dict calls
    parts = cache.get(name)
    if parts is None:
        if len(cache) >= 8192:
            cache.clear()
        parts = cache[name] = _split_domain(name)
    return parts


def _split_domain(name: str) -> dict[str, str]:
    labels = [x for x in name.lower().rstrip(".").split(".") if x]
    if len(labels) < 2:
        return {}
    take = 2
    if len(labels) >= 3 and labels[-1] in _TWO_LEVEL_TLDS and labels[-2] in _TWO_LEVEL_SLDS:
        take = 3
    elif len(labels) == 2 and labels[-1] in _TWO_LEVEL_TLDS and labels[-2] in _TWO_LEVEL_SLDS:
        return {"top_level_domain": ".".join(labels)}
    out = {"registered_domain": ".".join(labels[-take:]), "top_level_domain": ".".join(labels[-take + 1 :])}
    if len(labels) > take:
        out["subdomain"] = ".".join(labels[:-take])
    return out


def _name(names: dict[int, str], value: int) -> str:
    """``names.get(value, str(value))`` without formatting the number when the name is known."""
    name = names.get(value)
    return name if name is not None else str(value)


def _endpoint(ip: str, port: int) -> dict[str, Any]:
    return {"ip": ip, "port": port}


@cython.no_gc  # the query message and its key only
@cython.freelist(16)  # created and freed per connection or message: reuse the memory
@cython.cclass
class _Pending:
    __slots__ = ("key", "query", "ts")

    def __init__(self, ts: float, query: DnsMessage, key: tuple[str, int, str, int, str, int]) -> None:
        self.ts = ts
        self.query = query
        self.key = key


class DnsPairing:
    """Pairs queries with responses and emits one ECS event per transaction."""

    def __init__(self, on_emit: Callable[[dict[str, Any]], None], timeout: float = 30.0) -> None:
        self.on_emit = on_emit
        self.timeout = timeout
        self.malformed = 0
        self._pending: dict[tuple[str, int, str, int, str, int], _Pending] = {}

    def count_malformed(self) -> None:
        """Called by the decoder when :func:`parse_dns` returned None."""
        self.malformed += 1

    def add(
        self,
        ts: float,
        src_ip: str,
        src_port: int,
        dst_ip: str,
        dst_port: int,
        transport: str,
        message: DnsMessage | None,
    ) -> None:
        if message is None:
            self.malformed += 1
            return
        if message.is_response:
            key = (dst_ip, dst_port, src_ip, src_port, transport, message.id)
            pending = self._pending.pop(key, None)
            query_ts = pending.ts if pending else ts
            self.on_emit(_event(query_ts, key, pending.query if pending else None, message))
        else:
            key = (src_ip, src_port, dst_ip, dst_port, transport, message.id)
            previous = self._pending.pop(key, None)
            if previous is not None:  # retransmission with the same id: emit the older one unanswered
                self.on_emit(_event(previous.ts, key, previous.query, None))
            if cython.compiled:  # filled in place: no argument tuple
                pending = _Pending.__new__(_Pending)
                pending.ts = ts
                pending.query = message
                pending.key = key
                self._pending[key] = pending
            else:
                self._pending[key] = _Pending(ts, message, key)

    def expire(self, now: float) -> None:
        for key, pending in list(self._pending.items()):
            if now - pending.ts >= self.timeout:
                del self._pending[key]
                self.on_emit(_event(pending.ts, key, pending.query, None))

    def flush(self) -> None:
        for pending in self._pending.values():
            self.on_emit(_event(pending.ts, pending.key, pending.query, None))
        self._pending.clear()


def _event(
    ts: float,
    key: tuple[str, int, str, int, str, int],
    query: DnsMessage | None,
    response: DnsMessage | None,
) -> dict[str, Any]:
    main = response or query
    assert main is not None
    dns: dict[str, Any] = {
        "id": main.id,
        "op_code": _name(OPCODE_NAMES, main.opcode),
        "header_flags": list(main.flags),
        "type": "answer" if response else "query",
    }
    if response is not None:
        dns["response_code"] = _name(RCODE_NAMES, response.rcode)
        dns["answers"] = [
            {
                "name": a.name,
                "type": _name(TYPE_NAMES, a.rtype),
                "class": _name(CLASS_NAMES, a.rclass),
                "ttl": a.ttl,
                "data": a.data if a.data is not None else f"<{a.raw_length} bytes>",
            }
            for a in response.answers
        ]
        resolved = [a.data for a in response.answers if a.rtype in (1, 28) and a.data]
        if resolved:
            dns["resolved_ip"] = resolved
    questions = (query or main).questions
    if questions:
        q = questions[0]
        dns["question"] = {
            "name": q.name,
            "type": _name(TYPE_NAMES, q.qtype),
            "class": _name(CLASS_NAMES, q.qclass),
            **_domain_parts(q.name),
        }
    return {
        "@timestamp": iso(ts),
        "event": {
            "dataset": "network.dns",
            "category": ["network"],
            "type": ["protocol"],
            "kind": "event",
        },
        "network": {"protocol": "dns", "transport": key[4]},
        "source": _endpoint(key[0], key[1]),
        "destination": _endpoint(key[2], key[3]),
        "dns": dns,
    }
