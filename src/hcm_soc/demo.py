"""The demo of the pipeline so far: local Elasticsearch, templates, bundled log files of
city systems read by the collectors, parsed to ECS and written through the bulk writer,
and a read-back summary.

Later issues extend it (detection, playbooks) stage by stage.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources

from hcm_soc.config import Settings

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


#: (file in hcm_soc/data/demo-logs, format, dataset): what the demo's city systems wrote
DEMO_LOGS = (
    ("auth.log", "syslog", "system.auth"),
    ("access.log", "nginx", "nginx.access"),
    ("firewall.log", "syslog", "network.firewall"),
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
        progress(f"[1/4] starting the local Elasticsearch node at {node.url} (data in {node.base_dir})")
        node.start(timeout=settings.local_es.start_timeout)
    else:
        progress(f"[1/4] using the cluster at {', '.join(settings.es.url)} (HCM_SOC_ES_URL)")
    client = make_client(settings)
    info = ping(client)
    report.es_url = ", ".join(settings.es.url) or local_node_from_settings(settings).url
    report.es_version = str(info.get("version", {}).get("number"))

    names = IndexNames.from_settings(settings)
    progress("[2/4] installing index templates, the ingest pipeline and indices")
    results = install(
        client, build_items(names, shards=settings.index.shards, replicas=settings.index.replicas)
    )
    report.templates_written = sum(r.action in ("created", "updated") for r in results)
    report.templates_current = len(results) - report.templates_written

    folder = resources.files("hcm_soc.data").joinpath("demo-logs")
    progress("[3/4] reading the bundled logs of city systems through the collectors and parsers")
    with BulkWriter.from_settings(client, settings, flush_interval=None) as writer:
        for filename, fmt, dataset in DEMO_LOGS:
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
                )
            records = counters["parsed"] + counters["parse_failures"]
            report.events_in_sample += records
            report.parse_failures += counters["parse_failures"]
            progress(f"      {filename} ({fmt}) -> {counters['index']}: {records} records")
    report.writer = writer.stats()

    progress("[4/4] reading back what Elasticsearch stored")
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
