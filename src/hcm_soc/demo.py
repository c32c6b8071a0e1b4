"""The demo of the whole pipeline: local Elasticsearch, templates, bundled log files of city
systems read by the collectors and parsed to ECS, a bundled packet capture of a city network
segment turned into flow/DNS/HTTP/TLS records, the Sigma engine run once over everything
with the city's rules, the playbooks turning the alerts into incidents with notices to the
systems' owners (delivered to a local mail sink, see demo_response.py), and a read-back summary.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from typing import TYPE_CHECKING, Any

from hcm_soc.config import Settings
from hcm_soc.demo_response import ResponseReport
from hcm_soc.errors import HcmSocError

if TYPE_CHECKING:
    from elasticsearch import Elasticsearch

    from hcm_soc.store.bulk import BulkWriter
    from hcm_soc.store.names import IndexNames

Progress = Callable[[str], None]


@dataclass
class DemoReport:
    es_url: str = ""
    es_version: str = ""
    templates_written: int = 0
    templates_current: int = 0
    events_in_sample: int = 0
    parse_failures: int = 0
    writer: dict[str, int] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    ssh_failures_by_source: list[tuple[str, int]] = field(default_factory=list)
    web_attack_sources: list[tuple[str, int]] = field(default_factory=list)
    latest_ingested: str | None = None
    network: dict[str, int] = field(default_factory=dict)
    rules_loaded: int = 0
    rule_problems: list[str] = field(default_factory=list)
    rules_failed: int = 0
    alerts_created: int = 0
    alerts_already_stored: int = 0
    #: (first seen UTC ISO, level, rule title, key entity, alerts, events behind them), most severe first
    alerts: list[tuple[str, str, str, str, int, int]] = field(default_factory=list)
    response: ResponseReport | None = None


#: (file in hcm_soc/data/demo-logs, format, dataset, host.name of the system that wrote it or None
#: when the lines name their host): what the demo's city systems wrote. The portal's host is the
#: one of collectors/cong-dich-vu-cong-nginx.yml, so its alerts find the portal in the inventory.
DEMO_LOGS = (
    ("auth.log", "syslog", "system.auth", None),
    ("access.log", "nginx", "nginx.access", "dvc-portal-01"),
    ("firewall.log", "syslog", "network.firewall", None),
)


def run_demo(settings: Settings, progress: Progress) -> DemoReport:
    from hcm_soc.collectors.runner import ingest_files
    from hcm_soc.store.bulk import BulkWriter
    from hcm_soc.store.client import make_client, ping
    from hcm_soc.store.events import EventsRepository
    from hcm_soc.store.localnode import local_node_from_settings
    from hcm_soc.store.names import IndexNames
    from hcm_soc.store.templates import build_items, install

    report = DemoReport()
    if settings.uses_local_node:
        node = local_node_from_settings(settings)
        progress(f"[1/7] starting the local Elasticsearch node at {node.url} (data in {node.base_dir})")
        node.start(timeout=settings.local_es.start_timeout)
    else:
        progress(f"[1/7] using the cluster at {', '.join(settings.es.url)} (HCM_SOC_ES_URL)")
    client = make_client(settings)
    info = ping(client)
    report.es_url = ", ".join(settings.es.url) or local_node_from_settings(settings).url
    report.es_version = str(info.get("version", {}).get("number"))

    names = IndexNames.from_settings(settings)
    progress("[2/7] installing index templates, the ingest pipeline and indices")
    results = install(
        client, build_items(names, shards=settings.index.shards, replicas=settings.index.replicas)
    )
    report.templates_written = sum(r.action in ("created", "updated") for r in results)
    report.templates_current = len(results) - report.templates_written

    folder = resources.files("hcm_soc.data").joinpath("demo-logs")
    progress("[3/7] reading the bundled logs of city systems through the collectors and parsers")
    with BulkWriter.from_settings(client, settings, flush_interval=None) as writer:
        for filename, fmt, dataset, host in DEMO_LOGS:
            with resources.as_file(folder.joinpath(filename)) as path:
                counters = ingest_files(
                    fmt,
                    [str(path)],
                    writer,
                    names,
                    dataset=dataset,
                    name=f"demo-{dataset.replace('.', '-')}",
                    timezone=settings.timezone,
                    options={},
                    progress=None,
                    host={"name": host} if host else None,
                )
            records = counters["parsed"] + counters["parse_failures"]
            report.events_in_sample += records
            report.parse_failures += counters["parse_failures"]
            progress(f"      {filename} ({fmt}) -> {counters['index']}: {records} records")
        progress("[4/7] reading the bundled capture of a city network segment (flows, DNS, HTTP, TLS)")
        report.network = _read_demo_capture(settings, writer, names)
        progress(
            "      city-segment.pcap -> "
            + ", ".join(f"{k.removeprefix('network.')} {v}" for k, v in sorted(report.network.items()))
        )
    report.writer = writer.stats()
    EventsRepository(client, names).refresh()

    progress("[5/7] running the Sigma detection engine once over everything stored, with the city's rules")
    _detect(settings, client, names, report, progress)

    progress(
        "[6/7] playbooks: alerts -> incidents for the city security center, notices to the systems' owners"
    )
    from hcm_soc.demo_response import respond

    report.response = respond(settings, client, names, progress)

    progress("[7/7] reading back what Elasticsearch stored")
    repo = EventsRepository(client, names)
    repo.refresh()
    report.counts = repo.count_by_dataset()
    report.ssh_failures_by_source = repo.top_values(
        "source.ip",
        {
            "bool": {
                "filter": [{"term": {"event.dataset": "system.auth"}}, {"term": {"event.outcome": "failure"}}]
            }
        },
    )
    report.web_attack_sources = repo.top_values(
        "source.ip",
        {
            "bool": {
                "filter": [
                    {"term": {"event.dataset": "nginx.access"}},
                    {"wildcard": {"user_agent.original.caseless": {"value": "*sqlmap*"}}},
                ]
            }
        },
    )
    report.latest_ingested = repo.latest_ingested()
    return report


def _read_demo_capture(settings: Settings, writer: BulkWriter, names: IndexNames) -> dict[str, int]:
    from hcm_soc.collectors.network.capture import read_capture
    from hcm_soc.collectors.network.writer import NetworkRecordWriter

    sink = NetworkRecordWriter(writer, names, source="demo-city-segment", interface=None)
    folder = resources.files("hcm_soc.data").joinpath("demo-pcap")
    with resources.as_file(folder.joinpath("city-segment.pcap")) as path:
        result = read_capture(path, sink, settings.network, progress=None)
    if result.error:
        raise HcmSocError(f"the bundled capture could not be read: {result.error}")
    return result.records


_LEVEL_ORDER = {"critical": 0, "high": 1, "medium": 2, "low": 3, "informational": 4}


def _detect(
    settings: Settings, client: Elasticsearch, names: IndexNames, report: DemoReport, progress: Progress
) -> None:
    """One engine pass (like `hcm-soc engine run --once`) and the alerts it raised."""
    from hcm_soc.detection.engine import DetectionEngine
    from hcm_soc.detection.scheduler import load_engine_rules
    from hcm_soc.store.alerts import AlertStore

    missing = [str(p) for p in settings.paths.rules if not p.exists()]
    if missing:
        raise HcmSocError(
            f"rule folder(s) {', '.join(missing)} not found: run the demo from the repository root "
            "or set HCM_SOC_PATHS_RULES"
        )
    rules, problems = load_engine_rules(settings, names, client=client)
    report.rules_loaded = sum(1 for r in rules if r.compiled is not None)
    report.rule_problems = [str(p) for p in problems]
    # the events were written a moment ago and the indices refreshed: a one-second margin is enough
    # here, where a running engine keeps settings.detection.safety_margin for late-searchable events
    detection = settings.detection.model_copy(update={"safety_margin": 1.0})
    time.sleep(1.1)
    summary = DetectionEngine(client, names, detection).run_all(rules, force=True)
    report.rules_failed = len(summary.failed)
    report.alerts_created = summary.alerts_created
    report.alerts_already_stored = sum(r.duplicates for r in summary.runs)
    progress(
        f"      {report.rules_loaded} rules run, {report.alerts_created} new alert(s), "
        f"{report.alerts_already_stored} already stored from an earlier demo run"
    )
    store = AlertStore(client, names)
    store.refresh()
    # one line per rule and entity: a burst of per-event alerts reads as one finding
    grouped: dict[tuple[str, str, str], list[Any]] = {}
    for a in store.search(size=1000):
        entity = (
            (a.source.ip if a.source else None)
            or (a.user.name if a.user else None)
            or (a.host.name if a.host else None)
            or ", ".join(f"{k}={v}" for k, v in (a.hcm.group or {}).items())
        )
        seen = (a.hcm.first_seen or a.timestamp).isoformat()
        key = (str(a.hcm.rule.level or ""), a.rule.name, entity or "")
        row = grouped.setdefault(key, [seen, 0, 0])
        row[0] = min(row[0], seen)
        row[1] += 1
        row[2] += a.hcm.count
    rows = [(v[0], lvl, rule, who, v[1], v[2]) for (lvl, rule, who), v in grouped.items()]
    rows.sort(key=lambda r: (_LEVEL_ORDER.get(r[1], 9), r[2], r[0], r[3]))
    report.alerts = rows
