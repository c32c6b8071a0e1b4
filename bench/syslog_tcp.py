"""Syslog over TCP end to end, against the raw `_bulk` ceiling of this machine.

    .venv/bin/python bench/syslog_tcp.py [--messages N] [--connections C] [--url URL] [--warmup N] [--json]

Elasticsearch is `--url`, else HCM_SOC_ES_URL (the `es.url` setting); without
either, the script starts its own local development node (heap 2g) in a
temporary directory and stops it at the end. Templates are installed under a
fresh prefix (`bench<random>`), so nothing existing is touched.

N RFC 3164 auth lines (sshd, sudo, CRON; `<PRI>Mmm dd hh:mm:ss host prog[pid]: msg`)
are generated and split over C connections before anything is timed. Then:

  pipeline  a sender process (not this one: real senders do not share the
            listener's GIL) writes the lines over C connections (newline framed,
            sendfile) to a SyslogCollector on 127.0.0.1 -> IngestPipeline (format `syslog`,
            `raw` if the syslog parser is missing) -> BulkWriter (5000-document
            batches) -> Elasticsearch. Timed from the first write until every
            message is counted in Elasticsearch (listener drained and flushed,
            index refreshed, count = N).
  ceiling   the very documents the pipeline produces (same parser, envelope
            and ids, built beforehand and not timed) serialised into NDJSON
            `_bulk` bodies of 5000 `create` actions and posted back to back with
            `client.bulk(operations=bytes)` from one thread, then counted the same way.

Both are verified (count = N). The goal is pipeline >= 60 % of ceiling. Before
both, `--warmup` documents (default 50,000) are posted unmeasured, so neither
pays for a cold JVM. Progress goes to stderr, the summary to stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import multiprocessing
import os
import random
import resource
import socket
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
from elasticsearch import Elasticsearch

from hcm_soc.collectors.base import RawRecord
from hcm_soc.collectors.definition import SourceDefinition
from hcm_soc.collectors.pipeline import IngestPipeline
from hcm_soc.collectors.syslog import SyslogCollector
from hcm_soc.config import load_settings
from hcm_soc.store.bulk import BulkWriter, make_id
from hcm_soc.store.client import make_client
from hcm_soc.store.localnode import LocalNode
from hcm_soc.store.names import IndexNames
from hcm_soc.store.templates import build_items, install, uninstall
from machine import machine_info

BATCH = 5000
GOAL_PERCENT = 60.0
DATASET = "system.auth"
CEILING_DATASET = "system.auth.ceiling"
WARMUP_DATASET = "system.auth.warmup"

_HOSTS = [f"srv-{name}-{k:02d}" for name in ("web", "db", "mail", "dns", "vpn", "app") for k in range(1, 9)]
_USERS = ["root", "admin", "deploy", "backup", "nguyenvana", "tranthib", "lehoangc", "oracle", "git", "test"]
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_LINES = [  # (weight, PRI, program, message)
    (30, 38, "sshd", "Failed password for {user} from {ip} port {port} ssh2"),
    (20, 38, "sshd", "Failed password for invalid user {user} from {ip} port {port} ssh2"),
    (15, 38, "sshd", "Accepted publickey for {user} from {ip} port {port} ssh2: ED25519 SHA256:{key}"),
    (15, 38, "sshd", "Disconnected from authenticating user {user} {ip} port {port} [preauth]"),
    (8, 86, "sshd", "pam_unix(sshd:session): session opened for user {user}(uid={uid}) by (uid=0)"),
    (5, 85, "sudo", "{user} : TTY=pts/0 ; PWD=/home/{user} ; USER=root ; COMMAND=/usr/bin/id"),
    (4, 36, "sshd", "Disconnecting {user} {ip} port {port}: Too many authentication failures"),
    (3, 86, "CRON", "pam_unix(cron:session): session closed for user {user}"),
]
_WEIGHTS = [w for w, *_ in _LINES]


# -- environment (kept here rather than imported from bulk_ingest.py, so each script stands alone) ------
def progress(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def elasticsearch_url(url: str | None) -> Iterator[tuple[str, str]]:
    """Yield (url, where): the given cluster, or a local node started (and stopped) here."""
    if url:
        yield url, "external cluster"
        return
    with tempfile.TemporaryDirectory(prefix="hcm-bench-") as tmp:
        node = LocalNode(Path(tmp), port=free_port(), cluster_name="hcm-soc-bench-syslog", heap="2g")
        progress(f"starting a local Elasticsearch node (heap 2g) at {node.url} ...")
        node.start(timeout=300)
        try:
            yield node.url, "local node started by the benchmark (heap 2g, same machine)"
        finally:
            progress("stopping the local node")
            node.stop()


# -- messages and documents ------------------------------------------------------------------------------
def syslog_format() -> str:
    try:
        from hcm_soc.parsers.registry import get_parser

        get_parser("syslog")
        return "syslog"
    except ImportError:
        return "raw"


def generate_lines(n: int, seed: int = 20261125) -> list[bytes]:
    """N RFC 3164 auth lines, deterministic for a given seed."""
    rng = random.Random(seed)
    start = int(datetime(2026, 11, 25, 8, 0, 0).timestamp())
    lines = []
    for i in range(n):
        _, pri, program, template = rng.choices(_LINES, weights=_WEIGHTS)[0]
        ip = f"{rng.choice((10, 172, 203))}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
        user = rng.choice(_USERS)
        message = template.format(
            user=user,
            ip=ip,
            port=rng.randrange(1024, 65536),
            uid=rng.randrange(1000, 5000),
            key=f"{rng.getrandbits(128):032x}",
        )
        t = time.gmtime(start + i // 50)
        stamp = f"{_MONTHS[t.tm_mon - 1]} {t.tm_mday:2d} {t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}"
        pid = rng.randrange(300, 400_000)
        lines.append(f"<{pri}>{stamp} {rng.choice(_HOSTS)} {program}[{pid}]: {message}".encode())
    return lines


def write_payloads(lines: list[bytes], connections: int, folder: Path) -> list[Path]:
    """Per connection, a file with its share of the lines, newline framed."""
    paths = []
    for c in range(connections):
        path = folder / f"connection-{c}.log"
        path.write_bytes(b"".join(line + b"\n" for line in lines[c::connections]))
        paths.append(path)
    return paths


def send_process(address: tuple[str, int], paths: list[Path], go: Any, done_at: Any) -> None:
    """The syslog senders, in their own process so that they do not compete with the listener
    for its GIL (real senders are other machines): connect, wait for `go`, sendfile each file."""
    socks = [socket.create_connection(address, timeout=600) for _ in paths]
    if not go.wait(300):
        raise SystemExit("the benchmark never said go")

    def send(sock: socket.socket, path: Path) -> None:
        with sock, open(path, "rb") as f:
            sock.sendfile(f)

    threads = [threading.Thread(target=send, args=pair) for pair in zip(socks, paths, strict=True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    done_at.value = time.monotonic()


def definition(fmt: str) -> SourceDefinition:
    return SourceDefinition.model_validate(
        {
            "name": "bench-syslog",
            "type": "syslog",
            "format": fmt,
            "dataset": DATASET,
            "syslog": {"protocol": "tcp", "listen": "127.0.0.1:0", "framing": "auto"},
        }
    )


class _Capture:
    """Stands in for the BulkWriter to collect the documents the pipeline would send."""

    def __init__(self) -> None:
        self.ops: list[tuple[str, bytes]] = []

    def add(self, index: str, doc: dict[str, Any], *, id_key: str | None = None) -> str:
        doc_id = make_id(id_key if id_key is not None else orjson.dumps(doc))
        self.ops.append((doc_id, orjson.dumps(doc)))
        return doc_id

    def flush(self) -> None:
        pass


def pipeline_documents(lines: list[bytes], fmt: str, names: IndexNames) -> list[tuple[str, bytes]]:
    """(id, JSON) of what the pipeline makes of `lines`: same parser, envelope and fields."""
    capture = _Capture()
    pipeline = IngestPipeline.for_definition(capture, names, definition(fmt))  # type: ignore[arg-type]
    for i, line in enumerate(lines):
        record = RawRecord(
            data=line.decode(),
            id_key=f"bench:{i}",
            fields={"log": {"source": {"address": f"127.0.0.1:{40000 + i % 8}"}}},
        )
        pipeline.handle(record)
    return capture.ops


def bulk_bodies(index: str, docs: list[tuple[str, bytes]]) -> list[tuple[int, bytes]]:
    prefix = b'{"create":{"_index":"%s","_id":"' % index.encode()
    return [
        (
            len(docs[i : i + BATCH]),
            b"".join(b'%s%s"}}\n%s\n' % (prefix, d.encode(), body) for d, body in docs[i : i + BATCH]),
        )
        for i in range(0, len(docs), BATCH)
    ]


def count(client: Elasticsearch, index: str) -> int:
    client.indices.refresh(index=index)
    return int(client.count(index=index)["count"])


@dataclass(slots=True)
class Phase:
    seconds: float
    events_per_s: float
    indexed: int
    verified: bool
    load_average_at_start: float


def wait_for(check: Any, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {seconds:.0f} s waiting for {what}")
        time.sleep(0.02)


def post(client: Elasticsearch, bodies: list[tuple[int, bytes]], label: str) -> float:
    t0 = time.perf_counter()
    for _docs, body in bodies:
        if client.bulk(operations=body, filter_path="errors").get("errors"):
            raise RuntimeError(f"{label}: Elasticsearch refused documents")
    return time.perf_counter() - t0


def run_ceiling(client: Elasticsearch, names: IndexNames, docs: list[tuple[str, bytes]]) -> Phase:
    index = names.events(CEILING_DATASET)
    bodies = bulk_bodies(index, docs)
    progress(f"ceiling: posting {len(bodies):,} bodies of {BATCH} documents to {index}")
    load = os.getloadavg()[0]
    t0 = time.monotonic()
    post(client, bodies, "ceiling")
    indexed = count(client, index)  # counted in Elasticsearch, as the pipeline is
    seconds = time.monotonic() - t0
    return Phase(seconds, len(docs) / seconds, indexed, indexed == len(docs), load)


def run_pipeline(
    client: Elasticsearch, names: IndexNames, fmt: str, paths: list[Path], n: int
) -> tuple[Phase, dict[str, Any]]:
    index = names.events(DATASET)
    writer = BulkWriter(client, names, max_docs=BATCH)
    pipeline = IngestPipeline.for_definition(writer, names, definition(fmt))
    collector = SyslogCollector(definition(fmt), pipeline)
    collector.start()
    stop = threading.Event()
    server = threading.Thread(target=collector.run, args=(stop,), name="bench-listener", daemon=True)
    server.start()
    mp = multiprocessing.get_context("spawn")
    go, done_at = mp.Event(), mp.Value("d", 0.0)
    sender = mp.Process(target=send_process, args=(collector.address, paths, go, done_at), daemon=True)
    sender.start()
    wait_for(lambda: collector.stats()["connections"] == len(paths), 120, "the senders to connect")
    progress(f"pipeline: {len(paths)} connections sending {n:,} lines to {collector.address}")
    load = os.getloadavg()[0]
    go.set()
    t0 = time.monotonic()
    last = 0

    def received() -> bool:
        nonlocal last
        got = collector.stats()["messages"]
        if got - last >= 100_000:
            last = got
            progress(f"pipeline: {got:,} received ({got / (time.monotonic() - t0):,.0f}/s)")
        if not server.is_alive():
            raise RuntimeError(f"pipeline: the listener stopped, {collector.stats()}")
        return got >= n

    wait_for(received, 3600, f"{n:,} messages")
    sender.join(timeout=60)
    stop.set()  # the listener hands on what it has read, flushes the pipeline and returns
    server.join(timeout=600)
    writer.close()
    indexed = count(client, index)
    seconds = time.monotonic() - t0
    stats = {
        "collector": collector.stats(),
        "writer": writer.stats(),
        "parsed": pipeline.parsed,
        "parse_failures": pipeline.failed,
        "clients_done_s": round(done_at.value - t0, 2) if done_at.value else None,
    }
    return Phase(seconds, n / seconds, indexed, indexed == n, load), stats


def summary(r: dict[str, Any]) -> str:
    m, p, c = r["machine"], r["pipeline"], r["ceiling"]
    st = r["pipeline_stats"]
    ok = "yes" if p["verified"] and c["verified"] else "NO"
    return "\n".join(
        [
            "hcm-soc syslog over TCP benchmark",
            f"  machine        {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB RAM, {m['platform']}",
            f"  python         {m['python']}",
            f"  elasticsearch  {r['es_version']} ({r['es_where']})",
            f"  messages       {r['messages']:,} RFC 3164 auth lines over {r['connections']} TCP connections, "
            f"format {r['format']}, {r['avg_doc_bytes']} bytes of JSON per event, batches of {BATCH}",
            f"  pipeline       {p['events_per_s']:>10,.0f} events/s ({p['seconds']:.1f} s to counted in "
            f"Elasticsearch; clients done after {st['clients_done_s']} s; indexed {p['indexed']:,})",
            f"  ceiling        {c['events_per_s']:>10,.0f} docs/s   ({c['seconds']:.1f} s to counted; "
            f"indexed {c['indexed']:,})",
            f"  load average   {p['load_average_at_start']:.2f} before the pipeline, "
            f"{c['load_average_at_start']:.2f} before the ceiling (1 min; other work on the machine)",
            f"  ratio          {r['ratio_percent']:.1f} % of ceiling (goal >= {GOAL_PERCENT:.0f} %: "
            f"{'met' if r['goal_met'] else 'NOT met'})",
            f"  parse          {st['parsed']:,} parsed, {st['parse_failures']:,} failures; "
            f"listener: {st['collector']['framing_errors']} framing errors, {st['collector']['dropped']} dropped",
            f"  peak RSS       {r['peak_rss_mib']:,.0f} MiB",
            f"  verified       {ok}",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--messages", type=int, default=500_000, help="number of messages (default 500,000)")
    parser.add_argument("--connections", type=int, default=8, help="client connections (default 8)")
    parser.add_argument("--url", help="Elasticsearch URL (default: HCM_SOC_ES_URL, else a local node)")
    parser.add_argument("--warmup", type=int, default=50_000, help="documents posted unmeasured first")
    parser.add_argument("--json", action="store_true", help="print the result as JSON instead of a summary")
    args = parser.parse_args(argv)
    if args.messages < 1 or args.connections < 1 or args.warmup < 0:
        parser.error("--messages and --connections must be at least 1, --warmup at least 0")

    settings = load_settings()
    fmt = syslog_format()
    progress(f"generating {args.messages:,} lines (format {fmt})")
    lines = generate_lines(args.messages)
    payload_dir = tempfile.TemporaryDirectory(prefix="hcm-bench-syslog-")
    paths = write_payloads(lines, args.connections, Path(payload_dir.name))
    names = IndexNames(prefix=f"bench{uuid.uuid4().hex[:8]}", namespace="bench")
    progress("building the ceiling's documents with the same parser and envelope (not timed)")
    docs = pipeline_documents(lines, fmt, names)
    avg_doc_bytes = round(sum(len(b) for _, b in docs[:10_000]) / min(len(docs), 10_000))
    del lines
    gc.freeze()  # the pre-built payloads are not what a collector holds; keep the GC from scanning them

    external = args.url or (settings.es.url[0] if settings.es.url else None)
    with elasticsearch_url(external) as (url, where):
        client = make_client(settings, urls=[url])
        try:
            install(client, build_items(names))
            progress(f"templates installed under prefix {names.prefix}")
            es_version = str(client.info()["version"]["number"])
            if args.warmup:
                warm = names.events(WARMUP_DATASET)
                seconds = post(client, bulk_bodies(warm, docs[: args.warmup]), "warm-up")
                progress(f"warm-up: {min(args.warmup, len(docs)) / seconds:,.0f} docs/s (not measured)")
            pipeline, stats = run_pipeline(client, names, fmt, paths, args.messages)
            progress(f"pipeline: {pipeline.events_per_s:,.0f} events/s, verified: {pipeline.verified}")
            ceiling = run_ceiling(client, names, docs)
            progress(f"ceiling: {ceiling.events_per_s:,.0f} docs/s, verified: {ceiling.verified}")
        finally:
            if external:
                uninstall(client, names)  # best effort: a node without data streams keeps its streams
            client.close()
            payload_dir.cleanup()

    ratio = 100.0 * pipeline.events_per_s / ceiling.events_per_s
    result = {
        "date": datetime.now().date().isoformat(),
        "machine": machine_info(),
        "es_version": es_version,
        "es_where": where,
        "messages": args.messages,
        "connections": args.connections,
        "format": fmt,
        "avg_doc_bytes": avg_doc_bytes,
        "batch": BATCH,
        "pipeline": asdict(pipeline),
        "pipeline_stats": stats,
        "ceiling": asdict(ceiling),
        "ratio_percent": round(ratio, 1),
        "goal_percent": GOAL_PERCENT,
        "goal_met": ratio >= GOAL_PERCENT,
        "peak_rss_mib": round(peak_rss_mib()),
    }
    print(json.dumps(result, indent=2) if args.json else summary(result))
    return 0 if pipeline.verified and ceiling.verified else 1


if __name__ == "__main__":
    sys.exit(main())
