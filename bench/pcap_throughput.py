"""Network collector benchmark: packets/s to records against tshark, records/s into
Elasticsearch, and peak memory with 1,000,000 distinct flows.

    .venv/bin/python bench/pcap_throughput.py [--packets 1000000] [--downloads 8] [--rounds 3]
        [--cpu 0] [--cache DIR] [--es-url URL] [--es-packets N] [--skip-tshark] [--skip-es]
        [--skip-digest] [--json]

Captures are generated once (raw bytes written with `struct`, no scapy object per
packet, ~2 s per million) and cached under `--cache` (default /tmp/hcm-bench-pcap):

  dense      N packets (default 1,000,000): TCP sessions with handshake, an HTTP
             request and response, FIN teardown (25 % of sessions); TLS sessions with
             ClientHello (SNI, ALPN, supported versions, GREASE), ServerHello + CCS and
             application records (25 %); DNS query + answer over UDP (30 %); NTP over
             UDP (10 %); ICMP echo (5 %); rejected TCP connections, SYN + RST (5 %).
             ~200,000 sessions between 20,000 clients and 500 servers over ~200 s: one
             record for every 3 packets, the worst case for a record-producing analyzer.
  downloads  the same sessions with `--downloads` (default 8) extra 1,400-byte server
             segments in every HTTP response body and TLS session: more packets per
             record, closer to a real link.
  distinct   1,000,000 TCP SYNs, each its own flow (a port scan).

Measured, in this order:

  ours     `iter_pcap` -> `NetworkAnalyzer` (flows + DNS + HTTP + TLS) -> records into a
           counting sink, the process pinned to core `--cpu`; `--rounds` runs, median;
           with the garbage collector set as `hcm-soc pcap` sets it (`fewer_collections`).
  stages   the same capture through `iter_pcap` alone, then `iter_pcap` -> `FlowTable`
           (flow records, no application analyzers), per CPU second: where the time goes.
  tshark   `tshark -r FILE -n -T fields -e ...` extracting the same fields (addresses,
           ports, flags, DNS id/name/type/rcode/answers/TTLs, HTTP method/host/URI/agent/
           status/content type, TLS SNI/ALPN/ciphers/version/JA3) to /dev/null, pinned to
           the same core. Skipped with a note when tshark is missing
           (Debian/Ubuntu: `apt-get install -y tshark`).
           Both are reported per wall second and per CPU second (user + system time of
           the process): on a shared machine the CPU-second rates are the fair comparison.
  digest   the SHA-256 of every record of the capture (``records_digest``): equal before
           and after a change, or between the compiled and pure-Python forms, means the
           records did not change.
  memory   the distinct-flow capture through the analyzer (flow table at the default
           cap, 200,000: 800,000 evictions) in a child process; its peak RSS.
  es       the first `--es-packets` packets of the dense capture through the whole
           `hcm-soc pcap` path (analyzer -> NetworkRecordWriter -> BulkWriter ->
           Elasticsearch at `--es-url`) under a fresh index prefix, in a child process;
           timed to the end of the writer's close; stored records counted; then removed.

Goals (issue 4): ours >= 5x tshark's packets/s; peak RSS < 300 MB. The machine, the
load average before and after, and which form of the collector ran (compiled with
Cython, or pure Python: `HCM_SOC_PURE_PYTHON=1` forces it) are printed with the figures.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import shutil
import statistics
import struct
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import machine_info, machine_line

# -- capture generation --------------------------------------------------------------

_PCAP_HEADER = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
_REC = struct.Struct("<IIII")
_ETH = bytes.fromhex("0200000000020200000000010800")
_IP = struct.Struct("!BBHHHBBH4s4s")
_TCP = struct.Struct("!HHIIBBHHH")
_UDP = struct.Struct("!HHHH")
_ICMP = struct.Struct("!BBHHH")
_SYN, _ACK, _FIN, _RST, _PSH = 0x02, 0x10, 0x01, 0x04, 0x08

# fmt: off
_DOMAINS = ["hochiminhcity.gov.vn", "example.com.vn", "tphcm.gov.vn", "google.com", "microsoft.com",
            "cloudflare.net", "zalo.me", "vnexpress.net", "github.com", "bkav.com.vn"]
# fmt: on
_SNIS = [f"{w}.{d}" for w in ("www", "api", "dichvucong", "mail", "cdn") for d in _DOMAINS]
_PATHS = [b"/", b"/thu-tuc-hanh-chinh", b"/api/v1/ho-so?id=1234", b"/static/app.js", b"/login"]
_AGENTS = [b"Mozilla/5.0 (Windows NT 10.0; Win64; x64)", b"curl/7.88.1", b"python-requests/2.31"]


def _client_hello(sni: str) -> bytes:
    name = sni.encode()
    sni_list = struct.pack("!BH", 0, len(name)) + name
    exts = struct.pack("!HHH", 0, len(sni_list) + 2, len(sni_list)) + sni_list
    groups = b"".join(struct.pack("!H", g) for g in (0x1A1A, 0x001D, 0x0017, 0x0018))
    exts += struct.pack("!HHH", 10, len(groups) + 2, len(groups)) + groups
    exts += struct.pack("!HHB", 11, 2, 1) + b"\x00"
    sigs = b"".join(struct.pack("!H", s) for s in (0x0403, 0x0804, 0x0401, 0x0503))
    exts += struct.pack("!HHH", 13, len(sigs) + 2, len(sigs)) + sigs
    alpn = b"\x02h2\x08http/1.1"
    exts += struct.pack("!HHH", 16, len(alpn) + 2, len(alpn)) + alpn
    versions = b"\x0a\x0a\x03\x04\x03\x03"
    exts += struct.pack("!HHB", 43, len(versions) + 1, len(versions)) + versions
    ciphers = b"".join(struct.pack("!H", c) for c in (0x0A0A, 0x1301, 0x1302, 0x1303, 0xC02B, 0xC02F, 0xC030))
    body = b"\x03\x03" + bytes(range(32)) + b"\x20" + bytes(range(32, 64))
    body += struct.pack("!H", len(ciphers)) + ciphers + b"\x01\x00" + struct.pack("!H", len(exts)) + exts
    hs = b"\x01" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x01" + struct.pack("!H", len(hs)) + hs


def _server_hello() -> bytes:
    exts = struct.pack("!HHB", 0xFF01, 1, 0) + struct.pack("!HH", 16, 5) + b"\x00\x03\x02h2"
    body = b"\x03\x03" + bytes(range(64, 96)) + b"\x00" + struct.pack("!H", 0xC02F) + b"\x00"
    body += struct.pack("!H", len(exts)) + exts
    hs = b"\x02" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x03" + struct.pack("!H", len(hs)) + hs + b"\x14\x03\x03\x00\x01\x01"


def _dns_query(ident: int, name: str) -> bytes:
    q = b"".join(bytes([len(x)]) + x.encode() for x in name.split(".")) + b"\x00"
    return struct.pack("!HHHHHH", ident, 0x0100, 1, 0, 0, 0) + q + struct.pack("!HH", 1, 1)


def _dns_answer(ident: int, name: str, addr: bytes) -> bytes:
    q = b"".join(bytes([len(x)]) + x.encode() for x in name.split(".")) + b"\x00"
    head = struct.pack("!HHHHHH", ident, 0x8180, 1, 1, 0, 0) + q + struct.pack("!HH", 1, 1)
    return head + b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 300, 4) + addr


class _Writer:
    """Appends Ethernet/IPv4 frames to a pcap file, buffered."""

    def __init__(self, path: Path) -> None:
        self.f = path.open("wb")
        self.f.write(_PCAP_HEADER)
        self.buf: list[bytes] = []
        self.count = 0
        self.ip_id = 0

    def _ip(self, ts: float, src: bytes, dst: bytes, proto: int, l4: bytes) -> None:
        self.ip_id = (self.ip_id + 1) & 0xFFFF
        ip = _IP.pack(0x45, 0, 20 + len(l4), self.ip_id, 0x4000, 64, proto, 0, src, dst)
        frame = _ETH + ip + l4
        sec = int(ts)
        self.buf.append(_REC.pack(sec, int((ts - sec) * 1e6), len(frame), len(frame)) + frame)
        self.count += 1
        if len(self.buf) >= 4096:
            self.f.write(b"".join(self.buf))
            self.buf.clear()

    def tcp(
        self,
        ts: float,
        src: bytes,
        dst: bytes,
        sp: int,
        dp: int,
        seq: int,
        ack: int,
        flags: int,
        payload: bytes = b"",
    ) -> None:
        self._ip(
            ts,
            src,
            dst,
            6,
            _TCP.pack(sp, dp, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, 0x50, flags, 64240, 0, 0) + payload,
        )

    def udp(self, ts: float, src: bytes, dst: bytes, sp: int, dp: int, payload: bytes) -> None:
        self._ip(ts, src, dst, 17, _UDP.pack(sp, dp, 8 + len(payload), 0) + payload)

    def icmp(self, ts: float, src: bytes, dst: bytes, kind: int, ident: int, seq: int) -> None:
        self._ip(ts, src, dst, 1, _ICMP.pack(kind, 0, 0, ident, seq) + b"abcdefghijklmnopqrstuvwabcdefghi")

    def close(self) -> None:
        self.f.write(b"".join(self.buf))
        self.f.close()


def _tcp_session(
    w: _Writer, ts: float, c: bytes, s: bytes, cp: int, sp: int, exchanges: list[tuple[bool, bytes]]
) -> None:
    """Handshake, the payloads in order (True = from the client), FIN teardown."""
    cs, ss = random.getrandbits(32), random.getrandbits(32)
    step = 0.00003
    w.tcp(ts, c, s, cp, sp, cs, 0, _SYN)
    w.tcp(ts + step, s, c, sp, cp, ss, cs + 1, _SYN | _ACK)
    w.tcp(ts + 2 * step, c, s, cp, sp, cs + 1, ss + 1, _ACK)
    cs, ss, t = cs + 1, ss + 1, ts + 3 * step
    for from_client, data in exchanges:
        if from_client:
            w.tcp(t, c, s, cp, sp, cs, ss, _ACK | _PSH, data)
            cs += len(data)
        else:
            w.tcp(t, s, c, sp, cp, ss, cs, _ACK | _PSH, data)
            ss += len(data)
        t += step
    w.tcp(t, c, s, cp, sp, cs, ss, _FIN | _ACK)
    w.tcp(t + step, s, c, sp, cp, ss, cs + 1, _FIN | _ACK)
    w.tcp(t + 2 * step, c, s, cp, sp, cs + 1, ss + 1, _ACK)


def write_mixed(path: Path, n_packets: int, downloads: int = 0, seed: int = 4) -> None:
    """`downloads` > 0 adds that many 1,400-byte server segments to every HTTP response body
    and TLS session (a download), for a mix closer to a real link's packets per record."""
    random.seed(seed)
    chunk = bytes(1400)
    tls_chunk = b"\x17\x03\x03" + struct.pack("!H", 1395) + bytes(1395)
    clients = [
        bytes([10, random.randint(1, 50), random.randint(0, 255), random.randint(1, 254)])
        for _ in range(20_000)
    ]
    servers = [bytes([203, 113, random.randint(0, 255), random.randint(1, 254)]) for _ in range(500)]
    resolvers = [bytes([10, 0, 0, 53]), bytes([8, 8, 8, 8])]
    hellos = [(_client_hello(sni), sni) for sni in _SNIS]
    server_hello = _server_hello()
    app_data = b"\x17\x03\x03\x00\x40" + bytes(64)
    w = _Writer(path)
    ts = 1_764_000_000.0
    while w.count < n_packets:
        ts += 0.001
        c, s, cp = random.choice(clients), random.choice(servers), random.randint(1024, 65535)
        r = random.random()
        if r < 0.25:
            req = b"GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: %s\r\nAccept: */*\r\n\r\n" % (
                random.choice(_PATHS),
                random.choice(_SNIS).encode(),
                random.choice(_AGENTS),
            )
            body = b"<html>" + bytes(200) + b"</html>"
            resp = (
                b"HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: %d\r\n\r\n%s"
                % (len(body) + downloads * len(chunk), body)
            )
            _tcp_session(w, ts, c, s, cp, 80, [(True, req), (False, resp)] + [(False, chunk)] * downloads)
        elif r < 0.50:
            hello, _ = random.choice(hellos)
            _tcp_session(
                w,
                ts,
                c,
                s,
                cp,
                443,
                [(True, hello), (False, server_hello), (True, app_data), (False, app_data)]
                + [(False, tls_chunk)] * downloads,
            )
        elif r < 0.80:
            ident, name = random.getrandbits(16), random.choice(_SNIS)
            res = random.choice(resolvers)
            w.udp(ts, c, res, cp, 53, _dns_query(ident, name))
            w.udp(ts + 0.0004, res, c, 53, cp, _dns_answer(ident, name, s))
        elif r < 0.90:
            w.udp(ts, c, s, cp, 123, b"\x23" + bytes(47))
            w.udp(ts + 0.0002, s, c, 123, cp, b"\x24" + bytes(47))
        elif r < 0.95:
            ident = random.getrandbits(16)
            w.icmp(ts, c, s, 8, ident, 1)
            w.icmp(ts + 0.0003, s, c, 0, ident, 1)
        else:
            seq = random.getrandbits(32)
            w.tcp(ts, c, s, cp, random.randint(1, 1023), seq, 0, _SYN)
            w.tcp(ts + 0.0001, s, c, 0, cp, 0, seq + 1, _RST | _ACK)
    w.close()


def write_distinct(path: Path, n_flows: int) -> None:
    """One SYN per flow: sources 10.x.y.z with varying ports, to 192.0.2.1..254 ports 1..65535."""
    w = _Writer(path)
    ts = 1_764_000_000.0
    for i in range(n_flows):
        src = bytes([10, (i >> 16) & 0xFF, (i >> 8) & 0xFF, i & 0xFF])
        w.tcp(
            ts + i * 0.00001,
            src,
            bytes([192, 0, 2, 1 + i % 254]),
            1024 + i % 60000,
            1 + i % 65535,
            i,
            0,
            _SYN,
        )
    w.close()


def ensure(path: Path, make: Any, *args: Any) -> Path:
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        tmp = path.with_suffix(".tmp")
        make(tmp, *args)
        tmp.rename(path)
        print(
            f"generated {path} ({path.stat().st_size / 2**20:.0f} MiB) in {time.perf_counter() - t0:.1f} s",
            file=sys.stderr,
        )
    return path


# -- measurements --------------------------------------------------------------------


def analyse(path: Path, max_flows: int | None = None) -> dict[str, Any]:
    """Decode + analyse one capture into a counting sink: packets, records, wall and CPU seconds."""
    from hcm_soc.collectors.network.analyzer import NetworkAnalyzer
    from hcm_soc.collectors.network.capture import fewer_collections
    from hcm_soc.collectors.network.pcapfile import iter_pcap
    from hcm_soc.config import NetworkSettings

    s = NetworkSettings()
    records: Counter[str] = Counter()

    def count(dataset: str, event: dict[str, Any], id_key: str | None) -> None:
        records[dataset] += 1

    analyzer = NetworkAnalyzer(
        count,
        internal_networks=s.internal_networks,
        max_flows=max_flows or s.max_flows,
        active_timeout=s.active_timeout,
        idle_timeout=s.idle_timeout,
    )
    t0, c0 = time.perf_counter(), time.process_time()
    packets = 0
    with fewer_collections():  # as `hcm-soc pcap` reads (capture.read_capture)
        for packet in iter_pcap(path, decoder=analyzer.decoder):
            analyzer.add(packet)
            packets += 1
        analyzer.finish()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {
        "packets": packets,
        "records": dict(records),
        "seconds": wall,
        "cpu_seconds": cpu,
        "packets_per_s": packets / wall,
        "packets_per_cpu_s": packets / cpu,
        "stats": analyzer.stats(),
    }


def records_digest(path: Path) -> str:
    """SHA-256 of every record of a capture, in order: ``[dataset, event, id key]`` as compact JSON
    with sorted keys, one per line (no final newline). Equal digests before and after a change of
    the analyzer (or between its compiled and pure-Python forms) mean identical records."""
    import hashlib
    import json

    from hcm_soc.collectors.network.analyzer import NetworkAnalyzer
    from hcm_soc.collectors.network.pcapfile import iter_pcap
    from hcm_soc.config import NetworkSettings

    s = NetworkSettings()
    digest = hashlib.sha256()
    separator = b""

    def add(dataset: str, event: dict[str, Any], id_key: str | None) -> None:
        nonlocal separator
        digest.update(
            separator + json.dumps([dataset, event, id_key], sort_keys=True, separators=(",", ":")).encode()
        )
        separator = b"\n"

    analyzer = NetworkAnalyzer(
        add,
        internal_networks=s.internal_networks,
        max_flows=s.max_flows,
        active_timeout=s.active_timeout,
        idle_timeout=s.idle_timeout,
    )
    for packet in iter_pcap(path, decoder=analyzer.decoder):
        analyzer.add(packet)
    analyzer.finish()
    return digest.hexdigest()


def implementation() -> str:
    """Compiled (Cython) or pure-Python network collector, as loaded by this process."""
    from hcm_soc.collectors.network import implementation as which

    return which()


def stages(path: Path) -> dict[str, float]:
    """Packets per CPU second of the first stages alone: reading + decoding into `Packet`s, and
    that + the flow table with its flow records (no application analyzers). With the full
    analyzer's rate this says where the time goes."""
    from hcm_soc.collectors.network.capture import fewer_collections
    from hcm_soc.collectors.network.flows import FlowTable
    from hcm_soc.collectors.network.pcapfile import iter_pcap
    from hcm_soc.config import NetworkSettings

    s = NetworkSettings()
    out: dict[str, float] = {}
    c0 = time.process_time()
    with fewer_collections():
        packets = sum(1 for _ in iter_pcap(path))
    out["decode"] = packets / (time.process_time() - c0)
    records = 0

    def count(event: dict[str, Any]) -> None:
        nonlocal records
        records += 1

    table = FlowTable(
        count,
        s.max_flows,
        internal_networks=s.internal_networks,
        active_timeout=s.active_timeout,
        idle_timeout=s.idle_timeout,
    )
    add = table.add
    c0 = time.process_time()
    last = 0.0
    with fewer_collections():
        for packet in iter_pcap(path):
            if packet.ts - last >= 1.0:  # the analyzer's sweep interval
                last = packet.ts
                table.expire(packet.ts)
            add(packet)
        table.flush()
    out["decode_flows"] = packets / (time.process_time() - c0)
    return out


# fmt: off
TSHARK_FIELDS = [
    "frame.time_epoch", "frame.len", "ip.src", "ip.dst", "ip.proto", "tcp.srcport", "tcp.dstport", "tcp.flags",
    "udp.srcport", "udp.dstport", "icmp.type", "dns.id", "dns.qry.name", "dns.qry.type", "dns.flags.rcode",
    "dns.a", "dns.aaaa", "dns.resp.ttl", "http.request.method", "http.host", "http.request.uri",
    "http.user_agent", "http.response.code", "http.content_type", "tls.handshake.extensions_server_name",
    "tls.handshake.extensions_alpn_str", "tls.handshake.ciphersuite", "tls.handshake.version",
    "tls.handshake.ja3",
]
# fmt: on


def run_tshark(path: Path, cpu: int) -> dict[str, Any] | None:
    exe = shutil.which("tshark")
    if exe is None:
        print("tshark not found: skipped (install it with `apt-get install -y tshark`)", file=sys.stderr)
        return None
    cmd = [exe, "-r", str(path), "-n", "-T", "fields"]
    for f in TSHARK_FIELDS:
        cmd += ["-e", f]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    with open(os.devnull, "wb") as sink:
        proc = subprocess.run(
            cmd,
            stdout=sink,
            stderr=subprocess.PIPE,
            check=False,
            preexec_fn=lambda: os.sched_setaffinity(0, {cpu}),
        )
    seconds = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        print(f"tshark failed: {proc.stderr.decode(errors='replace')[:500]}", file=sys.stderr)
        return None
    cpu_seconds = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    # tshark prints one line per packet; count them once, outside the timed run
    packets = int(subprocess.run([exe, "-r", str(path), "-n", "-T", "fields", "-e", "frame.number"],
                                 capture_output=True, check=True).stdout.count(b"\n"))  # fmt: skip
    version = subprocess.run([exe, "--version"], capture_output=True, text=True, check=False).stdout
    return {
        "packets": packets,
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "packets_per_s": packets / seconds,
        "packets_per_cpu_s": packets / cpu_seconds,
        "version": version.splitlines()[0] if version else "?",
        "command": f"tshark -r {path.name} -n -T fields " + " ".join(f"-e {f}" for f in TSHARK_FIELDS),
    }


def _child(args: list[str]) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, __file__, *args], capture_output=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"child {args} failed:\n{proc.stderr.decode(errors='replace')}")
    out: dict[str, Any] = orjson.loads(proc.stdout.splitlines()[-1])
    return out


def child_memory(path: Path) -> dict[str, Any]:
    result = analyse(path)
    result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result


def child_es(path: Path, url: str, limit: int) -> dict[str, Any]:
    """The `hcm-soc pcap` path for the first `limit` packets of `path`, into a fresh prefix."""
    from itertools import islice

    from hcm_soc.collectors.network.analyzer import NetworkAnalyzer
    from hcm_soc.collectors.network.capture import fewer_collections
    from hcm_soc.collectors.network.pcapfile import iter_pcap
    from hcm_soc.collectors.network.writer import NetworkRecordWriter
    from hcm_soc.config import NetworkSettings, load_settings
    from hcm_soc.store.bulk import BulkWriter
    from hcm_soc.store.client import make_client
    from hcm_soc.store.names import IndexNames
    from hcm_soc.store.templates import build_items, install, uninstall

    client = make_client(load_settings(env={}), urls=[url])
    names = IndexNames(prefix=f"bench{uuid.uuid4().hex[:8]}", namespace="bench")
    install(client, build_items(names))
    s = NetworkSettings()
    try:
        writer = BulkWriter(client, names)
        sink = NetworkRecordWriter(writer, names, source="bench-pcap")
        analyzer = NetworkAnalyzer(
            sink,
            internal_networks=s.internal_networks,
            max_flows=s.max_flows,
            active_timeout=s.active_timeout,
            idle_timeout=s.idle_timeout,
        )
        t0, c0 = time.perf_counter(), time.process_time()
        packets = 0
        with fewer_collections():
            for packet in islice(iter_pcap(path, decoder=analyzer.decoder), limit):
                analyzer.add(packet)
                packets += 1
            analyzer.finish()
        writer.close()
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
        stats = writer.stats()
        client.indices.refresh(index=names.events_pattern)
        stored = int(client.count(index=names.events_pattern)["count"])
        total = sum(sink.records.values())
        return {
            "packets": packets,
            "records": total,
            "by_dataset": dict(sink.records),
            "stored": stored,
            "seconds": seconds,
            "cpu_seconds": cpu,
            "records_per_s": total / seconds,
            "packets_per_s": packets / seconds,
            "writer": stats,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        }
    finally:
        uninstall(client, names)


def _load() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def measure_mix(path: Path, rounds: int, cpu: int, skip_tshark: bool, digest: bool = True) -> dict[str, Any]:
    os.sched_setaffinity(0, {cpu})
    runs = []
    for i in range(rounds):
        r = analyse(path)
        runs.append(r)
        print(
            f"  ours round {i + 1}: {r['packets']:,} packets, {r['seconds']:.2f} s wall "
            f"({r['packets_per_s']:,.0f}/s), {r['cpu_seconds']:.2f} s CPU ({r['packets_per_cpu_s']:,.0f}/s); "
            f"load {_load()}",
            file=sys.stderr,
        )
    stage_rates = stages(path)
    print(
        f"  stages: decode {stage_rates['decode']:,.0f}/CPU-s, decode + flows {stage_rates['decode_flows']:,.0f}/CPU-s",
        file=sys.stderr,
    )
    os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))
    best = max(runs, key=lambda r: r["packets_per_cpu_s"])
    out: dict[str, Any] = {
        "capture": str(path),
        "capture_mib": round(path.stat().st_size / 2**20, 1),
        "packets": best["packets"],
        "records": best["records"],
        "packets_per_s_median": statistics.median(r["packets_per_s"] for r in runs),
        "packets_per_cpu_s_median": statistics.median(r["packets_per_cpu_s"] for r in runs),
        "rounds": runs,
        "stages_packets_per_cpu_s": stage_rates,
    }
    if not skip_tshark:
        t = run_tshark(path, cpu)
        if t is not None:
            print(
                f"  tshark: {t['seconds']:.2f} s wall ({t['packets_per_s']:,.0f}/s), {t['cpu_seconds']:.2f} s CPU "
                f"({t['packets_per_cpu_s']:,.0f}/s); load {_load()}",
                file=sys.stderr,
            )
            t["ratio_wall"] = out["packets_per_s_median"] / t["packets_per_s"]
            t["ratio_cpu"] = out["packets_per_cpu_s_median"] / t["packets_per_cpu_s"]
        out["tshark"] = t
    if digest:
        out["records_sha256"] = records_digest(path)
        print(f"  records SHA-256 {out['records_sha256']}", file=sys.stderr)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--packets", type=int, default=1_000_000)
    p.add_argument("--downloads", type=int, default=8, help="server segments per session of the second mix")
    p.add_argument("--distinct-flows", type=int, default=1_000_000)
    p.add_argument("--cache", type=Path, default=Path("/tmp/hcm-bench-pcap"))
    p.add_argument(
        "--es-url", default=os.environ.get("HCM_SOC_ES_URL", "http://127.0.0.1:9270").split(",")[0]
    )
    p.add_argument(
        "--es-packets", type=int, default=1_000_000, help="packets of the mixed capture sent to ES"
    )
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--cpu", type=int, default=0, help="the core ours and tshark are pinned to")
    p.add_argument("--skip-tshark", action="store_true")
    p.add_argument("--skip-es", action="store_true")
    p.add_argument("--json", action="store_true")
    p.add_argument(
        "--skip-digest", action="store_true", help="skip the SHA-256 of all records (one more pass)"
    )
    p.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.child:
        kind, *rest = a.child
        if kind == "memory":
            result = child_memory(Path(rest[0]))
        else:
            result = child_es(Path(rest[0]), rest[1], int(rest[2]))
        sys.stdout.write(orjson.dumps(result).decode() + "\n")
        return 0

    print(f"machine: {machine_line()}; load {_load()}", file=sys.stderr)
    print(f"network collector: {implementation()}", file=sys.stderr)
    dense = ensure(a.cache / f"mixed-{a.packets}.pcap", write_mixed, a.packets)
    mixes = {"dense": dense}
    if a.downloads:
        mixes["downloads"] = ensure(
            a.cache / f"mixed-{a.packets}-dl{a.downloads}.pcap", write_mixed, a.packets, a.downloads
        )
    distinct = ensure(a.cache / f"distinct-{a.distinct_flows}.pcap", write_distinct, a.distinct_flows)
    result: dict[str, Any] = {
        "machine": machine_info(),
        "implementation": implementation(),
        "load_at_start": _load(),
        "mixes": {},
    }
    for name, path in mixes.items():
        print(f"mix {name}: {path}", file=sys.stderr)
        result["mixes"][name] = measure_mix(path, a.rounds, a.cpu, a.skip_tshark, not a.skip_digest)

    mem = _child(["--child", "memory", str(distinct)])
    print(
        f"memory: {mem['packets']:,} distinct flows, peak RSS {mem['peak_rss_mib']:.0f} MiB, "
        f"records {mem['records']}, evicted {mem['stats'].get('flows_evicted')}",
        file=sys.stderr,
    )
    result["memory"] = mem

    if not a.skip_es:
        es = _child(["--child", "es", str(dense), a.es_url, str(a.es_packets)])
        print(
            f"es: {es['records']:,} records ({es['stored']:,} stored) in {es['seconds']:.1f} s = "
            f"{es['records_per_s']:,.0f} records/s, {es['packets_per_s']:,.0f} packets/s, "
            f"peak RSS {es['peak_rss_mib']:.0f} MiB; load {_load()}",
            file=sys.stderr,
        )
        result["es"] = es
    result["load_at_end"] = _load()

    if a.json:
        sys.stdout.write(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode() + "\n")
        return 0
    print(f"machine       {machine_line()}")
    print(f"collector     {result['implementation']}")
    print(f"load average  {result['load_at_start']} at start, {result['load_at_end']} at end (1/5/15 min)")
    for name, m in result["mixes"].items():
        print(f"mix {name}: {m['capture_mib']} MiB, {m['packets']:,} packets, records {m['records']}")
        if "records_sha256" in m:
            print(f"  records     SHA-256 {m['records_sha256']}")
        print(
            f"  ours        {m['packets_per_s_median']:,.0f} packets/s wall, "
            f"{m['packets_per_cpu_s_median']:,.0f} packets/CPU-s (median of {a.rounds})"
        )
        st = m["stages_packets_per_cpu_s"]
        full = m["packets_per_cpu_s_median"]
        print(
            f"  stages      decode {st['decode']:,.0f}/CPU-s ({1e6 / st['decode']:.2f} µs), + flow table "
            f"{st['decode_flows']:,.0f}/CPU-s ({1e6 / st['decode_flows']:.2f} µs), + analyzers "
            f"{full:,.0f}/CPU-s ({1e6 / full:.2f} µs per packet)"
        )
        t = m.get("tshark")
        if t:
            print(
                f"  tshark      {t['packets_per_s']:,.0f} packets/s wall, {t['packets_per_cpu_s']:,.0f} packets/CPU-s "
                f"({t['version']})"
            )
            verdict = "met" if t["ratio_cpu"] >= 5 else "NOT met"
            print(
                f"  ratio       {t['ratio_wall']:.1f}x wall, {t['ratio_cpu']:.1f}x CPU (goal >= 5x: {verdict})"
            )
    verdict = "met" if mem["peak_rss_mib"] * 1.048576 < 300 else "NOT met"
    print(
        f"peak RSS      {mem['peak_rss_mib']:.0f} MiB with {mem['packets']:,} distinct flows (goal < 300 MB: {verdict})"
    )
    if "es" in result:
        es = result["es"]
        print(
            f"into ES       {es['records_per_s']:,.0f} records/s ({es['records']:,} records from "
            f"{es['packets']:,} packets, {es['packets_per_s']:,.0f} packets/s end to end)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
