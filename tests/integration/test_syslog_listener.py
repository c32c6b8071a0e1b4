"""The syslog listener end to end: real loopback sockets (UDP, TCP, TLS, IPv6, util-linux `logger`)
-> SyslogCollector -> IngestPipeline -> BulkWriter -> the real Elasticsearch node."""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import random
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from elasticsearch import Elasticsearch

from hcm_soc.collectors.definition import SourceDefinition
from hcm_soc.collectors.pipeline import IngestPipeline
from hcm_soc.collectors.syslog import SyslogCollector
from hcm_soc.store.bulk import BulkWriter
from hcm_soc.store.names import IndexNames

FORMAT = "syslog"  # the real parser: what a syslog source in collectors/ uses

DATASET = "syslog.listener"
WAIT = 20.0  # seconds: the deadline of every wait below
VIET_TEXT = "Người dùng nguyễn văn an đăng nhập thất bại từ 10.0.0.5 — Sở Tài chính"
VIET = f"<14>Nov 25 08:00:02 dvc-portal-01 dvc-app[77]: {VIET_TEXT}"
AUTH = (
    "<38>Nov 25 08:00:{s:02d} web-01 sshd[{pid}]: Failed password for user{i} from 10.1.{c}.{i} port 22 ssh2"
)


# -- helpers ---------------------------------------------------------------------------------------
def wait_until(check: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        pause.wait(0.02)


def definition(name: str = "syslog-test", **syslog: Any) -> SourceDefinition:
    syslog.setdefault("listen", "127.0.0.1:0")
    return SourceDefinition.model_validate(
        {"name": name, "type": "syslog", "format": FORMAT, "dataset": DATASET, "syslog": syslog}
    )


class Listener:
    """A collector running in a thread, writing to Elasticsearch; stop() flushes everything."""

    def __init__(self, es: Elasticsearch, names: IndexNames, d: SourceDefinition, **kwargs: Any) -> None:
        self.writer = BulkWriter(es, names, flush_interval=None)
        self.pipeline = IngestPipeline.for_definition(self.writer, names, d)
        self.progress: list[str] = []
        self.collector = SyslogCollector(d, self.pipeline, progress=self.progress.append, **kwargs)
        self.collector.start()
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self.collector.run, args=(self.stop_event,), daemon=True)
        self.thread.start()

    @property
    def address(self) -> tuple[str, int]:
        return self.collector.address

    def stat(self, key: str) -> int:
        return self.collector.stats()[key]

    def wait_messages(self, n: int) -> None:
        wait_until(lambda: self.stat("messages") >= n, f"{n} messages (got {self.stat('messages')})")

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(timeout=WAIT)
        assert not self.thread.is_alive(), "the listener did not stop"
        self.writer.close()


@contextlib.contextmanager
def listening(es: Elasticsearch, names: IndexNames, d: SourceDefinition, **kwargs: Any) -> Iterator[Listener]:
    listener = Listener(es, names, d, **kwargs)
    try:
        yield listener
    finally:
        listener.stop()


def stored(es: Elasticsearch, names: IndexNames) -> list[dict[str, Any]]:
    index = names.events(DATASET)
    es.indices.refresh(index=index)
    hits = es.search(index=index, size=10_000, query={"match_all": {}})["hits"]["hits"]
    return [{**hit["_source"], "_id": hit["_id"]} for hit in hits]


def by_original(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {d["event"]["original"]: d for d in docs}


def tcp(address: tuple[str, int], family: int = socket.AF_INET) -> socket.socket:
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(WAIT)
    s.connect(address)
    return s


def octet(msg: str) -> bytes:
    data = msg.encode()
    return b"%d %s" % (len(data), data)


def assert_no_sink_trouble(listener: Listener) -> None:
    stats = listener.collector.stats()
    assert stats["sink_errors"] == 0 and stats["dropped"] == 0, stats


# -- UDP -------------------------------------------------------------------------------------------
def test_udp_datagrams_each_become_one_event(es: Elasticsearch, installed: IndexNames) -> None:
    lines = [AUTH.format(s=i % 60, pid=1000 + i, i=i, c=i % 7) for i in range(300)]
    with listening(es, installed, definition(protocol="udp")) as listener:
        assert listener.stat("udp_rcvbuf") > 0  # what the OS granted (Linux reports twice the size)
        assert any("listening on 127.0.0.1:" in p for p in listener.progress)
        senders = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2)]
        for i, line in enumerate(lines):
            senders[i % 2].sendto(line.encode() + b"\n", listener.address)
        listener.wait_messages(len(lines))
        ports = {s.getsockname()[1] for s in senders}
        for s in senders:
            s.close()
    assert_no_sink_trouble(listener)
    docs = stored(es, installed)
    assert len(docs) == len(lines)
    assert sorted(d["event"]["original"] for d in docs) == sorted(lines)  # trailing LF not kept
    assert {d["log"]["source"]["address"] for d in docs} == {f"127.0.0.1:{p}" for p in ports}
    assert len({d["_id"] for d in docs}) == len(lines)


# -- TCP -------------------------------------------------------------------------------------------
def test_tcp_newline_framing_many_connections_and_a_stalled_client(
    es: Elasticsearch, installed: IndexNames
) -> None:
    terminators = [b"\n", b"\r\n", b"\0"]
    expected = []
    with listening(es, installed, definition(protocol="tcp")) as listener:
        # connects, sends half a line, then says nothing: must not hold up anyone
        stalled = tcp(listener.address)
        stalled.sendall(b"<38>Nov 25 08:00:00 web-09 sshd[1]: half a li")
        clients = [tcp(listener.address) for _ in range(25)]
        payloads = []
        for c in range(len(clients)):
            lines = [AUTH.format(s=i, pid=c, i=i, c=c) for i in range(40)]
            expected += lines
            payloads.append(b"".join(line.encode() + terminators[i % 3] for i, line in enumerate(lines)))
        for offset in range(0, max(map(len, payloads)), 700):  # interleaved writes on every connection
            for client, payload in zip(clients, payloads, strict=True):
                if payload[offset : offset + 700]:
                    client.sendall(payload[offset : offset + 700])
        listener.wait_messages(len(expected))
        assert listener.stat("active_connections") == 26
        for client in clients:
            client.close()
        wait_until(lambda: listener.stat("active_connections") == 1, "closed connections to be noticed")
        stalled.close()  # the half line is still a message: nothing a sender wrote is lost
        listener.wait_messages(len(expected) + 1)
    assert_no_sink_trouble(listener)
    docs = stored(es, installed)
    originals = by_original(docs)
    assert set(originals) == {*expected, "<38>Nov 25 08:00:00 web-09 sshd[1]: half a li"}
    assert len(docs) == len(expected) + 1 == len({d["_id"] for d in docs})
    assert listener.stat("connections") == 26 and listener.stat("framing_errors") == 0


def test_tcp_octet_counting_split_anywhere_and_mixed_with_lines(
    es: Elasticsearch, installed: IndexNames
) -> None:
    multi = "<11>Nov 25 08:01:00 app-01 java: NullPointerException\n\tat vn.hcm.dvc.App.main(App.java:12)"
    messages = [AUTH.format(s=i, pid=7, i=i, c=1) for i in range(50)]
    stream = b"".join(octet(m) for m in messages[:25]) + octet(multi) + octet(VIET)
    stream += b"".join(m.encode() + b"\n" for m in messages[25:])  # a sender may switch framing
    d = definition(protocol="tcp", framing="auto")
    with listening(es, installed, d) as listener, tcp(listener.address) as client:
        for i in range(0, len(stream), 7):  # 7-byte writes: lengths and bodies cut everywhere
            client.sendall(stream[i : i + 7])
        listener.wait_messages(52)
    assert listener.stat("framing_errors") == 0
    originals = by_original(stored(es, installed))
    assert set(originals) == {*messages, multi, VIET}  # the newline inside the octet frame is kept
    assert VIET_TEXT in originals[VIET]["message"]


def test_tcp_idle_connection_is_closed_and_its_partial_message_kept(
    es: Elasticsearch, installed: IndexNames
) -> None:
    with listening(es, installed, definition(protocol="tcp"), idle_timeout=0.5) as listener:
        with tcp(listener.address) as idle:
            idle.sendall(b"<38>Nov 25 08:02:00 db-01 sshd[5]: no newline then silence")
            assert idle.recv(10) == b""  # the listener hangs up (the socket timeout is the deadline)
        assert listener.stat("idle_closed") == 1
        listener.wait_messages(1)
    assert [d["event"]["original"] for d in stored(es, installed)] == [
        "<38>Nov 25 08:02:00 db-01 sshd[5]: no newline then silence"
    ]


def test_ids_never_collide_across_connections_and_restarts(es: Elasticsearch, installed: IndexNames) -> None:
    line = b"<38>Nov 25 08:03:00 web-01 sshd[9]: same text every time\n"
    d = definition(protocol="tcp")
    for _ in range(2):  # a restarted listener, the same peer sending the same text again
        with listening(es, installed, d) as listener:
            for _ in range(3):
                with tcp(listener.address) as client:
                    client.sendall(line * 4)
            listener.wait_messages(12)
    docs = stored(es, installed)
    assert len(docs) == 24 == len({d["_id"] for d in docs})


# -- limits and garbage ----------------------------------------------------------------------------
def test_oversized_message_is_truncated_and_tagged(es: Elasticsearch, installed: IndexNames) -> None:
    big = "<14>Nov 25 08:04:00 app-01 app: " + "Đ" * 1000 + "tail"  # 2-byte characters: cut between them
    with listening(es, installed, definition(protocol="tcp", max_message_bytes=512)) as listener:
        with tcp(listener.address) as client:
            client.sendall(big.encode() + b"\n" + VIET.encode() + b"\n")
        listener.wait_messages(2)
    assert listener.stat("truncated") == 1
    originals = by_original(stored(es, installed))
    assert VIET in originals and "_truncated" not in originals[VIET].get("tags", [])
    (cut,) = [o for o in originals if o != VIET]
    assert big.startswith(cut) and len(cut.encode()) in (511, 512)  # whole characters only
    assert "_truncated" in originals[cut]["tags"]


def test_random_garbage_is_stored_tagged_binary_and_the_listener_keeps_serving(
    es: Elasticsearch, installed: IndexNames
) -> None:
    rng = random.Random(20261125)
    with listening(es, installed, definition(protocol="tcp", max_message_bytes=1024)) as listener:
        for _ in range(5):
            with tcp(listener.address) as client:
                for _ in range(20):
                    client.sendall(rng.randbytes(rng.randrange(1, 4000)))
            # a connection that is reset mid-stream instead of closed
            bad = tcp(listener.address)
            bad.sendall(rng.randbytes(500) + b"12345 <13>partial octet frame")
            bad.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
            bad.close()
        wait_until(
            lambda: listener.stat("connections") == 10 and listener.stat("active_connections") == 0,
            "the garbage connections to be read to their end",
        )
        garbage = listener.stat("messages")
        assert garbage > 0 and listener.stat("binary") > 0
        with tcp(listener.address) as client:  # still serving
            client.sendall(VIET.encode() + b"\n")
            listener.wait_messages(garbage + 1)
    assert_no_sink_trouble(listener)
    docs = stored(es, installed)
    assert len(docs) == garbage + 1  # every message stored, none lost
    assert sum("_binary" in d.get("tags", []) for d in docs) == listener.stat("binary")
    assert all(d["event"]["original"] for d in docs)
    assert VIET in by_original(docs)


def test_udp_garbage_and_oversized_datagrams(es: Elasticsearch, installed: IndexNames) -> None:
    rng = random.Random(5)
    with listening(es, installed, definition(protocol="udp", max_message_bytes=300)) as listener:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for _ in range(50):
                s.sendto(b"\x00\x01" + rng.randbytes(rng.randrange(1, 2000)), listener.address)
            s.sendto(VIET.encode(), listener.address)
        listener.wait_messages(51)
    docs = stored(es, installed)
    assert len(docs) == 51
    assert sum("_binary" in d.get("tags", []) for d in docs) == 50
    assert listener.stat("truncated") == sum("_truncated" in d.get("tags", []) for d in docs) > 0
    assert VIET in by_original(docs)


# -- TLS -------------------------------------------------------------------------------------------
def _name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "HCM SOC test"),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


def _issue(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None,
    *,
    server: bool = False,
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(ca[0].subject if ca else _name(subject))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca is None, path_length=None), critical=True)
    )
    if ca is not None:
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if server:
        alt = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        builder = builder.add_extension(x509.SubjectAlternativeName(alt), critical=False)
    return builder.sign(ca[1] if ca else key, hashes.SHA256())


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, Path]:
    """A throwaway CA, a server certificate for localhost/127.0.0.1 and a client certificate."""
    out: dict[str, Path] = {}
    ca_key, server_key, client_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    ca_cert = _issue("HCM SOC test CA", ca_key, None)
    for name, cert, key in [
        ("ca", ca_cert, ca_key),
        ("server", _issue("localhost", server_key, (ca_cert, ca_key), server=True), server_key),
        ("client", _issue("sotttt-web-01", client_key, (ca_cert, ca_key)), client_key),
    ]:
        out[f"{name}_cert"] = tmp_path / f"{name}.crt"
        out[f"{name}_cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        out[f"{name}_key"] = tmp_path / f"{name}.key"
        out[f"{name}_key"].write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
    return out


def tls_client(address: tuple[str, int], pki: dict[str, Path], *, with_cert: bool) -> ssl.SSLSocket:
    ctx = ssl.create_default_context(cafile=str(pki["ca_cert"]))
    if with_cert:
        ctx.load_cert_chain(str(pki["client_cert"]), str(pki["client_key"]))
    return ctx.wrap_socket(tcp(address), server_hostname="localhost")


def test_tls_server_certificate_only(es: Elasticsearch, installed: IndexNames, pki: dict[str, Path]) -> None:
    d = definition(protocol="tls", tls_cert=str(pki["server_cert"]), tls_key=str(pki["server_key"]))
    with listening(es, installed, d) as listener:
        silent = tcp(listener.address)  # connects and never starts the handshake
        with tls_client(listener.address, pki, with_cert=False) as client:
            client.sendall(
                octet(VIET) + b"".join(octet(AUTH.format(s=i, pid=3, i=i, c=3)) for i in range(200))
            )
            listener.wait_messages(201)
        silent.close()
    assert listener.stat("framing_errors") == 0
    originals = by_original(stored(es, installed))
    assert len(originals) == 201 and VIET in originals


def test_tls_client_certificate_required(
    es: Elasticsearch, installed: IndexNames, pki: dict[str, Path]
) -> None:
    d = definition(
        protocol="tls",
        tls_cert=str(pki["server_cert"]),
        tls_key=str(pki["server_key"]),
        tls_client_ca=str(pki["ca_cert"]),
    )
    with listening(es, installed, d) as listener:
        # without a certificate: the server refuses the handshake; nothing of it is stored
        with (
            contextlib.suppress(ssl.SSLError, OSError),
            tls_client(listener.address, pki, with_cert=False) as anon,
        ):
            anon.sendall(b"<38>Nov 25 08:05:00 evil sshd[1]: must not be stored\n")
            anon.recv(10)  # TLS 1.3 tells the client after its handshake: the alert or EOF ends this
        wait_until(lambda: listener.stat("tls_failures") == 1, "the refused handshake to be counted")
        with tls_client(listener.address, pki, with_cert=True) as client:
            client.sendall(VIET.encode() + b"\n")
            listener.wait_messages(1)
    docs = stored(es, installed)
    assert [d["event"]["original"] for d in docs] == [VIET]
    assert docs[0]["log"]["source"]["address"].startswith("127.0.0.1:")
    # the Vietnamese text is intact and searchable as words
    phrase = {"match_phrase": {"message": "nguyễn văn an đăng nhập"}}
    assert es.count(index=installed.events(DATASET), query=phrase)["count"] == 1


# -- IPv6 and util-linux logger --------------------------------------------------------------------
def _has_ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _has_ipv6_loopback(), reason="this machine has no IPv6 loopback (::1)")
def test_ipv6_loopback(es: Elasticsearch, installed: IndexNames) -> None:
    with listening(es, installed, definition(protocol="tcp", listen="[::1]:0")) as listener:
        assert listener.address[0] == "::1"
        with tcp(listener.address, socket.AF_INET6) as client:
            client.sendall(VIET.encode() + b"\n")
            port = client.getsockname()[1]
            listener.wait_messages(1)
    (doc,) = stored(es, installed)
    assert doc["event"]["original"] == VIET
    assert doc["log"]["source"]["address"] == f"[::1]:{port}"


@pytest.mark.skipif(shutil.which("logger") is None, reason="util-linux `logger` is not installed")
@pytest.mark.parametrize(
    ("protocol", "flags"),
    [
        ("tcp", ["--tcp", "--rfc5424"]),
        ("tcp", ["--tcp", "--rfc5424", "--octet-count"]),
        ("udp", ["--udp", "--rfc3164"]),
    ],
)
def test_util_linux_logger(es: Elasticsearch, installed: IndexNames, protocol: str, flags: list[str]) -> None:
    texts = [f"{VIET_TEXT} lần {i}" for i in range(3)]
    with listening(es, installed, definition(protocol=protocol)) as listener:
        host, port = listener.address
        for text in texts:
            subprocess.run(
                [
                    "logger",
                    "--server",
                    host,
                    "--port",
                    str(port),
                    *flags,
                    "-t",
                    "hcmtest",
                    "-p",
                    "authpriv.notice",
                    text,
                ],
                check=True,
                timeout=WAIT,
            )
        listener.wait_messages(len(texts))
    docs = stored(es, installed)
    assert len(docs) == len(texts)
    for doc, text in zip(sorted(docs, key=lambda d: d["event"]["original"]), texts, strict=True):
        original = doc["event"]["original"]
        assert original.startswith("<85>") and original.endswith(text)  # authpriv.notice = 10*8+5
        assert "hcmtest" in original
        assert text in doc["message"]
        assert doc["log"]["syslog"]["priority"] == 85
