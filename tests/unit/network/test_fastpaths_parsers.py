"""The byte-by-byte parsers and C-level hashes of the record path give exactly what they replace.

Fourth round of issue 4: the Community ID's SHA-1 and base64 written out (against ``hashlib``
and ``binascii``), HTTP start lines read without the regular expressions (against
``match(...).groups()``), the wanted HTTP headers read without ``partition``/``strip``/
``lower`` per line, the TLS 16-bit lists read without ``struct``, and the direction table
read without a tuple key. Run compiled and with ``HCM_SOC_PURE_PYTHON=1``: both forms must
agree with the reference, on edge cases and on random input.
"""

from __future__ import annotations

import hashlib
import random
import struct
from base64 import b64encode

from hcm_soc.collectors.network.community_id import ports_community_id
from hcm_soc.collectors.network.flowrecord import _DIRECTIONS, InternalRanges
from hcm_soc.collectors.network.http import (
    _REQUEST_LINE,
    _STATUS_LINE,
    _WANTED,
    _headers,
    _request_line,
    _status_line,
)
from hcm_soc.collectors.network.tls import _u16_list


def _reference_community_id(src: str, dst: str, proto: int, sport: int, dport: int) -> str:
    """The specification's recipe with the standard library (IPv4, seed 0)."""
    saddr = bytes(int(x) for x in src.split("."))
    daddr = bytes(int(x) for x in dst.split("."))
    if (saddr, sport) > (daddr, dport):
        saddr, daddr, sport, dport = daddr, saddr, dport, sport
    data = struct.pack("!H4s4sBxHH", 0, saddr, daddr, proto, sport, dport)
    return "1:" + b64encode(hashlib.sha1(data).digest()).decode()


def test_community_id_hash_equals_hashlib() -> None:
    rng = random.Random(41)
    flows = [
        ("0.0.0.0", "0.0.0.0", 6, 0, 0),
        ("255.255.255.255", "255.255.255.255", 17, 65535, 65535),
        ("10.0.0.1", "10.0.0.1", 6, 443, 80),
        ("128.232.110.120", "66.35.250.204", 6, 34855, 80),
    ]
    for _ in range(5_000):
        a = ".".join(str(rng.randrange(256)) for _ in range(4))
        b = ".".join(str(rng.randrange(256)) for _ in range(4))
        flows.append((a, b, rng.choice([6, 17, 132]), rng.randrange(65536), rng.randrange(65536)))
    for flow in flows:
        assert ports_community_id(*flow) == _reference_community_id(*flow), flow
    assert ports_community_id("128.232.110.120", "66.35.250.204", 6, 34855, 80) == (
        "1:LQU9qZlK+B5F3KDmev6m5PMibrg="
    )


def _random_line(rng: random.Random, pieces: list[bytes]) -> bytes:
    return b"".join(rng.choice(pieces) for _ in range(rng.randrange(1, 9)))


def test_start_lines_equal_the_regular_expressions() -> None:
    rng = random.Random(42)
    lines = [
        b"GET / HTTP/1.1",
        b"GET / HTTP/1.1\n",
        b"GET / HTTP/1.1\n\n",
        b"PROPFINDX / HTTP/1.1",
        b"GE / HTTP/1.1",
        b"ABCDEFGHIJK / HTTP/1.1",
        b"GET /a b HTTP/1.1",
        b"GET /a\tb HTTP/1.1",
        b"GET  / HTTP/1.1",
        b"GET / HTTP/1.10",
        b"GET / HTTP/x.1",
        b"get / HTTP/1.1",
        b"GET / http/1.1",
        b"HTTP/1.1 200 OK",
        b"HTTP/1.1 200",
        b"HTTP/1.1 200\n",
        b"HTTP/1.1 200 ",
        b"HTTP/1.1 200 OK\n",
        b"HTTP/1.1 200 OK\nX",
        b"HTTP/1.1 200 OK\r",
        b"HTTP/1.1 2000",
        b"HTTP/1.1 20",
        b"HTTP/1.1 20x OK",
        b"HTTP/1.1  200 OK",
        b"HTTP/1.1 200 \xff\x00 r\xe9ason",
        b"",
        b"\n",
    ]
    pieces = [b"GET", b"POST", b"X", b" ", b"/", b"/p?q=1", b"HTTP/", b"1.1", b"1", b".", b"200", b"OK"]
    pieces += [b"\n", b"\r", b"\t", b"\x0b", b"\xff", b"A", b"0"]
    for _ in range(30_000):
        lines.append(_random_line(rng, pieces))
    for line in lines:
        for head in (line, line + b"\r\nHost: x"):  # the parsers read the first line of a header block
            request = _REQUEST_LINE.match(line)
            assert _request_line(head, len(line)) == (request.groups() if request else None), line
            status = _STATUS_LINE.match(line)
            assert _status_line(head, len(line)) == (status.groups() if status else None), line


def _reference_headers(head: bytes) -> dict[str, str]:
    """The loop the header reader replaced."""
    wanted = {name.encode(): name for name in _WANTED}
    headers: dict[str, str] = {}
    for line in head.split(b"\r\n")[1:]:
        name, sep, value = line.partition(b":")
        if sep:
            key = wanted.get(name.strip().lower())
            if key is not None:
                headers[key] = value.strip().decode("utf-8", "replace")
    return headers


def test_headers_equal_partition_strip_lower() -> None:
    rng = random.Random(43)
    heads = [
        b"GET / HTTP/1.1",
        b"GET / HTTP/1.1\r\nHost: a\r\nHOST:b",
        b"GET / HTTP/1.1\r\n Host :\t x \x0b\r\nUser-Agent: \xff\xfe ua\r\n",
        b"GET / HTTP/1.1\r\nContent-Length: 12\r\nTransfer-Encoding: chunked\r\nReferer: r:1",
        b"GET / HTTP/1.1\r\nHost\r\n: x\r\nHost:\r\nContent-Type:a:b\r\r\n",
        b"GET / HTTP/1.1\r\nhost: a\nuser-agent: b\r\nX-Host: c",
    ]
    names = [b"Host", b"host", b"HOST", b" host", b"User-Agent", b"user-agent ", b"Referer", b"Content-Type"]
    names += [b"content-length", b"Transfer-Encoding", b"X", b"hosts", b"", b"\thost\x0c", b"H\xc3\xb6st"]
    values = [b"", b" ", b"a", b" b ", b"1:2", b"\xff", b"\tv\x0b", b"\xc3\xa9t\xc3\xa9", b"\r", b"\n"]
    for _ in range(5_000):
        lines = [b"GET / HTTP/1.1"]
        for _ in range(rng.randrange(0, 8)):
            sep = rng.choice([b":", b":", b": ", b""])
            lines.append(rng.choice(names) + sep + rng.choice(values))
        heads.append(b"\r\n".join(lines))
    for head in heads:
        first_end = head.find(b"\r\n")
        if first_end < 0:
            first_end = len(head)
        assert _headers(head, first_end + 2) == _reference_headers(head), head


def test_u16_list_equals_struct() -> None:
    rng = random.Random(44)
    for _ in range(2_000):
        data = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 40)))
        start = rng.randrange(0, 45)
        end = rng.randrange(0, 45)
        part = data[start:end]
        count = len(part) // 2
        assert _u16_list(data, start, end) == struct.unpack_from(f"!{count}H", part), (data, start, end)


def test_direction_equals_the_table() -> None:
    inside = InternalRanges(["10.0.0.0/8"])
    for src in ("10.1.1.1", "8.8.8.8", "not an address"):
        for dst in ("10.2.2.2", "1.1.1.1", "not an address"):
            expected = _DIRECTIONS[inside(src), inside(dst)]
            assert inside.direction(src, dst) == expected, (src, dst)
