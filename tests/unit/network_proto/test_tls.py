"""TLS handshake parsing, JA3/JA3S/JA4 and per-connection events on scapy-built records."""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID
from scapy.all import load_layer

load_layer("tls")
from scapy.layers.tls.all import (  # noqa: E402
    TLS,
    ProtocolName,
    ServerName,
    TLS_Ext_ALPN,
    TLS_Ext_ServerName,
    TLS_Ext_SignatureAlgorithms,
    TLS_Ext_SupportedGroups,
    TLS_Ext_SupportedPointFormat,
    TLS_Ext_SupportedVersion_CH,
    TLS_Ext_SupportedVersion_SH,
    TLS_Ext_Unknown,
    TLSClientHello,
    TLSServerHello,
)

from hcm_soc.collectors.network.tls import (  # noqa: E402
    TlsTracker,
    ja4,
    parse_certificates,
    parse_client_hello,
    parse_server_hello,
)

KEY = ("10.0.0.9", 50500, "172.16.0.1", 443)


def _client_hello(sni: str = "dichvucong.hochiminhcity.gov.vn", tls13: bool = True) -> bytes:
    exts = [
        TLS_Ext_Unknown(type=0x1A1A, val=b""),  # GREASE
        TLS_Ext_ServerName(servernames=[ServerName(servername=sni.encode())]),
        TLS_Ext_SupportedGroups(groups=[0x2A2A, 29, 23, 24]),
        TLS_Ext_SupportedPointFormat(ecpl=[0]),
        TLS_Ext_SignatureAlgorithms(sig_algs=[0x0403, 0x0804, 0x0401]),
        TLS_Ext_ALPN(protocols=[ProtocolName(protocol=b"h2"), ProtocolName(protocol=b"http/1.1")]),
    ]
    if tls13:
        exts.append(TLS_Ext_SupportedVersion_CH(versions=[0x3A3A, 0x0304, 0x0303]))
    hello = TLSClientHello(version=0x0303, ciphers=[0x0A0A, 0x1301, 0x1302, 0xC02F, 0x009C], ext=exts)
    return bytes(TLS(msg=[hello]))


def _server_hello(tls13: bool = True, cipher: int = 0x1301) -> bytes:
    exts: list[Any] = [TLS_Ext_ALPN(protocols=[ProtocolName(protocol=b"h2")])]
    if tls13:
        exts.insert(0, TLS_Ext_SupportedVersion_SH(version=0x0304))
    return bytes(TLS(msg=[TLSServerHello(version=0x0303, cipher=cipher, ext=exts)]))


def _self_signed_der() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, "cổng-dịch-vụ.hcm.local"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Sở Thông tin và Truyền thông"),
        ]
    )
    start = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(0xABCDEF)
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=365))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(Encoding.DER)


def _record(content_type: int, body: bytes) -> bytes:
    return bytes([content_type, 3, 3]) + len(body).to_bytes(2, "big") + body


def _certificate_message(der: bytes) -> bytes:
    entry = len(der).to_bytes(3, "big") + der
    body = len(entry).to_bytes(3, "big") + entry
    return bytes([11]) + len(body).to_bytes(3, "big") + body


def test_client_hello_fields_and_ja3_excludes_grease() -> None:
    hello = parse_client_hello(_client_hello())
    assert hello is not None
    assert hello.server_name == "dichvucong.hochiminhcity.gov.vn"
    assert hello.alpn == ("h2", "http/1.1")
    assert hello.max_version == 0x0304
    # JA3 per the Salesforce format: version,ciphers,extensions,groups,point formats; GREASE removed.
    expected = "771,4865-4866-49199-156,0-10-11-13-16-43,29-23-24,0"
    assert hello.ja3_string == expected
    assert hello.ja3 == hashlib.md5(expected.encode()).hexdigest()


def test_ja4_matches_published_chrome_example() -> None:
    # The JA4 spec (FoxIO README) documents Chrome's hello as t13d1516h2_8daaf6152771_e5627efa2ab1.
    ciphers = [0x1A1A, 0x1301, 0x1302, 0x1303, 0xC02B, 0xC02F, 0xC02C, 0xC030, 0xCCA9, 0xCCA8,
               0xC013, 0xC014, 0x009C, 0x009D, 0x002F, 0x0035]  # fmt: skip
    plain = [0x0005, 0x000A, 0x000B, 0x0012, 0x0015, 0x0017, 0x001B, 0x0023, 0x002D, 0x0033, 0x4469, 0xFF01]
    exts = [TLS_Ext_Unknown(type=0x2A2A, val=b"")]
    exts += [TLS_Ext_Unknown(type=t, val=b"") for t in plain]
    exts += [
        TLS_Ext_ServerName(servernames=[ServerName(servername=b"www.google.com")]),
        TLS_Ext_SignatureAlgorithms(
            sig_algs=[0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601]
        ),
        TLS_Ext_ALPN(protocols=[ProtocolName(protocol=b"h2"), ProtocolName(protocol=b"http/1.1")]),
        TLS_Ext_SupportedVersion_CH(versions=[0x4A4A, 0x0304, 0x0303]),
    ]
    hello = parse_client_hello(bytes(TLS(msg=[TLSClientHello(version=0x0303, ciphers=ciphers, ext=exts)])))
    assert hello is not None
    assert ja4(hello) == "t13d1516h2_8daaf6152771_e5627efa2ab1"


def test_ja4_without_sni_alpn_tls12() -> None:
    hello = parse_client_hello(bytes(TLS(msg=[TLSClientHello(version=0x0303, ciphers=[0x002F], ext=[])])))
    assert hello is not None
    cipher_hash = hashlib.sha256(b"002f").hexdigest()[:12]
    assert ja4(hello) == f"t12i010000_{cipher_hash}_000000000000"


def test_server_hello_tls13_and_ja3s() -> None:
    sh = parse_server_hello(_server_hello())
    assert sh is not None
    assert sh.version == 0x0304 and sh.legacy_version == 0x0303
    assert sh.alpn == "h2"
    assert sh.ja3s == hashlib.md5(b"771,4865,43-16").hexdigest()


def test_several_messages_in_one_record_and_split_across_records() -> None:
    der = _self_signed_der()
    sh_record = _server_hello(tls13=False, cipher=0xC02F)
    handshake = sh_record[5:] + _certificate_message(der)
    one_record = _record(22, handshake)
    assert parse_server_hello(one_record) is not None
    certs = parse_certificates(one_record)
    assert len(certs) == 1 and certs[0].subject_cn == "cổng-dịch-vụ.hcm.local"
    assert certs[0].serial == "ABCDEF"
    cut = len(handshake) - 100  # the Certificate message spans two records
    two_records = _record(22, handshake[:cut]) + _record(22, handshake[cut:])
    assert parse_certificates(two_records)[0].issuer_cn == "cổng-dịch-vụ.hcm.local"


def test_truncated_and_garbage_input_never_raise() -> None:
    record = _client_hello()
    for cut in range(len(record)):
        assert parse_client_hello(record[:cut]) is None
    broken = bytearray(record)
    broken[9 + 34] = 200  # session id length past the end of the hello
    assert parse_client_hello(bytes(broken)) is None
    assert parse_server_hello(b"GET / HTTP/1.1\r\n\r\n") is None
    assert parse_certificates(_record(22, bytes([11, 0, 0, 9, 0, 0, 6, 0, 0, 3, 1, 2, 3]))) == []


def test_tracker_tls12_with_certificate() -> None:
    events: list[dict[str, Any]] = []
    tracker = TlsTracker(events.append)
    ch = _client_hello(sni="portal.hcm.local", tls13=False)
    tracker.add_segment(5.0, KEY, True, ch[:30], KEY)  # hello split across TCP segments
    tracker.add_segment(5.0, KEY, True, ch[30:], KEY)
    server_flight = _record(
        22, _server_hello(tls13=False, cipher=0xC02F)[5:] + _certificate_message(_self_signed_der())
    )
    tracker.add_segment(5.1, KEY, False, server_flight[:500], KEY)
    tracker.add_segment(5.1, KEY, False, server_flight[500:] + _record(22, bytes([14, 0, 0, 0])), KEY)
    tracker.add_segment(
        5.2, KEY, True, _record(22, bytes(40)) + _record(20, b"\x01") + _record(22, bytes(40)), KEY
    )
    tracker.add_segment(5.3, KEY, False, _record(20, b"\x01") + _record(22, bytes(40)), KEY)
    tracker.close(KEY)
    assert len(events) == 1
    ev = events[0]
    tls = ev["tls"]
    assert ev["event"]["dataset"] == "network.tls" and ev["network"]["protocol"] == "tls"
    assert ev["source"] == {"ip": "10.0.0.9", "port": 50500}
    assert tls["version"] == "1.2" and tls["version_protocol"] == "tls"
    assert tls["cipher"] == "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"
    assert tls["next_protocol"] == "h2"
    assert tls["client"]["server_name"] == "portal.hcm.local"
    assert tls["client"]["ja4"].startswith("t12d0405h2_")
    assert tls["client"]["supported_ciphers"][0] == "TLS_AES_128_GCM_SHA256"
    assert tls["server"]["x509"]["subject"]["common_name"] == "cổng-dịch-vụ.hcm.local"
    assert tls["server"]["x509"]["issuer"]["common_name"] == "cổng-dịch-vụ.hcm.local"
    assert tls["server"]["not_before"] == "2025-01-01T00:00:00Z"
    assert tls["server"]["not_after"] == "2026-01-01T00:00:00Z"
    assert tls["established"] is True
    assert tracker.malformed == 0


def test_tracker_tls13_and_garbage() -> None:
    events: list[dict[str, Any]] = []
    tracker = TlsTracker(events.append)
    tracker.add_segment(1.0, KEY, True, _client_hello(), KEY)
    tracker.add_segment(1.1, KEY, False, _server_hello() + _record(20, b"\x01") + _record(23, bytes(60)), KEY)
    tracker.flush()
    assert events[0]["tls"]["version"] == "1.3" and events[0]["tls"]["established"] is False
    tracker.add_segment(1.0, KEY, True, _client_hello(), KEY)
    tracker.add_segment(1.1, KEY, False, _server_hello() + _record(20, b"\x01") + _record(23, bytes(60)), KEY)
    tracker.add_segment(1.2, KEY, True, _record(20, b"\x01") + _record(23, bytes(40)), KEY)
    tracker.close(KEY)
    assert events[1]["tls"]["established"] is True
    events.pop()
    assert events[0]["tls"]["cipher"] == "TLS_AES_128_GCM_SHA256"
    other = ("10.0.0.9", 50501, "172.16.0.1", 443)
    tracker.add_segment(2.0, other, True, b"\x00\x01 not tls at all", other)
    tracker.close(other)
    assert len(events) == 1 and tracker.malformed == 1


def test_ja4_alpn_non_alphanumeric_uses_hex() -> None:
    # Spec: a non-alphanumeric ALPN edge uses the first hex digit of the first byte and last of the last byte.
    alpn = TLS_Ext_ALPN(protocols=[ProtocolName(protocol=b"\xabx\xcd")])
    hello = parse_client_hello(bytes(TLS(msg=[TLSClientHello(version=0x0303, ciphers=[0x1301], ext=[alpn])])))
    assert hello is not None
    assert ja4(hello).split("_")[0] == "t12i0101ad"
