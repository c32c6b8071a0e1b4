"""Bulk ingest benchmark: the BulkWriter against the raw `_bulk` ceiling of this machine.

    .venv/bin/python bench/bulk_ingest.py [--events N] [--url URL] [--warmup N] [--rounds R] [--json]

Elasticsearch is `--url`, else the `es.url` setting (HCM_SOC_ES_URL); without
either, the script starts its own local development node (heap 2g) on a free
port in a temporary directory and stops it at the end. Templates are installed
under a fresh prefix (`bench<random>`), so nothing existing is touched.

N small syslog auth events are generated before anything is timed. Then:

  writer   `BulkWriter.add(index, doc, id_key=...)` for every event, then `close()`;
           timed from the first `add` to the end of `close`. Includes what the
           writer does per event: JSON serialisation, id hashing, batching, sending.
  ceiling  the same events serialised beforehand into NDJSON `_bulk` bodies
           (`create`, deterministic ids, batches of the same size), posted
           back to back with `client.bulk`: what Elasticsearch and the HTTP
           client can take from one Python thread on this machine.

Both go to their own data stream and are verified (refresh + count = N). The
goal is writer >= 80 % of ceiling. Progress goes to stderr, the summary to
stdout (`--json` for a JSON object instead). Exit status 1 when a verification fails.

Before both, `--warmup` events (default 1,000,000, at most N) go unmeasured
to a third stream, so that the measurement that runs first does not pay for a
cold node (with 100,000 the writer, measured first, lost about 20 points of
ratio on an idle machine), and before each one the script waits until no merge
is running.

The CPU use of the whole machine during each measurement is reported, split
into this process, the local node and other processes: when other processes
take more than a little, the numbers are flagged as unreliable. On a shared
machine, `--rounds R` cuts the events into R slices and measures writer and
ceiling slice by slice, alternating which goes first, so that both see the
same conditions (the default, 1, is: all events through the writer, then all
through the ceiling).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import random
import resource
import socket
import sys
import tempfile
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
from elasticsearch import Elasticsearch

from hcm_soc.config import load_settings
from hcm_soc.store.bulk import BulkWriter, make_id
from hcm_soc.store.client import make_client
from hcm_soc.store.localnode import LocalNode
from hcm_soc.store.names import IndexNames
from hcm_soc.store.templates import build_items, install, uninstall
from machine import machine_info

BATCH = 5000  # documents per _bulk request, for both paths (the writer's default max_docs)
PROGRESS_EVERY = 100_000
GOAL_PERCENT = 80.0
NOISY_PERCENT = 10.0  # CPU share of other processes above which the numbers are flagged unreliable
WRITER_DATASET = "syslog.auth"
CEILING_DATASET = "syslog.auth.ceiling"
WARMUP_DATASET = "syslog.auth.warmup"

Doc = dict[str, Any]

_HOSTS = [f"srv-{name}-{k:02d}" for name in ("web", "db", "mail", "dns", "vpn", "app") for k in range(1, 9)]
_USERS = ["root", "admin", "deploy", "backup", "nguyenvana", "tranthib", "lehoangc", "oracle", "git", "test"]
_SEVERITIES = {"info": (6, "informational"), "notice": (5, "notice"), "warning": (4, "warning")}
_MESSAGES = [  # (weight, process.name, syslog severity, message)
    (30, "sshd", "info", "Failed password for {user} from {ip} port {port} ssh2"),
    (20, "sshd", "info", "Failed password for invalid user {user} from {ip} port {port} ssh2"),
    (15, "sshd", "info", "Accepted publickey for {user} from {ip} port {port} ssh2: ED25519 SHA256:{key}"),
    (15, "sshd", "info", "Disconnected from authenticating user {user} {ip} port {port} [preauth]"),
    (8, "sshd", "info", "pam_unix(sshd:session): session opened for user {user}(uid={uid}) by (uid=0)"),
    (5, "sudo", "notice", "{user} : TTY=pts/0 ; PWD=/home/{user} ; USER=root ; COMMAND=/usr/bin/id"),
    (4, "sshd", "warning", "Disconnecting {user} {ip} port {port}: Too many authentication failures"),
    (3, "CRON", "info", "pam_unix(cron:session): session closed for user {user}"),
]
_WEIGHTS = [weight for weight, *_ in _MESSAGES]


# -- environment ---------------------------------------------------------------
def progress(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_mib() -> float:
    """Current resident set size of this process."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 1024**2


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def cpu_seconds(es_pid: int | None) -> tuple[float, float, float, float]:
    """CPU seconds so far: (machine busy, machine capacity, this process, the local node)."""
    tick = os.sysconf("SC_CLK_TCK")
    with open("/proc/stat") as f:  # cpu  user nice system idle iowait irq softirq steal ...
        jiffies = [int(x) for x in f.readline().split()[1:9]]
    total = sum(jiffies)
    own = os.times()
    es = 0
    if es_pid is not None:
        with contextlib.suppress(OSError), open(f"/proc/{es_pid}/stat") as f:
            es = sum(int(x) for x in f.read().rsplit(")", 1)[1].split()[11:13])  # utime stime
    return (total - jiffies[3] - jiffies[4]) / tick, total / tick, own.user + own.system, es / tick


class Window:
    """Wall time and the machine's CPU use (whole machine = 100 %), summed over start/stop intervals."""

    def __init__(self, es_pid: int | None) -> None:
        self.es_pid = es_pid
        self.seconds = 0.0
        self.cpu = [0.0, 0.0, 0.0, 0.0]
        self._t0 = 0.0
        self._c0 = (0.0, 0.0, 0.0, 0.0)

    def start(self) -> None:
        self._c0 = cpu_seconds(self.es_pid)
        self._t0 = time.perf_counter()

    def stop(self) -> None:
        self.seconds += time.perf_counter() - self._t0
        for k, (a, b) in enumerate(zip(self._c0, cpu_seconds(self.es_pid), strict=True)):
            self.cpu[k] += b - a

    def running_seconds(self) -> float:
        """Seconds so far, the current interval included."""
        return self.seconds + time.perf_counter() - self._t0

    def cpu_percent(self) -> dict[str, float]:
        busy, capacity, own, es = self.cpu
        cpu = {"machine_busy": busy, "bench": own}
        if self.es_pid is not None:
            cpu |= {"elasticsearch": es, "other_processes": max(0.0, busy - own - es)}
        return {k: round(100 * v / capacity, 1) for k, v in cpu.items()}


@contextlib.contextmanager
def elasticsearch_url(url: str | None) -> Iterator[tuple[str, str, int | None]]:
    """Yield (url, where, pid of the node or None): the given cluster, or a local node started here."""
    if url:
        yield url, "external cluster", None
        return
    with tempfile.TemporaryDirectory(prefix="hcm-bench-") as tmp:
        node = LocalNode(Path(tmp), port=free_port(), cluster_name="hcm-soc-bench", heap="2g")
        progress(f"starting a local Elasticsearch node (heap 2g) at {node.url} ...")
        status = node.start(timeout=300)
        try:
            yield node.url, "local node started by the benchmark (heap 2g, same machine)", status.pid
        finally:
            progress("stopping the local node")
            node.stop()


def cleanup(client: Elasticsearch, names: IndexNames) -> None:
    """Remove what the benchmark stored on an external cluster; say what could not be removed."""
    uninstall(client, names)
    left = client.indices.resolve_index(name=f"{names.prefix}-*", expand_wildcards="all")
    streams = [d["name"] for d in left.get("data_streams", [])]
    indices = [i["name"] for i in left.get("indices", [])]
    if streams or indices:
        progress(f"could not remove {', '.join(streams + indices)}: delete them by hand")


# -- events --------------------------------------------------------------------
def generate_events(n: int, seed: int = 20261125) -> list[Doc]:
    """N syslog auth events (sshd, sudo, cron) as ECS dicts, deterministic for a given seed."""
    rng = random.Random(seed)
    start = datetime(2026, 11, 25, tzinfo=timezone(timedelta(hours=7)))
    events = []
    for i in range(n):
        host = rng.choice(_HOSTS)
        user = rng.choice(_USERS)
        ip = f"{rng.choice((10, 172, 203))}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
        port = rng.randrange(1024, 65536)
        pid = rng.randrange(300, 4_000_000)
        _, process, level, template = rng.choices(_MESSAGES, weights=_WEIGHTS)[0]
        key = f"{rng.getrandbits(128):032x}"
        message = template.format(user=user, ip=ip, port=port, uid=pid % 5000, key=key)
        severity_code, severity_name = _SEVERITIES[level]
        events.append(
            {
                "@timestamp": (start + timedelta(milliseconds=37 * i)).isoformat(timespec="milliseconds"),
                "message": message,
                "host": {"name": host},
                "source": {"ip": ip},
                "user": {"name": user},
                "process": {"name": process, "pid": pid},
                "event": {"dataset": WRITER_DATASET, "sequence": i},
                "log": {
                    "syslog": {
                        "facility": {"code": 10, "name": "authpriv"},
                        "severity": {"code": severity_code, "name": severity_name},
                    }
                },
            }
        )
        if (i + 1) % PROGRESS_EVERY == 0:
            progress(f"generated {i + 1:,} events")
    return events


def serialise_batches(index: str, events: list[Doc], first: int = 0) -> Iterator[tuple[int, bytes]]:
    """(document count, NDJSON `_bulk` body) per batch of BATCH `create` actions; the ids are those
    the writer gives event number `first + k`."""
    prefix = b'{"create":{"_index":"%s","_id":"' % index.encode()
    for start in range(0, len(events), BATCH):
        chunk = events[start : start + BATCH]
        body = b"".join(
            b'%s%s"}}\n%s\n' % (prefix, make_id(f"bench:{first + start + k}").encode(), orjson.dumps(doc))
            for k, doc in enumerate(chunk)
        )
        yield len(chunk), body


# -- measurements --------------------------------------------------------------
@dataclass(slots=True)
class Phase:
    seconds: float
    docs_per_s: float
    indexed: int
    verified: bool
    cpu_percent: dict[str, float]  # of the whole machine, during the timed part


def count(client: Elasticsearch, index: str) -> int:
    client.indices.refresh(index=index)
    return int(client.count(index=index)["count"])


def settle(client: Elasticsearch, names: IndexNames, timeout: float = 300.0) -> None:
    """Wait until no merge runs on our streams, so one measurement's background work does not slow
    the next."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stats = client.indices.stats(index=names.events_pattern, metric="merge")
        if stats["_all"]["total"]["merges"]["current"] == 0:
            return
        time.sleep(0.5)
    progress(f"merges still running after {timeout:.0f} s; measuring anyway")


def post_batches(
    client: Elasticsearch,
    batches: Iterable[tuple[int, bytes]],
    label: str,
    first: int = 0,
    window: Window | None = None,
) -> None:
    """POST the `_bulk` bodies back to back (they hold events number `first`..)."""
    posted = first
    for docs, body in batches:
        resp = client.bulk(operations=body, filter_path="errors")
        if resp.get("errors"):
            raise RuntimeError(f"{label}: Elasticsearch refused documents in the batch after {posted:,}")
        posted += docs
        if posted % PROGRESS_EVERY == 0:
            rate = f" ({posted / window.running_seconds():,.0f} docs/s)" if window else ""
            progress(f"{label}: {posted:,} posted{rate}")


def warm_up(client: Elasticsearch, names: IndexNames, events: list[Doc]) -> None:
    """Index `events` into a throw-away stream first, so neither measurement pays for a cold JVM."""
    index = names.events(WARMUP_DATASET)
    progress(f"warm-up: indexing {len(events):,} events into {index} (not measured)")
    post_batches(client, serialise_batches(index, events), "warm-up")


def writer_round(
    client: Elasticsearch, names: IndexNames, events: list[Doc], first: int, window: Window
) -> dict[str, int]:
    """`add` events number `first`.. to a new BulkWriter, then `close` it; timed. Returns its stats."""
    index = names.events(WRITER_DATASET)
    writer = BulkWriter(client, names, max_docs=BATCH)
    window.start()
    for i, doc in enumerate(events, first):
        writer.add(index, doc, id_key=f"bench:{i}")
        if (i + 1) % PROGRESS_EVERY == 0:
            progress(f"writer: {i + 1:,} added ({(i + 1) / window.running_seconds():,.0f} docs/s)")
    writer.close()
    window.stop()
    return writer.stats()


def ceiling_round(
    client: Elasticsearch, names: IndexNames, events: list[Doc], first: int, window: Window
) -> None:
    """Serialise the events into `_bulk` bodies (not timed), then post them (timed)."""
    batches = list(serialise_batches(names.events(CEILING_DATASET), events, first))
    window.start()
    post_batches(client, batches, "ceiling", first, window)
    window.stop()


def measure(
    client: Elasticsearch, names: IndexNames, events: list[Doc], rounds: int, es_pid: int | None
) -> tuple[Phase, dict[str, int], Phase]:
    """Both measurements over all events, in `rounds` slices that alternate which path goes first."""
    size = -(-len(events) // rounds)
    starts = range(0, len(events), size)
    windows = {"writer": Window(es_pid), "ceiling": Window(es_pid)}
    stats: list[dict[str, int]] = []
    for r, first in enumerate(starts):
        chunk = events[first : first + size]
        order = ["writer", "ceiling"] if r % 2 == 0 else ["ceiling", "writer"]
        for path in order:
            settle(client, names)
            if path == "writer":
                stats.append(writer_round(client, names, chunk, first, windows["writer"]))
            else:
                ceiling_round(client, names, chunk, first, windows["ceiling"])
        if len(starts) > 1:
            rates = ", ".join(f"{p} {(first + len(chunk)) / w.seconds:,.0f}" for p, w in windows.items())
            progress(f"round {r + 1}/{len(starts)} done; docs/s so far: {rates}")
    writer_stats = {k: sum(s[k] for s in stats) for k in stats[0]}
    phases = []
    for path, dataset in (("writer", WRITER_DATASET), ("ceiling", CEILING_DATASET)):
        w = windows[path]
        indexed = count(client, names.events(dataset))
        phases.append(
            Phase(w.seconds, len(events) / w.seconds, indexed, indexed == len(events), w.cpu_percent())
        )
    writer, ceiling = phases
    writer.verified = writer.verified and writer_stats["sent"] == len(events)
    return writer, writer_stats, ceiling


# -- report --------------------------------------------------------------------
def summary(result: dict[str, Any]) -> str:
    m, w, c = result["machine"], result["writer"], result["ceiling"]
    ok = "yes" if w["verified"] and c["verified"] else "NO"
    lines = [
        "hcm-soc bulk ingest benchmark",
        f"  machine        {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB RAM, {m['platform']}",
        f"  python         {m['python']}",
        f"  elasticsearch  {result['es_version']} ({result['es_where']})",
        f"  events         {result['events']:,} ({result['avg_doc_bytes']} bytes of JSON on average), "
        f"batches of {BATCH}, {result['rounds']} round(s)",
        f"  writer         {w['docs_per_s']:>10,.0f} docs/s  ({w['seconds']:.1f} s; "
        f"indexed {w['indexed']:,}, sent {result['writer_stats']['sent']:,})",
        f"  ceiling        {c['docs_per_s']:>10,.0f} docs/s  ({c['seconds']:.1f} s; "
        f"indexed {c['indexed']:,})",
        f"  ratio          {result['ratio_percent']:.1f} % of ceiling (goal >= {GOAL_PERCENT:.0f} %: "
        f"{'met' if result['goal_met'] else 'NOT met'})",
        f"  peak RSS       {result['peak_rss_mib']:,.0f} MiB ({result['rss_start_mib']:,.0f} MiB before the "
        f"measurements, of which the pre-generated events {result['events_rss_mib']:,.0f} MiB)",
        f"  cpu, writer    {cpu_text(w['cpu_percent'])}",
        f"  cpu, ceiling   {cpu_text(c['cpu_percent'])}",
        f"  verified       {ok}",
    ]
    others = max(p["cpu_percent"].get("other_processes", 0.0) for p in (w, c))
    if others > NOISY_PERCENT:
        lines.append(
            f"WARNING: other processes used up to {others:.0f} % of the machine's CPU while measuring; "
            "the rates and the ratio are not reliable (rerun on an idle machine, or with --rounds 10 "
            "so that both paths see the same conditions)"
        )
    return "\n".join(lines)


def cpu_text(cpu: dict[str, float]) -> str:
    """'machine busy 99 %, bench 6 %, ...': shares of the whole machine (all cores = 100 %)."""
    return ", ".join(f"{name.replace('_', ' ')} {value:.0f} %" for name, value in cpu.items())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=1_000_000, help="number of events (default 1,000,000)")
    parser.add_argument("--url", help="Elasticsearch URL (default: HCM_SOC_ES_URL, else a local node)")
    parser.add_argument(
        "--warmup",
        type=int,
        default=1_000_000,
        help="events indexed unmeasured first (default 1,000,000, at most --events; 0: none)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="measure in this many slices, alternating writer and ceiling (default 1: writer, then ceiling)",
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON instead of a summary")
    args = parser.parse_args(argv)
    if args.events < 1 or args.warmup < 0 or not 1 <= args.rounds <= args.events:
        parser.error("expected --events >= 1, --warmup >= 0 and 1 <= --rounds <= --events")

    settings = load_settings()
    machine = machine_info()
    rss_before = rss_mib()
    events = generate_events(args.events)
    # Keep the garbage collector from scanning the millions of pre-generated dicts during the timed
    # phases: a real collector process never holds them all, so those scans would only add noise.
    gc.freeze()
    events_rss = rss_mib() - rss_before
    avg_doc_bytes = round(sum(len(orjson.dumps(e)) for e in events[:10_000]) / min(len(events), 10_000))

    external = args.url or (settings.es.url[0] if settings.es.url else None)
    with elasticsearch_url(external) as (url, where, es_pid):
        client = make_client(settings, urls=[url])
        names = IndexNames(prefix=f"bench{uuid.uuid4().hex[:8]}", namespace="bench")
        try:
            install(client, build_items(names))
            progress(f"templates installed under prefix {names.prefix}")
            es_version = str(client.info()["version"]["number"])
            if args.warmup:
                warm_up(client, names, events[: args.warmup])
                settle(client, names)
            start_rss = rss_mib()
            writer, writer_stats, ceiling = measure(client, names, events, args.rounds, es_pid)
        finally:
            if external:
                cleanup(client, names)
            client.close()

    ratio = 100.0 * writer.docs_per_s / ceiling.docs_per_s
    result = {
        "date": datetime.now().date().isoformat(),
        "machine": machine,
        "es_version": es_version,
        "es_where": where,
        "events": args.events,
        "avg_doc_bytes": avg_doc_bytes,
        "batch": BATCH,
        "warmup": min(args.warmup, args.events),
        "rounds": args.rounds,
        "writer": asdict(writer),
        "writer_stats": writer_stats,
        "ceiling": asdict(ceiling),
        "ratio_percent": round(ratio, 1),
        "goal_percent": GOAL_PERCENT,
        "goal_met": ratio >= GOAL_PERCENT,
        "peak_rss_mib": round(peak_rss_mib()),
        "rss_start_mib": round(start_rss),
        "events_rss_mib": round(events_rss),
    }
    print(json.dumps(result, indent=2) if args.json else summary(result))
    return 0 if writer.verified and ceiling.verified else 1


if __name__ == "__main__":
    sys.exit(main())
