"""TLS handshake metadata from TCP payloads, as ECS ``network.tls`` events.

Responsible for reading TLS records and handshake messages (ClientHello, ServerHello,
Certificate; the hello classes live in :mod:`tlshello`), computing JA3/JA3S/JA4
fingerprints and building one event per connection. Malformed bytes are counted, never
raised.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cython

from hcm_soc.collectors.network.ecs import protocol_event
from hcm_soc.collectors.network.packet import cut
from hcm_soc.collectors.network.tlshello import ClientHello, ServerHello, is_grease

__all__ = [
    "Certificate",
    "TlsTracker",
    "ja4",
    "parse_certificates",
    "parse_client_hello",
    "parse_server_hello",
]

VERSION_NAMES = {0x0300: "3.0", 0x0301: "1.0", 0x0302: "1.1", 0x0303: "1.2", 0x0304: "1.3"}
_JA4_VERSIONS = {0x0304: "13", 0x0303: "12", 0x0302: "11", 0x0301: "10", 0x0300: "s3", 0x0002: "s2"}
CIPHER_NAMES = {
    0x1301: "TLS_AES_128_GCM_SHA256", 0x1302: "TLS_AES_256_GCM_SHA384", 0x1303: "TLS_CHACHA20_POLY1305_SHA256",
    0xC02B: "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", 0xC02C: "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    0xC02F: "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", 0xC030: "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    0xCCA8: "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256", 0xCCA9: "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
    0xC013: "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA", 0xC014: "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
    0xC009: "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA", 0xC00A: "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
    0xC027: "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256", 0xC028: "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384",
    0x009C: "TLS_RSA_WITH_AES_128_GCM_SHA256", 0x009D: "TLS_RSA_WITH_AES_256_GCM_SHA384",
    0x002F: "TLS_RSA_WITH_AES_128_CBC_SHA", 0x0035: "TLS_RSA_WITH_AES_256_CBC_SHA",
    0x003C: "TLS_RSA_WITH_AES_128_CBC_SHA256", 0x000A: "TLS_RSA_WITH_3DES_EDE_CBC_SHA",
    0x0005: "TLS_RSA_WITH_RC4_128_SHA", 0x00FF: "TLS_EMPTY_RENEGOTIATION_INFO_SCSV",
}  # fmt: skip
_HANDSHAKE, _CCS, _APPDATA = 22, 20, 23
_CLIENT_HELLO, _SERVER_HELLO, _CERTIFICATE = 1, 2, 11
_EXT_SNI, _EXT_GROUPS, _EXT_POINTS, _EXT_SIGALGS, _EXT_ALPN, _EXT_VERSIONS = 0, 10, 11, 13, 16, 43
_MAX_BUFFER = 256 * 1024  # a handshake larger than this is not worth buffering


class _Malformed(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Certificate:
    subject: str
    issuer: str
    subject_cn: str | None
    issuer_cn: str | None
    not_before: str
    not_after: str
    serial: str


def ja4(hello: ClientHello, transport: str = "t") -> str:
    """JA4 client fingerprint (FoxIO spec): ``a_b_c``."""
    ciphers = [c for c in hello.ciphers if not is_grease(c)]
    exts = [e for e in hello.extensions if not is_grease(e)]
    alpn = hello.alpn[0] if hello.alpn else ""
    if not alpn:
        alpn_code = "00"
    elif alpn[0].isascii() and alpn[0].isalnum() and alpn[-1].isascii() and alpn[-1].isalnum():
        alpn_code = alpn[0] + alpn[-1]
    else:  # non-alphanumeric: first hex digit of the first byte, last hex digit of the last byte
        raw = alpn.encode("utf-8", "surrogateescape").hex()
        alpn_code = raw[0] + raw[-1]
    part_a = (
        f"{transport}{_JA4_VERSIONS.get(hello.max_version, '00')}{'d' if hello.server_name else 'i'}"
        f"{min(len(ciphers), 99):02d}{min(len(exts), 99):02d}{alpn_code}"
    )

    def digest(text: str) -> str:
        return hashlib.sha256(text.encode()).hexdigest()[:12] if text else "000000000000"

    part_b = digest(",".join(sorted(f"{c:04x}" for c in ciphers)))
    ext_text = ",".join(sorted(f"{e:04x}" for e in exts if e not in (_EXT_SNI, _EXT_ALPN)))
    sigs = ",".join(f"{s:04x}" for s in hello.signature_algorithms if not is_grease(s))
    part_c = digest(f"{ext_text}_{sigs}" if sigs else ext_text) if ext_text else "000000000000"
    return f"{part_a}_{part_b}_{part_c}"


_FINGERPRINTS: dict[tuple[Any, ...], tuple[str, str, tuple[str, ...]]] = {}


def _client_fingerprint(h: ClientHello) -> tuple[str, str, tuple[str, ...]]:
    """(JA3, JA4, offered cipher names) of a ClientHello, cached: a network has few client stacks,
    and these depend on everything in the hello except the server name itself."""
    key = (
        h.version, h.ciphers, h.extensions, h.groups, h.point_formats,
        h.signature_algorithms, h.supported_versions, bool(h.server_name), h.alpn,
    )  # fmt: skip
    cache = _FINGERPRINTS  # a typed local when compiled: C dict calls
    hit = cache.get(key)
    if hit is None:
        if len(cache) >= 4096:
            cache.clear()
        hit = cache[key] = (h.ja3, ja4(h), _cipher_names(h.ciphers))
    return hit


def _cipher_names(ciphers: tuple[int, ...]) -> tuple[str, ...]:
    return tuple(CIPHER_NAMES.get(c, f"0x{c:04x}") for c in ciphers if not is_grease(c))


_SERVER_FINGERPRINTS: dict[tuple[Any, ...], str] = {}


def _server_fingerprint(h: ServerHello) -> str:
    """JA3S of a ServerHello, cached: it depends on the version, the cipher and the extension list."""
    key = (h.legacy_version, h.cipher, h.extensions)
    cache = _SERVER_FINGERPRINTS
    hit = cache.get(key)
    if hit is None:
        if len(cache) >= 4096:
            cache.clear()
        hit = cache[key] = h.ja3s
    return hit


def _records(payload: bytes) -> tuple[list[tuple[int, bytes]], int]:
    """Split TLS records; returns (records, bytes consumed). A partial record at the end is left."""
    out = []
    pos = 0
    while pos + 5 <= len(payload):
        ctype = payload[pos]
        major = payload[pos + 1]
        length = (payload[pos + 3] << 8) | payload[pos + 4]
        if ctype not in (20, 21, 22, 23, 24) or major != 3 or length > 18432:
            raise _Malformed("not a TLS record")
        if pos + 5 + length > len(payload):
            break
        out.append((ctype, cut(payload, pos + 5, pos + 5 + length)))
        pos += 5 + length
    return out, pos


def _handshakes(data: bytes) -> tuple[list[tuple[int, bytes]], int]:
    out = []
    pos = 0
    while pos + 4 <= len(data):
        mtype = data[pos]
        length = (data[pos + 1] << 16) | (data[pos + 2] << 8) | data[pos + 3]
        if pos + 4 + length > len(data):
            break
        out.append((mtype, cut(data, pos + 4, pos + 4 + length)))
        pos += 4 + length
    return out, pos


def _messages(payload: bytes) -> list[tuple[int, bytes]]:
    """Handshake messages of a byte run of TLS records (records may split messages)."""
    records, _ = _records(payload)
    stream = b"".join(body for ctype, body in records if ctype == _HANDSHAKE)
    return _handshakes(stream)[0]


def _u16_list(data: bytes, start: int, end: int) -> tuple[int, ...]:
    """The big-endian 16-bit values of ``data[start:end]`` (an odd last byte ignored), read
    byte by byte: a C loop when compiled, no slice, no ``struct`` call."""
    end = min(end, len(data))
    out = []
    while start + 2 <= end:
        out.append((data[start] << 8) | data[start + 1])
        start += 2
    return tuple(out)


def _extensions(body: bytes, pos: int) -> list[tuple[int, bytes]]:
    if pos + 2 > len(body):
        return []  # hellos without extensions are legal
    total = (body[pos] << 8) | body[pos + 1]  # byte reads: C loads when compiled, no struct call
    pos += 2
    end = pos + total
    if end > len(body):
        raise _Malformed("extensions overrun")
    out = []
    while pos + 4 <= end:
        etype = (body[pos] << 8) | body[pos + 1]
        elen = (body[pos + 2] << 8) | body[pos + 3]
        if pos + 4 + elen > end:
            raise _Malformed("extension overrun")
        out.append((etype, cut(body, pos + 4, pos + 4 + elen)))
        pos += 4 + elen
    return out


def _decode_client_hello(body: bytes) -> ClientHello:
    version = (body[0] << 8) | body[1]
    pos = 34
    pos += 1 + body[pos]  # session id
    clen = (body[pos] << 8) | body[pos + 1]
    ciphers = _u16_list(body, pos + 2, pos + 2 + clen)
    pos += 2 + clen
    pos += 1 + body[pos]  # compression methods
    exts = _extensions(body, pos)
    groups: tuple[int, ...] = ()
    points: tuple[int, ...] = ()
    sigalgs: tuple[int, ...] = ()
    versions: tuple[int, ...] = ()
    sni: str | None = None
    alpn: list[str] = []
    for etype, data in exts:
        if etype == _EXT_SNI and len(data) >= 5 and data[2] == 0:
            nlen = (data[3] << 8) | data[4]
            sni = data[5 : 5 + nlen].decode("utf-8", "replace")
        elif etype == _EXT_GROUPS:
            groups = _u16_list(data, 2, len(data))
        elif etype == _EXT_POINTS:
            points = tuple(data[1 : 1 + data[0]]) if data else ()
        elif etype == _EXT_SIGALGS:
            sigalgs = _u16_list(data, 2, len(data))
        elif etype == _EXT_VERSIONS and data:
            versions = _u16_list(data, 1, 1 + data[0])
        elif etype == _EXT_ALPN:
            p = 2
            while p < len(data):
                alpn.append(data[p + 1 : p + 1 + data[p]].decode("utf-8", "surrogateescape"))
                p += 1 + data[p]
    return ClientHello(
        version, ciphers, tuple([e for e, _ in exts]), groups, points, sigalgs, versions, sni, tuple(alpn)
    )


def _decode_server_hello(body: bytes) -> ServerHello:
    # byte reads (C loads when compiled); a short body raises IndexError, malformed as before
    version = (body[0] << 8) | body[1]
    pos = 34
    pos += 1 + body[pos]
    cipher = (body[pos] << 8) | body[pos + 1]
    exts = _extensions(body, pos + 3)
    selected = None
    alpn = None
    for etype, data in exts:
        if etype == _EXT_VERSIONS and len(data) == 2:
            selected = (data[0] << 8) | data[1]
        elif etype == _EXT_ALPN and len(data) >= 3:
            alpn = data[3 : 3 + data[2]].decode("utf-8", "replace")
    return ServerHello(version, cipher, tuple([e for e, _ in exts]), selected, alpn)


def _decode_certificates(body: bytes) -> list[Certificate]:
    from cryptography import x509  # imported lazily: only certificate-bearing handshakes need it
    from cryptography.x509.oid import NameOID

    total = int.from_bytes(body[0:3], "big")
    pos, end = 3, min(3 + total, len(body))
    certs = []
    while pos + 3 <= end:
        clen = int.from_bytes(body[pos : pos + 3], "big")
        der = body[pos + 3 : pos + 3 + clen]
        pos += 3 + clen
        cert = x509.load_der_x509_certificate(der)

        def cn(name: x509.Name) -> str | None:
            attrs = name.get_attributes_for_oid(NameOID.COMMON_NAME)
            return str(attrs[0].value) if attrs else None

        certs.append(
            Certificate(
                subject=cert.subject.rfc4514_string(),
                issuer=cert.issuer.rfc4514_string(),
                subject_cn=cn(cert.subject),
                issuer_cn=cn(cert.issuer),
                not_before=cert.not_valid_before_utc.isoformat().replace("+00:00", "Z"),
                not_after=cert.not_valid_after_utc.isoformat().replace("+00:00", "Z"),
                serial=format(cert.serial_number, "X"),
            )
        )
    return certs


_ERRORS = (_Malformed, struct.error, IndexError, ValueError)


def parse_client_hello(payload: bytes) -> ClientHello | None:
    """First ClientHello in a run of TLS records, or None."""
    try:
        for mtype, body in _messages(payload):
            if mtype == _CLIENT_HELLO:
                return _decode_client_hello(body)
    except _ERRORS:
        return None
    return None


def parse_server_hello(payload: bytes) -> ServerHello | None:
    try:
        for mtype, body in _messages(payload):
            if mtype == _SERVER_HELLO:
                return _decode_server_hello(body)
    except _ERRORS:
        return None
    return None


def parse_certificates(payload: bytes) -> list[Certificate]:
    """Certificates of the first Certificate message (leaf first); [] if none or malformed."""
    try:
        for mtype, body in _messages(payload):
            if mtype == _CERTIFICATE:
                return _decode_certificates(body)
    except _ERRORS:
        return []
    return []


@cython.no_gc  # buffers and flags only
@cython.freelist(16)  # created and freed per connection or message: reuse the memory
@cython.cclass
class _Side:
    __slots__ = ("app_data", "broken", "ccs", "handshake", "records")

    def __init__(self) -> None:
        self.records = bytearray()
        self.handshake = bytearray()
        self.ccs = False
        self.app_data = False
        self.broken = False


@cython.no_gc  # its sides, hellos and certificates, never the tracker
@cython.freelist(16)  # created and freed per connection or message: reuse the memory
@cython.cclass
class _TlsConn:
    __slots__ = ("certs", "client", "endpoints", "hello", "server", "server_hello", "ts")

    def __init__(self, ts: float, endpoints: tuple[str, int, str, int] | None) -> None:
        self.ts = ts
        self.endpoints = endpoints
        self.client = _Side()
        self.server = _Side()
        self.hello: ClientHello | None = None
        self.server_hello: ServerHello | None = None
        self.certs: list[Certificate] = []


class TlsTracker:
    """Follows each connection's handshake; emits one ECS event per connection on close/flush."""

    def __init__(self, on_emit: Callable[[dict[str, Any]], None]) -> None:
        self.on_emit = on_emit
        self.malformed = 0
        self._conns: dict[Any, _TlsConn] = {}

    def add_segment(
        self,
        ts: float,
        conn_key: Any,
        from_originator: bool,
        payload: bytes,
        endpoints: tuple[str, int, str, int] | None = None,
    ) -> bool:
        """``endpoints`` = (client ip, client port, server ip, server port). Returns False once
        nothing this direction may still send can change the connection's event (see
        :func:`_side_done`): the caller can stop reassembling it."""
        conn = self._conns.get(conn_key)
        if conn is None:
            conn = self._conns[conn_key] = _TlsConn(ts, endpoints)
        elif conn.endpoints is None:
            conn.endpoints = endpoints
        side = conn.client if from_originator else conn.server
        if side.broken:
            return False
        if not payload:
            return True
        try:
            # The buffers hold only what an earlier segment left incomplete (usually nothing):
            # a segment of whole records is parsed in place, without copies.
            held = side.records
            if held:
                held += payload
                data = bytes(held)
                held.clear()
            else:
                data = payload
            records, used = _records(data)
            if used < len(data):
                held += data[used:]
            bodies = []
            for ctype, body in records:
                if ctype == _CCS:
                    side.ccs = True
                elif ctype == _APPDATA:
                    side.app_data = True
                elif ctype == _HANDSHAKE and not side.ccs:  # after CCS handshake records are encrypted
                    bodies.append(body)
            messages: list[tuple[int, bytes]] = []
            if bodies:
                held = side.handshake
                if held or len(bodies) > 1:
                    held += b"".join(bodies)
                    data = bytes(held)
                    held.clear()
                else:
                    data = bodies[0]
                messages, used = _handshakes(data)
                if used < len(data):
                    held += data[used:]
            for mtype, body in messages:
                if mtype == _CLIENT_HELLO and from_originator and conn.hello is None:
                    conn.hello = _decode_client_hello(body)
                elif mtype == _SERVER_HELLO and not from_originator and conn.server_hello is None:
                    conn.server_hello = _decode_server_hello(body)
                elif mtype == _CERTIFICATE and not from_originator and not conn.certs:
                    conn.certs = _decode_certificates(body)
            if len(side.records) > _MAX_BUFFER or len(side.handshake) > _MAX_BUFFER:
                raise _Malformed("handshake too large")
        except _ERRORS:
            side.broken = True
            side.records.clear()
            side.handshake.clear()
            self.malformed += 1
            return False
        return not _side_done(conn, from_originator)

    def close(self, conn_key: Any) -> None:
        conn = self._conns.pop(conn_key, None)
        if conn is not None and (conn.hello or conn.server_hello):
            self.on_emit(_event(conn))

    def flush(self) -> None:
        for key in list(self._conns):
            self.close(key)


def _side_done(conn: _TlsConn, client: bool) -> bool:
    """Can nothing more from this side change the event? After a side's ChangeCipherSpec its
    handshake is encrypted (the hellos and certificate are fixed), and the event reads only
    the flags below; in TLS 1.3 everything after the ServerHello is encrypted."""
    sh = conn.server_hello
    tls13 = sh is not None and sh.version == 0x0304
    if client:
        side = conn.client
        # ≤ 1.2: established needs the client's CCS; 1.3: its first application record.
        return side.app_data and (side.ccs or (tls13 and conn.hello is not None))
    side = conn.server
    return side.ccs or (tls13 and side.app_data)


def _event(conn: _TlsConn) -> dict[str, Any]:
    tls: dict[str, Any] = {}
    client: dict[str, Any] = {}
    server: dict[str, Any] = {}
    if conn.hello is not None:
        h = conn.hello
        ja3, ja4_, ciphers = _client_fingerprint(h)
        client["ja3"] = ja3
        client["ja4"] = ja4_
        client["supported_ciphers"] = list(ciphers)
        if h.server_name:
            client["server_name"] = h.server_name
        if h.alpn:
            client["supported_protocols"] = list(h.alpn)
    sh = conn.server_hello
    version = -1
    if sh is not None:
        version = sh.version
        name = VERSION_NAMES.get(version)
        tls["version"] = name or f"0x{version:04x}"
        tls["version_protocol"] = "ssl" if version == 0x0300 else "tls"
        name = CIPHER_NAMES.get(sh.cipher)  # the default formatted only when needed
        tls["cipher"] = name if name is not None else f"0x{sh.cipher:04x}"
        if sh.alpn:
            tls["next_protocol"] = sh.alpn
        server["ja3s"] = _server_fingerprint(sh)
    if conn.certs:
        leaf = conn.certs[0]
        server.update(subject=leaf.subject, issuer=leaf.issuer)
        server.update(not_before=leaf.not_before, not_after=leaf.not_after)
        x509: dict[str, Any] = {"serial_number": leaf.serial, "subject": {}, "issuer": {}}
        if leaf.subject_cn:
            x509["subject"]["common_name"] = leaf.subject_cn
        if leaf.issuer_cn:
            x509["issuer"]["common_name"] = leaf.issuer_cn
        x509.update(not_before=leaf.not_before, not_after=leaf.not_after)
        server["x509"] = x509
    tls13 = version == 0x0304
    # Best effort: 1.3 is up once the client sends application records; ≤1.2 once both sides sent CCS.
    tls["established"] = sh is not None and (
        conn.client.app_data if tls13 else (conn.client.ccs and conn.server.ccs)
    )
    if client:
        tls["client"] = client
    if server:
        tls["server"] = server
    event = protocol_event(conn.ts, "network.tls", "tls", ["network"], conn.endpoints)
    event["tls"] = tls
    return event
